"""Similarity Procrustes (Umeyama 1991) and the alignment used by PA-MPJPE / PA-MPVPE."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

_EPS_VARIANCE = 1e-12
"""Source variances (m^2) at or below this are treated as zero (all points equal)."""


def similarity_transform(
    src: Float[ArrayLike, "n 3"],
    dst: Float[ArrayLike, "n 3"],
    weights: Float[ArrayLike, " n"] | None = None,
) -> tuple[Float[Array, ""], Float[Array, "3 3"], Float[Array, "3"]]:
    """Least-squares similarity ``dst ~ scale * R @ src + t`` (Umeyama, PAMI 1991, Eqs. 40-42).

    Minimises ``sum_n w_n ||scale * R @ src_n + t - dst_n||^2`` over ``scale >= 0``,
    ``R`` in SO(3) (reflections are excluded by the sign fix of Umeyama's ``S``) and ``t``.

    Gradients: the solution is computed from ``jax.lax.stop_gradient`` of the inputs, so
    ``scale``, ``R`` and ``t`` carry no gradient. This avoids the SVD derivative, which is
    NaN or inf for repeated or zero singular values (planar, collinear or coincident
    points). Use :func:`procrustes_align`, which applies the frozen transform to the live
    ``src``; by the envelope theorem the gradient of the aligned *squared* error is exact.

    Degenerate input: with all (weighted) source points equal the scale is undefined; it
    is returned as 1 and ``t`` then maps the source point onto the destination centroid.
    All weights zero is treated as uniform weights.

    Args:
        src: ``(N, 3)`` source points.
        dst: ``(N, 3)`` destination points, same order.
        weights: optional ``(N,)`` nonnegative weights; ``None`` means uniform.

    Returns:
        ``scale`` (scalar), ``R`` ``(3, 3)`` and ``t`` ``(3,)``.
    """
    src = jax.lax.stop_gradient(jnp.asarray(src))
    dst = jax.lax.stop_gradient(jnp.asarray(dst))
    n = src.shape[0]
    if weights is None:
        w = jnp.full((n,), 1.0 / n, dtype=src.dtype)
    else:
        w = jax.lax.stop_gradient(jnp.asarray(weights, dtype=src.dtype))
        w_sum = jnp.sum(w)
        w = jnp.where(w_sum > 0, w / jnp.where(w_sum > 0, w_sum, 1.0), 1.0 / n)

    mu_src = w @ src
    mu_dst = w @ dst
    src_c = src - mu_src
    dst_c = dst - mu_dst
    var_src = jnp.sum(w * jnp.sum(src_c**2, axis=-1))
    # Umeyama Eq. 38: Sigma = sum_n w_n (dst_n - mu_dst)(src_n - mu_src)^T.
    sigma = jnp.einsum("n,ni,nj->ij", w, dst_c, src_c)
    U, D, Vt = jnp.linalg.svd(sigma)
    # Eq. 39-40: flip the last singular direction when U Vt would be a reflection.
    one = jnp.ones((), dtype=src.dtype)
    sign = jnp.where(jnp.linalg.det(U) * jnp.linalg.det(Vt) < 0, -one, one)
    S = jnp.stack([one, one, sign])
    R = (U * S) @ Vt
    # Eq. 42 with a safe where: all-equal source points have zero variance.
    nondegenerate = var_src > _EPS_VARIANCE
    scale = jnp.where(nondegenerate, jnp.sum(D * S) / jnp.where(nondegenerate, var_src, 1.0), 1.0)
    t = mu_dst - scale * (R @ mu_src)
    return scale, R, t


def procrustes_align(
    src: Float[ArrayLike, "n 3"],
    dst: Float[ArrayLike, "n 3"],
    weights: Float[ArrayLike, " n"] | None = None,
) -> Float[Array, "n 3"]:
    """``src`` aligned to ``dst`` by the best similarity transform (for PA-MPJPE / PA-MPVPE).

    Returns ``scale * src @ R.T + t`` with ``(scale, R, t)`` from
    :func:`similarity_transform`, which are frozen (no gradient) and applied to the live
    ``src``. Since ``(scale, R, t)`` minimise the weighted squared error, the envelope
    theorem makes the gradient of ``sum_n w_n ||aligned_n - dst_n||^2`` with respect to
    both ``src`` and ``dst`` exact. For other functions of the aligned points (for example
    the mean of unsquared distances, PA-MPJPE itself) the gradient ignores how the
    alignment moves and is only an approximation; values are always exact.

    Args:
        src: ``(N, 3)`` points to align (for example predicted joints).
        dst: ``(N, 3)`` target points (for example ground-truth joints).
        weights: optional ``(N,)`` nonnegative weights for the fit.

    Returns:
        ``(N, 3)`` aligned source points.
    """
    src = jnp.asarray(src)
    scale, R, t = similarity_transform(src, dst, weights)
    return scale * (src @ R.T) + t
