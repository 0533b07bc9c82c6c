"""MANO forward kinematics and linear blend skinning as pure functions of a model pytree.

The chain computes what smplx's ``MANO.forward`` computes (the two agree to float precision),
split into stages a tracker can reuse: :func:`articulation` (PCA or axis-angle → 45 axis-angle
values), :func:`joint_frames` (betas and rotations → posed joint frames and skinning transforms)
and :func:`skin` (blend shapes and linear blend skinning → vertices). :func:`with_shape` gives the
shaped rest mesh on its own.
"""

from __future__ import annotations

import functools
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
from jaxtyping import Array, ArrayLike, Float

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

    vertices: Float[Array, "*B V 3"]
    """Posed vertices, metres."""
    joints: Float[Array, "*B 16 3"]
    """Posed joint centres in MANO's native order, metres."""
    Ts_world_joint: Float[Array, "*B 16 4 4"]
    """Posed joint frames (rotation and centre) as homogeneous matrices."""

    def keypoints(
        self, tips: TipConvention = "smplx", order: JointOrder = "mano"
    ) -> Float[Array, "*B 21 3"]:
        """21 keypoints: 16 joints plus 5 fingertip vertices, in ``order``."""
        return keypoints21(self.joints, self.vertices, tips=tips, order=order)


def keypoints21(
    joints: Float[ArrayLike, "*B 16 3"],
    vertices: Float[ArrayLike, "*B V 3"],
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
    kp = jnp.concatenate([joints, vertices[..., np.array(TIP_VERTEX_IDS[tips], np.int32), :]],
                         axis=-2)
    if order == "mano":
        return kp
    if order == "openpose":
        return kp[..., np.array(OPENPOSE_FROM_MANO, np.int32), :]
    raise ValueError(f"order must be 'mano' or 'openpose', got {order!r}")


def with_shape(model: ManoModel, betas: Float[Array, "S"]) -> ManoShaped:
    """Apply shape blend shapes (the first ``len(betas)`` directions) and regress rest joints."""
    nb = _check_betas(model, betas)
    v_shaped = model.v_template + jnp.einsum("vcs,s->vc", model.shapedirs[..., :nb], betas)
    return ManoShaped(v_shaped=v_shaped, joints_rest=model.J_regressor @ v_shaped)


def articulation(
    model: ManoModel,
    hand_pose: Float[ArrayLike, "P"],
    *,
    pose_space: PoseSpace = "axis_angle",
    flat_hand_mean: bool = False,
) -> Float[Array, "45"]:
    """Finger articulation as 15 axis-angle triples (radians), ``hands_mean`` included.

    ``pose_space="pca"`` reads ``hand_pose`` as coefficients of the first ``P`` PCA components
    (smplx ``use_pca=True, num_pca_comps=P``); ``"axis_angle"`` needs ``P == 45``.
    """
    hand_pose = jnp.asarray(hand_pose)
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
    # int32 indices: int64 NumPy indices trip JAX when x64 mode is toggled within a process.
    return tuple(np.array([j for j in range(len(parents)) if depth[j] == d], np.int32)
                 for d in range(1, max(depth) + 1))


class JointFrames(eqx.Module):
    """Forward kinematics of one hand, before skinning (model frame, no ``transl``)."""

    R_world_joint: Float[Array, "*B 16 3 3"]
    """Posed joint orientations."""
    joints: Float[Array, "*B 16 3"]
    """Posed joint centres, metres."""
    skinning: Float[Array, "*B 16 3 4"]
    """Top rows of T_world_joint @ T_joint_rest: maps rest-pose points to posed points."""
    pose_feature: Float[Array, "*B 135"]
    """Entries of ``R_parent_joint - I`` for joints 1..15, the pose-corrective coefficients."""


def joint_frames(
    model: ManoModel,
    global_orient: Float[ArrayLike, "3"],
    hand_aa: Float[ArrayLike, "45"],
    betas: Float[ArrayLike, "S"],
) -> JointFrames:
    """Rest joints from betas, then forward kinematics level by level of the tree.

    Rest joints use ``J_regressor @ v_template + (J_regressor @ shapedirs) @ betas``, the same
    linear map as regressing the shaped mesh but without touching its 778 vertices. Rotations use
    ``jaxlie.SO3.exp``, whose small-angle branch keeps gradients finite at zero. Transforms are
    composed as (R, t) pairs, which is several times cheaper than 4×4 products on small arrays.
    """
    nb = _check_betas(model, betas)
    joints_rest = model.J_regressor @ model.v_template + jnp.einsum(
        "jv,vcs,s->jc", model.J_regressor, model.shapedirs[..., :nb], betas)
    full_pose = jnp.concatenate([global_orient, hand_aa]).reshape(-1, 3)
    R_parent_joint = jaxlie.SO3.exp(full_pose).as_matrix()  # (16, 3, 3)
    parents = np.asarray(model.parents, np.int32)
    t_parent_joint = joints_rest.at[1:].add(-joints_rest[parents[1:]])
    R, t = R_parent_joint, t_parent_joint  # becomes R_world_joint, t_world_joint level by level
    for idx in _levels(model.parents):
        p = parents[idx]
        # A broadcast product, not `@`: under two nested vmaps XLA:CPU (jax 0.10) failed its
        # HLO verifier on this batched 3×3 dot (layout of the batch dimensions).
        R = R.at[idx].set(jnp.sum(R[p][..., :, :, None] * R_parent_joint[idx][..., None, :, :],
                                  axis=-2))
        t = t.at[idx].set(jnp.einsum("jab,jb->ja", R[p], t_parent_joint[idx]) + t[p])
    t_skin = t - jnp.einsum("jab,jb->ja", R, joints_rest)
    eye = jnp.eye(3, dtype=R_parent_joint.dtype)
    return JointFrames(
        R_world_joint=R,
        joints=t,
        skinning=jnp.concatenate([R, t_skin[..., None]], axis=-1),
        pose_feature=(R_parent_joint[1:] - eye).reshape(-1),
    )


def skin(
    model: ManoModel,
    skinning: Float[ArrayLike, "16 3 4"],
    pose_feature: Float[ArrayLike, "135"],
    betas: Float[ArrayLike, "S"],
) -> Float[Array, "V 3"]:
    """Shape and pose blend shapes, then linear blend skinning (model frame, no ``transl``).

    Only the top 3×4 rows of the per-joint transforms are blended, as one (V, 16) @ (16, 12)
    matmul; the blended transform is applied with multiply-adds rather than a batched 3×3 matvec,
    which XLA fuses into one loop.
    """
    nb = _check_betas(model, betas)
    v_posed = (model.v_template
               + jnp.einsum("vcs,s->vc", model.shapedirs[..., :nb], betas)
               + jnp.einsum("vck,k->vc", model.posedirs, pose_feature))
    T = (model.lbs_weights @ skinning.reshape(-1, 12)).reshape(-1, 3, 4)
    return (T[..., 0] * v_posed[:, 0:1] + T[..., 1] * v_posed[:, 1:2]
            + T[..., 2] * v_posed[:, 2:3] + T[..., 3])


def _check_betas(model: ManoModel, betas) -> int:
    nb = betas.shape[-1]
    if nb > model.num_betas:
        raise ValueError(f"got {nb} betas but the model has {model.num_betas} shape directions")
    return nb


def _output(frames: JointFrames, vertices, transl) -> ManoOutput:
    joints = frames.joints
    if transl is not None:
        vertices = vertices + transl[..., None, :]
        joints = joints + transl[..., None, :]
    bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], joints.dtype),
                              joints.shape[:-1] + (1, 4))
    top = jnp.concatenate([frames.R_world_joint, joints[..., None]], axis=-1)
    return ManoOutput(vertices=vertices, joints=joints,
                      Ts_world_joint=jnp.concatenate([top, bottom], axis=-2))


def forward(
    model: ManoModel,
    global_orient: Float[ArrayLike, "3"],
    hand_pose: Float[ArrayLike, "P"],
    betas: Float[ArrayLike, "S"],
    transl: Float[ArrayLike, "3"] | None = None,
    *,
    pose_space: PoseSpace = "axis_angle",
    flat_hand_mean: bool = False,
) -> ManoOutput:
    """MANO for one hand, with smplx's argument names and semantics.

    Unbatched: ``vmap`` over frames or hands (or use :func:`forward_batch` for large batches on
    the CPU). ``global_orient`` rotates about the wrist joint; ``transl`` is added last.
    ``pose_space`` and ``flat_hand_mean`` are static (mark them static under ``jit``, or close
    over them). Matches ``smplx.MANO(use_pca=..., num_pca_comps=P, flat_hand_mean=...)`` for the
    same model file.
    """
    hand_aa = articulation(model, hand_pose, pose_space=pose_space, flat_hand_mean=flat_hand_mean)
    frames = joint_frames(model, global_orient, hand_aa, betas)
    vertices = skin(model, frames.skinning, frames.pose_feature, betas)
    return _output(frames, vertices, transl)


def forward_batch(
    model: ManoModel,
    global_orient: Float[ArrayLike, "B 3"],
    hand_pose: Float[ArrayLike, "B P"],
    betas: Float[ArrayLike, "B S"],
    transl: Float[ArrayLike, "B 3"] | None = None,
    *,
    pose_space: PoseSpace = "axis_angle",
    flat_hand_mean: bool = False,
    chunk_size: int | None = 64,
) -> ManoOutput:
    """:func:`forward` for a batch of hands, arranged for throughput on large batches.

    Same values as ``vmap(forward)``. The kinematics (small per hand) run vmapped over the whole
    batch; the vertex stage runs in chunks of ``chunk_size`` hands (``lax.map``) under
    ``jax.checkpoint``, so its (chunk, 778, 12) blended transforms stay in cache in both the
    forward and the backward pass instead of streaming ``B × 778 × 12`` floats through memory.
    ``chunk_size=None`` vmaps the vertex stage too (better on GPUs).
    """
    hand_aa = jax.vmap(lambda h: articulation(model, h, pose_space=pose_space,
                                              flat_hand_mean=flat_hand_mean))(hand_pose)
    frames = jax.vmap(lambda g, a, b: joint_frames(model, g, a, b))(global_orient, hand_aa, betas)
    vertex_stage = lambda x: skin(model, *x)  # noqa: E731
    xs = (frames.skinning, frames.pose_feature, betas)
    if chunk_size is None:
        vertices = jax.vmap(vertex_stage)(xs)
    else:
        vertices = jax.lax.map(jax.checkpoint(vertex_stage), xs, batch_size=chunk_size)
    return _output(frames, vertices, transl)
