"""The in-memory form of one hand-object sequence (and, with a leading axis, of a padded batch).

Every array is a ``jax.Array`` (or NumPy) leaf; sizes and the hand side are static. Optional parts
are ``None``. ``N`` is the number of frames, ``H × W`` the image, ``Hf × Wf × C`` the feature map,
``V``/``F`` the object mesh's vertices and faces. A batch of sequences is the same pytree with a
leading ``B`` axis on every leaf, padded to a common ``N`` (``valid`` marks real frames) and a
common ``V``/``F`` (padded faces are degenerate ``(0, 0, 0)`` and padded vertices sit at the
origin, so the rasterizer culls them and ``face_valid`` marks real faces).

Conventions: camera frame is OpenCV (x right, y down, z forward), metres; pixel ``(r, c)`` has its
centre at ``uv_px = (c, r)``; 2D keypoints are in OpenPose order with smplx fingertips (as
``ManoOutput.keypoints(tips="smplx", order="openpose")``); hand articulation is *absolute*
axis-angle (``hands_mean`` included), i.e. use ``mano.forward(..., flat_hand_mean=True)``;
``T_cam_obj`` maps canonical object coordinates (metres) to the camera frame.
"""

from __future__ import annotations

from typing import Literal

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int, UInt8

Side = Literal["right", "left"]

FORMAT_VERSION = 1
"""Version written to (and required in) ``manifest.json``."""


class ObjectMesh(eqx.Module):
    """The object's canonical mesh (object frame, metres), optionally with per-vertex features."""

    vertices: Float[Array, "*B V 3"]
    """Vertices in the object frame, metres."""
    faces: Int[Array, "*B F 3"]
    """Triangles (int32), counter-clockwise seen from outside; padding is ``(0, 0, 0)``."""
    face_valid: Bool[Array, "*B F"]
    """Real faces (False for padding)."""
    vertex_features: Float[Array, "*B V C"] | None = None
    """Per-vertex "texture" features (e.g. DINO features of the textured mesh), or None."""


class HandParams(eqx.Module):
    """Per-frame MANO parameters (a detector's estimate, or the ground truth)."""

    betas: Float[Array, "*B N 10"]
    """Shape coefficients."""
    hand_pose: Float[Array, "*B N 45"]
    """Absolute finger articulation, axis-angle radians (``flat_hand_mean=True``)."""
    global_orient: Float[Array, "*B N 3"]
    """Wrist rotation R_h in the camera frame, axis-angle radians."""
    transl: Float[Array, "*B N 3"]
    """MANO ``transl`` (camera frame, metres); a detector's is only a rough guess."""


class GroundTruth(eqx.Module):
    """What a synthetic or annotated sequence knows for certain (for metrics only)."""

    hand: HandParams
    """True MANO parameters per frame."""
    joints_cam: Float[Array, "*B N 21 3"]
    """True 3D keypoints (OpenPose order, smplx tips), camera frame, metres."""
    verts_cam: Float[Array, "*B N 778 3"]
    """True hand vertices, camera frame, metres."""
    T_cam_obj: Float[Array, "*B N 4 4"]
    """True object pose per frame."""
    obj_scale: Float[Array, "*B 3"]
    """True anisotropic scale of the canonical mesh (1 when the mesh is metric)."""
    onset_frame: Int[Array, "*B"] | None = None
    """First frame of hand-object contact (from it on the object moves with the hand), or None."""
    occlusion_ratio: Float[Array, "*B N"] | None = None
    """Fraction of the object's full silhouette hidden by the hand per frame (0 where the object
    is not in view), or None."""
    obj_mesh: ObjectMesh | None = None
    """The true object's canonical mesh (object frame, metres, before ``obj_scale``), or None:
    the same as the sequence's ``mesh`` (synthetic data; datasets tracked with their own
    model). Give it when the tracker works with an approximate mesh (e.g. a generated one) and
    the ground truth is another (the scan): the object shape metrics and ADD / ADD-S use it."""


class Sequence(eqx.Module):
    """One sequence's observations, initial estimates and (optionally) ground truth."""

    K: Float[Array, "*B 3 3"]
    """Pinhole intrinsics, pixels."""
    valid: Bool[Array, "*B N"]
    """Real frames (False for padding)."""
    hand_mask: Bool[Array, "*B N H W"]
    """Hand segmentation per frame."""
    object_mask: Bool[Array, "*B N H W"]
    """Visible-object segmentation per frame (the hand occludes it)."""
    keypoints_px: Float[Array, "*B N 21 2"]
    """Detected 2D hand keypoints, pixels, OpenPose order."""
    keypoints_conf: Float[Array, "*B N 21"]
    """Detection confidence in [0, 1]; 0 marks a missing keypoint."""
    hand_init: HandParams
    """Per-frame MANO estimate (β, θ, R_h; transl as a rough guess), as WiLoR would give."""
    mesh: ObjectMesh
    """Canonical object mesh (its scale may be wrong; the tracker estimates it)."""
    depth_m: Float[Array, "*B N H W"] | None = None
    """Metric depth (0 where unknown), or None."""
    features: Float[Array, "*B N Hf Wf C"] | None = None
    """Target feature maps F_gt (e.g. DINO patch features of the frames), or None."""
    rgb: UInt8[Array, "*B N H W 3"] | None = None
    """RGB frames (uint8), or None."""
    T_cam_obj_init: Float[Array, "*B 4 4"] | None = None
    """A given object pose (e.g. FoundationPose's) at frame ``init_frame``, or None."""
    init_frame: Int[Array, "*B"] | None = None
    """Frame of ``T_cam_obj_init``."""
    gt: GroundTruth | None = None
    """Ground truth, when known."""
    side: Side = eqx.field(static=True, default="right")
    """Which hand (static: a batch holds one side; names live outside the pytree)."""

    @property
    def num_frames(self) -> int:
        return self.valid.shape[-1]

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        return tuple(self.hand_mask.shape[-2:])
