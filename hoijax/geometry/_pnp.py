"""Translation-only PnP in closed form (AGILE §3.2: hand translation from 2D keypoints)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from hoijax.geometry._camera import DEFAULT_MIN_DEPTH_M, project, unproject
from hoijax.geometry._safe import safe_norm


class PnpResult(eqx.Module):
    """Result of :func:`translation_pnp`."""

    translation: Float[Array, "3"]
    """``(3,)`` camera-frame translation in metres; ``fallback_translation`` when not valid."""
    valid: Bool[Array, ""]
    """False when the weighted keypoints do not determine the translation (all weights
    zero, fewer than two distinct rays) or a weighted point lands behind the camera."""
    reprojection_error_px: Float[Array, " n"]
    """``(N,)`` distance in pixels between each projected point and its keypoint; zero for
    keypoints or points with non-finite coordinates. Reduce with the weights."""


def _reprojection_residuals(
    K: Float[Array, "3 3"],
    points_rot: Float[Array, "n 3"],
    uv_px: Float[Array, "n 2"],
    translation: Float[Array, "3"],
    min_depth_m: Float[ArrayLike, ""],
) -> Float[Array, "n 2"]:
    return project(K, points_rot + translation, min_depth_m=min_depth_m) - uv_px


def translation_pnp(
    points_rot: Float[ArrayLike, "n 3"],
    uv_px: Float[ArrayLike, "n 2"],
    K: Float[ArrayLike, "3 3"],
    weights: Float[ArrayLike, " n"] | None = None,
    *,
    fallback_translation: Float[ArrayLike, "3"] | None = None,
    num_refine_steps: int = 0,
    min_depth_m: float | Float[ArrayLike, ""] = DEFAULT_MIN_DEPTH_M,
) -> PnpResult:
    """Camera-frame translation ``t`` that makes ``points_rot + t`` project onto ``uv_px``.

    The rotation and scale are known and already applied, so the projection
    ``x_n = (P_x + t_x) / (P_z + t_z)`` (``x_n, y_n`` from ``K^-1 (u, v, 1)``) becomes linear
    in ``t`` after multiplying out the depth (DLT-style algebraic error):

        (P_x + t_x) - x_n (P_z + t_z) = 0,    (P_y + t_y) - y_n (P_z + t_z) = 0.

    ``t`` minimises ``sum_n w_n (e_x,n^2 + e_y,n^2)`` of these residuals, a 3x3 linear
    system (normal equations). The algebraic error weighs each keypoint by its depth; with
    ``num_refine_steps > 0`` that many Gauss-Newton steps on the weighted pixel reprojection
    error follow (each kept only if it lowers that error). Noiseless keypoints are fit
    exactly either way.

    Keypoints with zero weight may hold NaN or inf (in ``uv_px`` or ``points_rot``): they are
    replaced before any arithmetic, so they affect neither values nor gradients.

    Args:
        points_rot: ``(N, 3)`` points in the camera orientation, metres, relative to the
            unknown translation (for example ``s * R @ joints_model``).
        uv_px: ``(N, 2)`` observed keypoints in pixels.
        K: ``(3, 3)`` intrinsics in pixels.
        weights: optional ``(N,)`` confidences (traced); negative or non-finite count as
            zero; ``None`` means all ones.
        fallback_translation: ``(3,)`` translation returned when the system is not
            determined (for example the previous frame's); default zeros.
        num_refine_steps: static number of Gauss-Newton refinement steps.
        min_depth_m: near plane used when projecting (see :func:`project`).

    Returns:
        A :class:`PnpResult`.
    """
    points_rot = jnp.asarray(points_rot)
    uv_px = jnp.asarray(uv_px, dtype=points_rot.dtype)
    K = jnp.asarray(K, dtype=points_rot.dtype)
    n = points_rot.shape[0]
    w = jnp.ones((n,), points_rot.dtype) if weights is None else jnp.asarray(weights, points_rot.dtype)
    if fallback_translation is None:
        fallback_translation = jnp.zeros((3,), points_rot.dtype)
    fallback_translation = jnp.asarray(fallback_translation, points_rot.dtype)

    finite = jnp.all(jnp.isfinite(uv_px), axis=-1) & jnp.all(jnp.isfinite(points_rot), axis=-1)
    w = jnp.where(finite & (w > 0), w, 0.0)
    used = w > 0
    # Where-before-use: masked rows become zeros, so NaN never meets a multiplication
    # (and the where's gradient sends nothing back to them).
    uv_px = jnp.where(finite[:, None], uv_px, 0.0)
    points_rot = jnp.where(finite[:, None], points_rot, 0.0)

    rays = unproject(K, uv_px, jnp.ones((n,), points_rot.dtype))
    x_n, y_n = rays[:, 0], rays[:, 1]
    zeros, ones = jnp.zeros_like(x_n), jnp.ones_like(x_n)
    a_x = jnp.stack([ones, zeros, -x_n], axis=-1)
    a_y = jnp.stack([zeros, ones, -y_n], axis=-1)
    c_x = x_n * points_rot[:, 2] - points_rot[:, 0]
    c_y = y_n * points_rot[:, 2] - points_rot[:, 1]
    H = jnp.einsum("n,ni,nj->ij", w, a_x, a_x) + jnp.einsum("n,ni,nj->ij", w, a_y, a_y)
    g = jnp.einsum("n,ni,n->i", w, a_x, c_x) + jnp.einsum("n,ni,n->i", w, a_y, c_y)

    # Determined iff H is well conditioned (>= 2 distinct rays with weight). Decided on
    # stop-gradient values; the singular H never reaches the solve (double where), so the
    # fallback has finite values and zero gradients.
    eigs = jnp.linalg.eigvalsh(jax.lax.stop_gradient(H))
    eps = 100 * jnp.finfo(H.dtype).eps
    determined = eigs[0] > eps * jnp.maximum(eigs[-1], jnp.finfo(H.dtype).tiny)
    H_safe = jnp.where(determined, H, jnp.eye(3, dtype=H.dtype))
    g_safe = jnp.where(determined, g, fallback_translation)
    translation = jnp.linalg.solve(H_safe, g_safe)

    def weighted_cost(t: Float[Array, "3"]) -> Float[Array, ""]:
        r = _reprojection_residuals(K, points_rot, uv_px, t, min_depth_m)
        return jnp.sum(w * jnp.sum(r**2, axis=-1))

    for _ in range(num_refine_steps):
        r = _reprojection_residuals(K, points_rot, uv_px, translation, min_depth_m)
        J = jax.jacfwd(_reprojection_residuals, argnums=3)(K, points_rot, uv_px, translation, min_depth_m)
        JtJ = jnp.einsum("n,nki,nkj->ij", w, J, J)
        Jtr = jnp.einsum("n,nki,nk->i", w, J, r)
        # Light Levenberg damping keeps the step finite if the points sit at the near plane.
        damping = 1e-9 * jnp.trace(JtJ) + jnp.finfo(JtJ.dtype).tiny
        JtJ_safe = jnp.where(determined, JtJ + damping * jnp.eye(3, dtype=JtJ.dtype), jnp.eye(3, dtype=JtJ.dtype))
        step = jnp.linalg.solve(JtJ_safe, jnp.where(determined, Jtr, 0.0))
        candidate = translation - step
        better = weighted_cost(jax.lax.stop_gradient(candidate)) <= weighted_cost(
            jax.lax.stop_gradient(translation)
        )
        translation = jnp.where(better & determined, candidate, translation)

    depth_m = points_rot[:, 2] + translation[2]
    in_front = jnp.all(jnp.where(used, depth_m > min_depth_m, True))
    residuals = _reprojection_residuals(K, points_rot, uv_px, translation, min_depth_m)
    error_px = jnp.where(finite, safe_norm(residuals), 0.0)
    return PnpResult(
        translation=translation,
        valid=determined & in_front,
        reprojection_error_px=error_px,
    )
