"""Hand metrics: root-relative MPJPE, Procrustes-aligned MPJPE / MPVPE, vertex F-scores.

Conventions (HOLD ``eval_modules.py: eval_mpjpe_right``; HO-3D/FreiHAND ``eval.py``):

- MPJPE: both skeletons made root-relative (joint 0, the wrist, subtracted from each), then the
  mean over the 21 joints of the Euclidean error, mm. HOLD's "MPJPE" is this one.
- PA-MPJPE / P-MPVPE: the prediction aligned to the ground truth by the best similarity
  transform (scale, rotation, translation; Umeyama), then the mean Euclidean error, mm.
- F@5 / F@15: vertices after the same Procrustes alignment, F-score at 5 and 15 mm.

All functions act on one frame; ``vmap`` over frames and sequences.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from hoijax.geometry import procrustes_align
from hoijax.metrics._chamfer import compare_clouds

M_TO_MM = 1000.0

HAND_FSCORE_THRESHOLDS_M = (0.005, 0.015)
"""F@5 mm and F@15 mm (HO-3D / FreiHAND)."""


def _mean_dist_mm(a, b):
    return jnp.mean(jnp.linalg.norm(a - b, axis=-1)) * M_TO_MM


def mpjpe_mm(
    joints_pred: Float[ArrayLike, "J 3"], joints_gt: Float[ArrayLike, "J 3"], root: int = 0
) -> Float[Array, ""]:
    """Root-relative mean per-joint position error, mm (inputs in metres)."""
    p, g = jnp.asarray(joints_pred), jnp.asarray(joints_gt)
    return _mean_dist_mm(p - p[root], g - g[root])


def pa_mpjpe_mm(
    joints_pred: Float[ArrayLike, "J 3"], joints_gt: Float[ArrayLike, "J 3"]
) -> Float[Array, ""]:
    """Mean per-joint error after similarity (Procrustes) alignment, mm."""
    g = jnp.asarray(joints_gt)
    return _mean_dist_mm(procrustes_align(joints_pred, g), g)


def pa_mpvpe_mm(
    verts_pred: Float[ArrayLike, "V 3"], verts_gt: Float[ArrayLike, "V 3"]
) -> Float[Array, ""]:
    """Mean per-vertex error after similarity (Procrustes) alignment, mm (P-MPVPE)."""
    g = jnp.asarray(verts_gt)
    return _mean_dist_mm(procrustes_align(verts_pred, g), g)


def hand_fscores(
    verts_pred: Float[ArrayLike, "V 3"],
    verts_gt: Float[ArrayLike, "V 3"],
    thresholds_m: Float[ArrayLike, " T"] = HAND_FSCORE_THRESHOLDS_M,
) -> Float[Array, " T"]:
    """F-scores (fractions) of the Procrustes-aligned vertices at ``thresholds_m``."""
    g = jnp.asarray(verts_gt)
    aligned = procrustes_align(verts_pred, g)
    return compare_clouds(aligned, g, jnp.asarray(thresholds_m, g.dtype)).fscore


class HandMetrics(eqx.Module):
    """Per-frame hand metrics."""

    mpjpe_mm: Float[Array, ""]
    """Root-relative MPJPE over the 21 keypoints, mm."""
    pa_mpjpe_mm: Float[Array, ""]
    """Procrustes-aligned MPJPE, mm."""
    pa_mpvpe_mm: Float[Array, ""]
    """Procrustes-aligned mean vertex error, mm."""
    f5: Float[Array, ""]
    """F-score at 5 mm of the aligned vertices, fraction."""
    f15: Float[Array, ""]
    """F-score at 15 mm of the aligned vertices, fraction."""


def hand_metrics(
    joints_pred: Float[ArrayLike, "21 3"],
    joints_gt: Float[ArrayLike, "21 3"],
    verts_pred: Float[ArrayLike, "V 3"],
    verts_gt: Float[ArrayLike, "V 3"],
) -> HandMetrics:
    """All hand metrics of one frame (keypoints in OpenPose order: joint 0 is the wrist)."""
    f = hand_fscores(verts_pred, verts_gt)
    return HandMetrics(
        mpjpe_mm=mpjpe_mm(joints_pred, joints_gt),
        pa_mpjpe_mm=pa_mpjpe_mm(joints_pred, joints_gt),
        pa_mpvpe_mm=pa_mpvpe_mm(verts_pred, verts_gt),
        f5=f[0],
        f15=f[1],
    )
