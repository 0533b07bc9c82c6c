"""MANO forward kinematics and linear blend skinning as pure functions of a model pytree.

The chain follows smplx's ``MANO.forward`` exactly (so the two agree to float precision), split
into stages that a tracker can reuse: :func:`with_shape` (betas → shaped rest mesh and joints,
computed once per sequence), :func:`articulation` (PCA or axis-angle → 45 axis-angle values) and
:func:`pose` (rotations → posed vertices and joint frames).
"""

from __future__ import annotations

import functools
from typing import Literal

import equinox as eqx
import jax.numpy as jnp
import jaxlie
import numpy as np
from jaxtyping import Array, Float

from hoijax.mano._model import NUM_POSE_COEFFS, ManoModel

PoseSpace = Literal["axis_angle", "pca"]
TipConvention = Literal["smplx", "manopth"]
JointOrder = Literal["mano", "openpose"]

TIP_VERTEX_IDS: dict[str, tuple[int, int, int, int, int]] = {
    "smplx": (744, 320, 443, 554, 671),
    "manopth": (745, 317, 444, 556, 673),
}
"""Fingertip vertex indices in the order thumb, index, middle, ring, pinky."""

OPENPOSE_FROM_MANO: tuple[int, ...] = (
    0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20,
)
"""Index into the native 21 keypoints (16 joints + tips) giving OpenPose/manopth order:
wrist, then thumb, index, middle, ring, pinky from base to tip."""


class ManoShaped(eqx.Module):
    """A hand of fixed shape in its rest pose (betas applied)."""

    v_shaped: Float[Array, "V 3"]
    """Rest-pose vertices after shape blend shapes, metres, model frame."""
    joints_rest: Float[Array, "16 3"]
    """Rest-pose joint centres regressed from ``v_shaped``, metres, model frame."""


class ManoOutput(eqx.Module):
    """Posed hand in the model frame plus ``transl`` (the camera frame if ``transl`` is T_cam)."""

    vertices: Float[Array, "V 3"]
    """Posed vertices, metres."""
    joints: Float[Array, "16 3"]
    """Posed joint centres in MANO's native order, metres."""
    Ts_world_joint: Float[Array, "16 4 4"]
    """Posed joint frames (rotation and centre) as homogeneous matrices."""

    def keypoints(
        self, tips: TipConvention = "smplx", order: JointOrder = "mano"
    ) -> Float[Array, "21 3"]:
        """21 keypoints: 16 joints plus 5 fingertip vertices, in ``order``."""
        return keypoints21(self.joints, self.vertices, tips=tips, order=order)


def keypoints21(
    joints: Float[Array, "*B 16 3"],
    vertices: Float[Array, "*B V 3"],
    tips: TipConvention = "smplx",
    order: JointOrder = "mano",
) -> Float[Array, "*B 21 3"]:
    """Append fingertip vertices (``tips`` convention) to the 16 joints and reorder.

    ``order="mano"``: 16 native joints then tips of thumb, index, middle, ring, pinky (smplx's
    ``VertexJointSelector`` order). ``order="openpose"``: the manopth/OpenPose order
    (:data:`OPENPOSE_FROM_MANO`).
    """
    if tips not in TIP_VERTEX_IDS:
        raise ValueError(f"tips must be one of {sorted(TIP_VERTEX_IDS)}, got {tips!r}")
    kp = jnp.concatenate([joints, vertices[..., np.array(TIP_VERTEX_IDS[tips]), :]], axis=-2)
    if order == "mano":
        return kp
    if order == "openpose":
        return kp[..., np.array(OPENPOSE_FROM_MANO), :]
    raise ValueError(f"order must be 'mano' or 'openpose', got {order!r}")


def with_shape(model: ManoModel, betas: Float[Array, "S"]) -> ManoShaped:
    """Apply shape blend shapes (the first ``len(betas)`` directions) and regress rest joints."""
    nb = betas.shape[-1]
    if nb > model.num_betas:
        raise ValueError(f"got {nb} betas but the model has {model.num_betas} shape directions")
    v_shaped = model.v_template + jnp.einsum("vcs,s->vc", model.shapedirs[..., :nb], betas)
    return ManoShaped(v_shaped=v_shaped, joints_rest=model.J_regressor @ v_shaped)


def articulation(
    model: ManoModel,
    hand_pose: Float[Array, "P"],
    *,
    pose_space: PoseSpace = "axis_angle",
    flat_hand_mean: bool = False,
) -> Float[Array, "45"]:
    """Finger articulation as 15 axis-angle triples (radians), ``hands_mean`` included.

    ``pose_space="pca"`` reads ``hand_pose`` as coefficients of the first ``P`` PCA components
    (smplx ``use_pca=True, num_pca_comps=P``); ``"axis_angle"`` needs ``P == 45``.
    """
    if pose_space == "pca":
        ncomps = hand_pose.shape[-1]
        if ncomps > model.hands_components.shape[0]:
            raise ValueError(f"{ncomps} PCA coefficients but the model has "
                             f"{model.hands_components.shape[0]} components")
        hand_pose = hand_pose @ model.hands_components[:ncomps]
    elif pose_space != "axis_angle":
        raise ValueError(f"pose_space must be 'axis_angle' or 'pca', got {pose_space!r}")
    if hand_pose.shape[-1] != NUM_POSE_COEFFS:
        raise ValueError(f"axis-angle hand_pose must have 45 values, got {hand_pose.shape}")
    return hand_pose if flat_hand_mean else hand_pose + model.hands_mean


@functools.lru_cache(maxsize=None)
def _levels(parents: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Joints grouped by depth in the kinematic tree (static), root level excluded."""
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        depth[j] = depth[parents[j]] + 1
    return tuple(np.array([j for j in range(len(parents)) if depth[j] == d])
                 for d in range(1, max(depth) + 1))


def _homogeneous(R: Float[Array, "*N 3 3"], t: Float[Array, "*N 3"]) -> Float[Array, "*N 4 4"]:
    top = jnp.concatenate([R, t[..., :, None]], axis=-1)
    bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], R.dtype), top.shape[:-2] + (1, 4))
    return jnp.concatenate([top, bottom], axis=-2)


def pose(
    model: ManoModel,
    shaped: ManoShaped,
    global_orient: Float[Array, "3"],
    hand_aa: Float[Array, "45"],
    transl: Float[Array, "3"] | None = None,
) -> ManoOutput:
    """Pose a shaped hand: pose correctives, forward kinematics, linear blend skinning.

    ``global_orient`` rotates about the wrist joint (as in smplx); ``transl`` is added last.
    Rotations use ``jaxlie.SO3.exp``, whose small-angle branch keeps gradients finite at zero.
    """
    full_pose = jnp.concatenate([global_orient, hand_aa]).reshape(-1, 3)
    R_parent_joint = jaxlie.SO3.exp(full_pose).as_matrix()  # (16, 3, 3)
    eye = jnp.eye(3, dtype=R_parent_joint.dtype)
    pose_feature = (R_parent_joint[1:] - eye).reshape(-1)
    v_posed = shaped.v_shaped + jnp.einsum("vck,k->vc", model.posedirs, pose_feature)

    J = shaped.joints_rest
    parents = np.asarray(model.parents)
    t_parent_joint = J.at[1:].add(-J[parents[1:]])
    Ts_parent_joint = _homogeneous(R_parent_joint, t_parent_joint)
    Ts_world_joint = Ts_parent_joint  # level by level: a joint's parent is final before it
    for idx in _levels(model.parents):
        Ts_world_joint = Ts_world_joint.at[idx].set(
            Ts_world_joint[parents[idx]] @ Ts_parent_joint[idx]
        )

    # Skinning transforms map rest-pose points to posed points: T_world_joint @ T_joint_rest.
    t_rest = jnp.einsum("jab,jb->ja", Ts_world_joint[:, :3, :3], J)
    A = Ts_world_joint.at[:, :3, 3].add(-t_rest)
    T_vert = jnp.einsum("vj,jab->vab", model.lbs_weights, A)
    vertices = jnp.einsum("vab,vb->va", T_vert[:, :3, :3], v_posed) + T_vert[:, :3, 3]
    joints = Ts_world_joint[:, :3, 3]
    if transl is not None:
        vertices = vertices + transl
        joints = joints + transl
        Ts_world_joint = Ts_world_joint.at[:, :3, 3].add(transl)
    return ManoOutput(vertices=vertices, joints=joints, Ts_world_joint=Ts_world_joint)


def forward(
    model: ManoModel,
    global_orient: Float[Array, "3"],
    hand_pose: Float[Array, "P"],
    betas: Float[Array, "S"],
    transl: Float[Array, "3"] | None = None,
    *,
    pose_space: PoseSpace = "axis_angle",
    flat_hand_mean: bool = False,
) -> ManoOutput:
    """MANO for one hand, with smplx's argument names and semantics.

    Unbatched: ``vmap`` over frames or hands. ``pose_space`` and ``flat_hand_mean`` are static
    (mark them static under ``jit``, or close over them). Matches ``smplx.MANO(use_pca=...,
    num_pca_comps=P, flat_hand_mean=...)`` for the same model file.
    """
    hand_aa = articulation(model, hand_pose, pose_space=pose_space,
                           flat_hand_mean=flat_hand_mean)
    return pose(model, with_shape(model, betas), global_orient, hand_aa, transl)
