"""Cosine-similarity maps between point features and a dense feature map, and their sampling.

AGILE Eq. 4 builds, for each sampled surface point i, a similarity map ``S_i = cos(f_i, F_gt)``
over the target feature map and reads it bilinearly at the point's projection. Bilinear sampling
is linear in the map, so ``S_i(u_i)`` equals the four-neighbour blend of ``cos(f_i, F_gt[n])``:
:func:`sample_similarity` computes exactly that, in O(N·C) instead of O(N·Hf·Wf·C).
:func:`similarity_maps` builds the full maps, for pictures and for checking.

Feature-map coordinates: cell ``(r, c)`` has its centre at ``uv = (c, r)`` (the image convention of
``hoijax.geometry.project``); a point at image pixel ``uv_px`` sits at
``uv_feat = (uv_px + 0.5) · (Wf / W, Hf / H) - 0.5``, see :func:`image_to_feature_uv`.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

_EPS = 1e-8
"""Norm floor of the cosine similarity: a zero feature vector has similarity 0, not NaN."""


def _normalize(x: Float[Array, "... C"]) -> Float[Array, "... C"]:
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    safe = jnp.where(sq > _EPS**2, sq, 1.0)
    return jnp.where(sq > _EPS**2, x / jnp.sqrt(safe), 0.0)


def image_to_feature_uv(
    uv_px: Float[ArrayLike, "*N 2"], image_hw: tuple[int, int], feature_hw: tuple[int, int]
) -> Float[Array, "*N 2"]:
    """Map image pixel coordinates to feature-map cell coordinates (same field of view)."""
    (H, W), (Hf, Wf) = image_hw, feature_hw
    scale = jnp.asarray([Wf / W, Hf / H], jnp.result_type(uv_px, jnp.float32))
    return (jnp.asarray(uv_px) + 0.5) * scale - 0.5


def similarity_maps(
    point_feats: Float[ArrayLike, "N C"], feature_map: Float[ArrayLike, "Hf Wf C"]
) -> Float[Array, "N Hf Wf"]:
    """Cosine similarity of every point feature with every feature-map cell (AGILE Eq. 4, S_i)."""
    return jnp.einsum("nc,hwc->nhw", _normalize(jnp.asarray(point_feats)),
                      _normalize(jnp.asarray(feature_map)))


def _bilinear_taps(uv: Float[Array, "N 2"], height: int, width: int):
    """Four neighbour indices (N, 4) (rows, cols), weights (N, 4) and in-map flags (N,).

    Outside the map the coordinate is clamped to the border cells' centres (border extension),
    and the point is flagged as outside, so callers can drop it."""
    u = jnp.clip(uv[:, 0], 0.0, width - 1.0)
    v = jnp.clip(uv[:, 1], 0.0, height - 1.0)
    c0 = jnp.clip(jnp.floor(u), 0, max(width - 2, 0)).astype(jnp.int32)
    r0 = jnp.clip(jnp.floor(v), 0, max(height - 2, 0)).astype(jnp.int32)
    c1 = jnp.minimum(c0 + 1, width - 1)
    r1 = jnp.minimum(r0 + 1, height - 1)
    fu, fv = u - c0, v - r0
    rows = jnp.stack([r0, r0, r1, r1], -1)
    cols = jnp.stack([c0, c1, c0, c1], -1)
    w = jnp.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], -1)
    inside = ((uv[:, 0] >= -0.5) & (uv[:, 0] <= width - 0.5)
              & (uv[:, 1] >= -0.5) & (uv[:, 1] <= height - 0.5))
    return rows, cols, w, inside


def bilinear_sample(
    image: Float[ArrayLike, "H W C"], uv: Float[ArrayLike, "N 2"]
) -> tuple[Float[Array, "N C"], Bool[Array, " N"]]:
    """Bilinear lookup of ``image`` at cell coordinates ``uv`` (border-extended), with in-map flags.

    Differentiable in ``image`` and in ``uv`` (piecewise linear; the gradient is finite on cell
    boundaries and zero beyond the border)."""
    image = jnp.asarray(image)
    rows, cols, w, inside = _bilinear_taps(jnp.asarray(uv), image.shape[0], image.shape[1])
    taps = image[rows, cols]  # (N, 4, C)
    return jnp.einsum("nk,nkc->nc", w.astype(image.dtype), taps), inside


def sample_similarity(
    point_feats: Float[ArrayLike, "N C"],
    feature_map: Float[ArrayLike, "Hf Wf C"],
    uv_feat: Float[ArrayLike, "N 2"],
) -> tuple[Float[Array, " N"], Bool[Array, " N"]]:
    """``S_i(u_i)``: each point's similarity map, read bilinearly at its own projection.

    Equals ``bilinear_sample(similarity_maps(f, F)[i][..., None], uv[i])`` for every ``i`` (tested),
    without building the maps. Returns the similarities in [-1, 1] and in-map flags."""
    fmap = jnp.asarray(feature_map)
    f = _normalize(jnp.asarray(point_feats))
    rows, cols, w, inside = _bilinear_taps(jnp.asarray(uv_feat), fmap.shape[0], fmap.shape[1])
    taps = _normalize(fmap[rows, cols])  # (N, 4, C)
    cos = jnp.einsum("nc,nkc->nk", f, taps)
    return jnp.sum(w.astype(cos.dtype) * cos, axis=-1), inside
