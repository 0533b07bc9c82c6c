"""From TIGeR's 21 predicted hand keypoints to a MANO hand: a short inverse-kinematics fit.

The paper converts ``C̃_h`` to MANO parameters by IK (its ref. [51]). Here: the wrist rotation
and translation start from the rigid Procrustes fit of the mean-pose keypoints to the
prediction, then ``num_steps`` Adam steps on the squared keypoint error (cm²) with a small
pose prior (articulation in MANO's 45-D axis-angle space around the mean pose; shape at zero).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

from hoijax import geometry, mano

POSE_PRIOR_WEIGHT = 1e-2
"""Weight of ``‖hand_pose‖²`` (rad²) against the keypoint error in cm²."""


def _keypoints(model, orient, pose, transl):
    out = mano.forward(model, orient, pose, jnp.zeros(model.num_betas), transl)
    return out.keypoints("smplx", "openpose"), out


@functools.partial(jax.jit, static_argnames=("num_steps",))
def fit_mano_to_keypoints(
    model: mano.ManoModel,
    keypoints_cam: Float[Array, "21 3"],
    num_steps: int = 60,
    learning_rate: float = 0.05,
) -> tuple[Float[Array, "778 3"], Float[Array, "21 3"]]:
    """MANO vertices and keypoints (camera frame, metres) fitted to ``keypoints_cam``."""
    target = jnp.asarray(keypoints_cam, jnp.float32)
    zero = jnp.zeros(3)
    kp0, out0 = _keypoints(model, zero, jnp.zeros(45), zero)
    _, R, t = geometry.similarity_transform(kp0, target)
    root = out0.joints[0]
    # MANO rotates about the root joint: kp = R (kp0 − J0) + J0 + transl.
    params = {"orient": geometry.matrix_to_axis_angle(R), "pose": jnp.zeros(45),
              "transl": t + R @ root - root}
    opt = optax.adam(learning_rate)

    def loss(p):
        kp, _ = _keypoints(model, p["orient"], p["pose"], p["transl"])
        err = jnp.mean(jnp.sum((kp - target) ** 2, -1)) * 1e4
        return err + POSE_PRIOR_WEIGHT * jnp.sum(p["pose"] ** 2)

    def body(_, carry):
        p, s = carry
        g = jax.grad(loss)(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    params, _ = jax.lax.fori_loop(0, num_steps, body, (params, opt.init(params)))
    kp, out = _keypoints(model, params["orient"], params["pose"], params["transl"])
    return out.vertices, kp
