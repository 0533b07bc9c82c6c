"""Object pose errors: rotation (°), translation (mm), ADD and ADD-S (mm), and tracking success.

ADD (Hinterstoisser et al. 2012): mean over model points ``x`` of ``‖T_pred x − T_gt x‖``.
ADD-S: mean over model points of the distance from ``T_gt x`` to the *nearest* point of the
predicted model ``T_pred X`` (for symmetric objects). ADD-S ≤ ADD always (the nearest point is
no farther than the corresponding one).

Tracking success (hoijax's rule, not HOLD's — HOLD reports no success rate): a sequence fails
when ADD-S exceeds ``adds_fraction`` (10 %) of the object diameter on more than
``max_bad_fraction`` (30 %) of its valid frames. Both are traced numbers.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from hoijax.geometry import safe_norm
from hoijax.metrics._nn import DEFAULT_CHUNK, max_pairwise_distance, nearest_sq_dist

SUCCESS_ADDS_FRACTION = 0.1
"""A frame is lost when ADD-S > 10 % of the object diameter (the BOP/PoseCNN ADD(-S) 0.1d rule)."""

SUCCESS_MAX_BAD_FRACTION = 0.3
"""A sequence fails when more than 30 % of its valid frames are lost."""


def rotation_error_deg(R_pred: Float[ArrayLike, "3 3"], R_gt: Float[ArrayLike, "3 3"]) -> Float[Array, ""]:
    """Geodesic angle of ``R_pred^T R_gt`` in degrees, in [0, 180].

    Computed as ``atan2(‖vee(D − Dᵀ)‖/2, (tr D − 1)/2)``, accurate near 0° and 180° where
    ``arccos`` loses precision, with a safe norm (finite gradient at zero error).
    """
    D = jnp.asarray(R_pred).T @ jnp.asarray(R_gt)
    skew = jnp.stack([D[2, 1] - D[1, 2], D[0, 2] - D[2, 0], D[1, 0] - D[0, 1]])
    sin = 0.5 * safe_norm(skew)
    cos = 0.5 * (jnp.trace(D) - 1.0)
    return jnp.degrees(jnp.arctan2(sin, cos))


def translation_error_mm(t_pred: Float[ArrayLike, "3"], t_gt: Float[ArrayLike, "3"]) -> Float[Array, ""]:
    """``‖t_pred − t_gt‖`` in mm (inputs in metres)."""
    return jnp.linalg.norm(jnp.asarray(t_pred) - jnp.asarray(t_gt)) * 1000.0


def _apply(T, x):
    T = jnp.asarray(T)
    return x @ T[:3, :3].T + T[:3, 3]


def add_mm(
    T_cam_obj_pred: Float[ArrayLike, "4 4"],
    T_cam_obj_gt: Float[ArrayLike, "4 4"],
    points_obj: Float[ArrayLike, "n 3"],
    valid: Bool[ArrayLike, " n"] | None = None,
) -> Float[Array, ""]:
    """ADD in mm: mean distance between corresponding transformed model points."""
    x = jnp.asarray(points_obj)
    d = jnp.linalg.norm(_apply(T_cam_obj_pred, x) - _apply(T_cam_obj_gt, x), axis=-1)
    if valid is None:
        return jnp.mean(d) * 1000.0
    v = jnp.asarray(valid, bool)
    return jnp.sum(jnp.where(v, d, 0.0)) / jnp.maximum(jnp.sum(v), 1) * 1000.0


def adds_mm(
    T_cam_obj_pred: Float[ArrayLike, "4 4"],
    T_cam_obj_gt: Float[ArrayLike, "4 4"],
    points_obj: Float[ArrayLike, "n 3"],
    valid: Bool[ArrayLike, " n"] | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> Float[Array, ""]:
    """ADD-S in mm: mean over ground-truth-posed points of the distance to the nearest
    prediction-posed point (chunked brute force)."""
    x = jnp.asarray(points_obj)
    v = jnp.ones(x.shape[:1], bool) if valid is None else jnp.asarray(valid, bool)
    d = jnp.sqrt(nearest_sq_dist(_apply(T_cam_obj_gt, x), _apply(T_cam_obj_pred, x), v,
                                 chunk=chunk))
    return jnp.sum(jnp.where(v, d, 0.0)) / jnp.maximum(jnp.sum(v), 1) * 1000.0


def object_diameter_mm(
    points_obj: Float[ArrayLike, "n 3"], valid: Bool[ArrayLike, " n"] | None = None
) -> Float[Array, ""]:
    """Largest distance between two (valid) model points, mm."""
    return max_pairwise_distance(points_obj, valid) * 1000.0


def tracking_failed(
    adds_per_frame_mm: Float[ArrayLike, " N"],
    diameter_mm: Float[ArrayLike, ""],
    valid: Bool[ArrayLike, " N"] | None = None,
    adds_fraction: Float[ArrayLike, ""] | float = SUCCESS_ADDS_FRACTION,
    max_bad_fraction: Float[ArrayLike, ""] | float = SUCCESS_MAX_BAD_FRACTION,
) -> Bool[Array, ""]:
    """Whether one sequence counts as a tracking breakdown (see the module docstring).

    Frames whose ADD-S is not finite count as lost. A sequence with no valid frame fails.
    """
    a = jnp.asarray(adds_per_frame_mm)
    v = jnp.ones(a.shape, bool) if valid is None else jnp.asarray(valid, bool)
    lost = ~(a <= adds_fraction * jnp.asarray(diameter_mm))  # NaN counts as lost
    n_valid = jnp.sum(v)
    bad = jnp.sum(lost & v) / jnp.maximum(n_valid, 1)
    return (bad > max_bad_fraction) | (n_valid == 0)


def success_rate(failed: Bool[ArrayLike, " B"]) -> Float[Array, ""]:
    """Fraction of sequences that did not fail."""
    return 1.0 - jnp.mean(jnp.asarray(failed, jnp.float32))
