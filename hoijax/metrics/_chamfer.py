"""Chamfer distance and F-scores between two point clouds (HOLD's and FreiHAND's definitions).

HOLD (``code/src/utils/icp.py: calculate_metrics`` and ``eval_modules.py:
calculate_chamfer_f_scores``) converts both clouds to centimetres, finds each point's nearest
neighbour in the other cloud and reports

- CD = mean_gt d²(gt → pred) + mean_pred d²(pred → gt), in cm²: the **sum** of the two
  directional means of squared distances (not their average);
- F@τ = 2·P·R / (P + R) with P, R the fractions of points of each cloud whose nearest
  neighbour in the other is closer than τ (strict ``<``, unsquared distance); HOLD adds 1e-7
  to the denominator, we return 0 where P + R = 0 instead (identical otherwise to 1e-7).

FreiHAND / HO-3D's hand F-score (``ho3d/eval.py``) is the same formula on the vertices.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from hoijax.metrics._nn import DEFAULT_CHUNK, nearest_sq_dist

M2_TO_CM2 = 1e4
"""Square metres to square centimetres."""


class CloudComparison(eqx.Module):
    """Chamfer distance and F-scores of a predicted against a ground-truth point cloud."""

    cd_cm2: Float[Array, ""]
    """Chamfer distance, cm²: sum of the two directional means of squared NN distances."""
    fscore: Float[Array, " T"]
    """F-score per threshold, a fraction in [0, 1] (HOLD prints it × 100)."""
    precision: Float[Array, " T"]
    """Fraction of predicted points within each threshold of the ground truth."""
    recall: Float[Array, " T"]
    """Fraction of ground-truth points within each threshold of the prediction."""


def _masked_mean(x, valid):
    w = valid.astype(x.dtype)
    return jnp.sum(jnp.where(valid, x, 0.0)) / jnp.maximum(jnp.sum(w), 1.0)


def fscore_from_pr(
    precision: Float[ArrayLike, "*T"], recall: Float[ArrayLike, "*T"]
) -> Float[Array, "*T"]:
    """``2PR / (P + R)``, 0 where ``P + R = 0`` (safe where: no NaN value or gradient)."""
    p, r = jnp.asarray(precision), jnp.asarray(recall)
    s = p + r
    return jnp.where(s > 0, 2.0 * p * r / jnp.where(s > 0, s, 1.0), 0.0)


@functools.partial(jax.jit, static_argnames=("chunk",))
def compare_clouds(
    points_pred: Float[ArrayLike, "n 3"],
    points_gt: Float[ArrayLike, "m 3"],
    thresholds_m: Float[ArrayLike, " T"],
    pred_valid: Bool[ArrayLike, " n"] | None = None,
    gt_valid: Bool[ArrayLike, " m"] | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> CloudComparison:
    """Chamfer distance (cm²) and F-scores at ``thresholds_m`` (metres, traced) of two clouds.

    Inputs in metres, in the same frame (align first). ``*_valid`` mask padded points. One pass
    of chunked brute-force nearest neighbours in each direction (memory O(chunk × M)).
    """
    a = jnp.asarray(points_pred)
    b = jnp.asarray(points_gt, a.dtype)
    a_valid = jnp.ones(a.shape[:1], bool) if pred_valid is None else jnp.asarray(pred_valid)
    b_valid = jnp.ones(b.shape[:1], bool) if gt_valid is None else jnp.asarray(gt_valid)
    th = jnp.asarray(thresholds_m, a.dtype)
    d2_ab = nearest_sq_dist(a, b, b_valid, chunk=chunk)  # pred -> gt
    d2_ba = nearest_sq_dist(b, a, a_valid, chunk=chunk)  # gt -> pred
    cd = (_masked_mean(d2_ab, a_valid) + _masked_mean(d2_ba, b_valid)) * M2_TO_CM2
    # d < th  <=>  d² < th² for th >= 0: no square root needed.
    within_ab = d2_ab[None, :] < (th**2)[:, None]
    within_ba = d2_ba[None, :] < (th**2)[:, None]
    precision = jnp.sum(within_ab & a_valid[None], -1) / jnp.maximum(jnp.sum(a_valid), 1)
    recall = jnp.sum(within_ba & b_valid[None], -1) / jnp.maximum(jnp.sum(b_valid), 1)
    precision = precision.astype(a.dtype)
    recall = recall.astype(a.dtype)
    return CloudComparison(cd_cm2=cd, fscore=fscore_from_pr(precision, recall),
                           precision=precision, recall=recall)


def chamfer_cm2(
    points_pred: Float[ArrayLike, "n 3"],
    points_gt: Float[ArrayLike, "m 3"],
    pred_valid: Bool[ArrayLike, " n"] | None = None,
    gt_valid: Bool[ArrayLike, " m"] | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> Float[Array, ""]:
    """HOLD's Chamfer distance in cm² (sum of both directional means of squared distances)."""
    return compare_clouds(points_pred, points_gt, jnp.zeros((0,)), pred_valid, gt_valid,
                          chunk=chunk).cd_cm2
