"""The small pytrees the tracker's stages read and write (MuJoCo MJX's ``f(model, data)``).

A stage is ``stage(config, hyper, state, inp) -> (state, log)``: static settings, traced
numbers, what the stage changes (:class:`TrackState`) and what it reads (:class:`FrameInput`),
each one pytree. A new observation goes into :class:`FrameObs`, a new unknown into
:class:`TrackState`, and no signature changes.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from hoijax import losses, sdf
from hoijax.data import HandParams, ObjectMesh, Sequence
from hoijax.tracking._init import sample_mask_points


class FrameObs(eqx.Module):
    """One frame's observations (leading axis N when they are a whole sequence's)."""

    K: Float[Array, "*B 3 3"]
    """Camera intrinsics, pixels."""
    object_mask: Bool[Array, "*B H W"]
    """Observed object silhouette (visible part)."""
    hand_mask: Bool[Array, "*B H W"]
    """Observed hand silhouette."""
    keypoints_px: Float[Array, "*B 21 2"]
    """Detected 2D hand keypoints (OpenPose order), pixels."""
    keypoints_conf: Float[Array, "*B 21"]
    """Their confidences (0: missing)."""
    depth_m: Float[Array, "*B H W"] | None
    """Metric depth map, or None."""
    feature_map: Float[Array, "*B Hf Wf C"] | None
    """Dense image features (DINO), or None."""
    hand_points: Float[Array, "*B P 3"] | None
    """A fixed random subset of the hand mask's depth points, camera frame, metres (None
    without depth)."""
    hand_points_valid: Bool[Array, "*B P"] | None
    """Which of :attr:`hand_points` are real."""

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.object_mask.shape[-2:])


class HandPose(eqx.Module):
    """The tracked hand at one frame at zero translation (fixed while the frame is tracked):
    the camera-frame hand is ``verts_rel + T_h``. Leading axis N for a whole sequence."""

    verts_rel: Float[Array, "*B 778 3"]
    """Scaled, posed, rotated MANO vertices at zero translation, metres."""
    kps_rel: Float[Array, "*B 21 3"]
    """Its 21 keypoints (OpenPose order, smplx fingertips)."""
    normals_rel: Float[Array, "*B 778 3"]
    """Its vertex normals."""
    t_init: Float[Array, "*B 3"]
    """Initial translation T_h (PnP or the hand fit), metres."""


class Hand(eqx.Module):
    """The hand of one sequence after initialization (and refinement)."""

    params: HandParams
    """Per-frame MANO parameters (the detector's, or refined)."""
    scale: Float[Array, ""]
    """Hand scale s_h."""
    pose: HandPose
    """Per-frame posed hand at zero translation (leading axis N)."""
    finite: Bool[Array, ""]
    """The refinement's losses and gradients were finite."""
    scale_fallback: Bool[Array, ""]
    """ICP's hand scale was implausible and the refinement started from 1 instead."""


class ObjectModel(eqx.Module):
    """The object of one sequence: its canonical mesh and what was built from it on the
    host."""

    mesh: ObjectMesh
    """Canonical mesh (padded faces have ``face_valid`` False)."""
    grid: sdf.SdfGrid
    """Signed distance grid of the canonical mesh (L_interact, L_contact)."""
    pool: losses.SurfacePoints
    """Area-uniform surface samples L_dino draws its visible points from."""

    @property
    def faces(self):
        """Faces with padded ones collapsed onto vertex 0 (culled by the rasterizer)."""
        return jnp.where(self.mesh.face_valid[:, None], self.mesh.faces, 0)


class TrackState(eqx.Module):
    """What the stages change: the object's pose and scale and the hand's translation at one
    frame."""

    T_cam_obj: Float[Array, "4 4"]
    """Object pose (canonical mesh, scaled by :attr:`obj_scale`, to camera)."""
    obj_scale: Float[Array, "3"]
    """Anisotropic object scale."""
    hand_t: Float[Array, "3"]
    """Hand translation T_h, metres."""
    hand_verts_cam: Float[Array, "778 3"]
    """The hand's camera-frame vertices at :attr:`hand_t` (L_interact's and L_contact's
    hand)."""

    def with_hand(self, hand: HandPose, t: Float[Array, "3"]) -> TrackState:
        """The same object with the hand ``hand`` at translation ``t``."""
        return TrackState(self.T_cam_obj, self.obj_scale, t, hand.verts_rel + t)


class FrameInput(eqx.Module):
    """What a stage reads of one frame."""

    obs: FrameObs
    hand: HandPose
    obj: ObjectModel
    key: Array
    """Randomness of the stage (L_dino's visible points, ICP samples)."""
    active: Bool[Array, ""]
    """False: a padded step of the schedule (no optimizer step is taken)."""

    def with_key(self, key: Array) -> FrameInput:
        return eqx.tree_at(lambda x: x.key, self, key)


def frame_at(tree, f):
    """Frame ``f`` of a per-frame pytree (leading axis N on every leaf)."""
    return jax.tree.map(lambda x: x[f], tree)


def observations(seq: Sequence, num_hand_points: int, key: Array) -> FrameObs:
    """The per-frame observations of one unbatched sequence (leading axis N), with the hand's
    depth points drawn once (``num_hand_points`` per frame)."""
    n = seq.valid.shape[0]
    points = valid = None
    if seq.depth_m is not None:
        points, valid = jax.vmap(lambda d, m, k: sample_mask_points(
            seq.K, d, m, k, num_hand_points))(seq.depth_m, seq.hand_mask, jax.random.split(key, n))
    return FrameObs(K=jnp.broadcast_to(seq.K, (n, 3, 3)), object_mask=seq.object_mask,
                    hand_mask=seq.hand_mask, keypoints_px=seq.keypoints_px,
                    keypoints_conf=seq.keypoints_conf, depth_m=seq.depth_m,
                    feature_map=seq.features, hand_points=points, hand_points_valid=valid)
