"""SDF-based hand-object terms: interaction stability (AGILE Eq. 5-7) and contact."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from hoijax.geometry import safe_norm
from hoijax.losses._frames import cam_to_obj
from hoijax.sdf import DEFAULT_SIGMA_PER_M, SdfGrid, query_sdf_scaled, sdf_gate

DEFAULT_MAX_DIST_M = 0.05
"""Vertices farther than this from the object do not count in L_interact (supplementary §6)."""
DEFAULT_CONTACT_BAND_M = (0.002, 0.02)
"""L_contact closes a gap between these distances (the hand's closest approach, metres)."""
DEFAULT_CONTACT_SOFTMIN_M = 5e-4
"""Temperature of L_contact's smooth minimum over hand vertices, metres (it underestimates the
closest distance by at most τ·log N, about 3 mm for 778 vertices, less when few are close)."""


def gated_motion(verts_cam, verts_cam_prev, T_cam_obj, T_cam_obj_prev, grid: SdfGrid,
                 scale_prev, sigma_per_m, max_dist_m) -> tuple[Float[Array, " N"],
                                                               Float[Array, "N 3"]]:
    """Eq. 5-6: each hand vertex's gate ``w_i`` (from the previous frame) and its motion
    ``ṽ_i^(t) - ṽ_i^(t-1)`` in the object's frame."""
    v_t = cam_to_obj(jnp.asarray(T_cam_obj), jnp.asarray(verts_cam))
    v_p = cam_to_obj(jnp.asarray(T_cam_obj_prev), jnp.asarray(verts_cam_prev))
    d_m = jnp.maximum(query_sdf_scaled(grid, v_p, jnp.asarray(scale_prev)), 0.0)
    w = jnp.where(d_m <= max_dist_m, sdf_gate(d_m, sigma_per_m), 0.0)
    return w, v_t - v_p


def interaction_loss(
    verts_cam: Float[ArrayLike, "N 3"],
    verts_cam_prev: Float[ArrayLike, "N 3"],
    T_cam_obj: Float[ArrayLike, "4 4"],
    T_cam_obj_prev: Float[ArrayLike, "4 4"],
    grid: SdfGrid,
    obj_scale: Float[ArrayLike, "3"],
    obj_scale_prev: Float[ArrayLike, "3"] | None = None,
    *,
    sigma_per_m: Float[ArrayLike, ""] | float = DEFAULT_SIGMA_PER_M,
    max_dist_m: Float[ArrayLike, ""] | float = DEFAULT_MAX_DIST_M,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Interaction stability loss (AGILE Eq. 5-7), metres.

    ``ṽ_i^(t) = R_t^T (v_i^(t) - T_t)`` (Eq. 5) puts the hand vertices into the object's frame
    at ``t`` and at ``t-1`` (each with that frame's pose; the frame is the metric, scaled object
    frame). ``d_i = max(0, Φ(ṽ_i^(t-1)))`` with Φ the SDF of the object scaled by
    ``obj_scale_prev`` (:func:`hoijax.sdf.query_sdf_scaled`), ``w_i = 1 - tanh(σ d_i)`` (Eq. 6),
    set to 0 where ``d_i > max_dist_m`` (the supplementary's 0.05 m threshold), and

        ``L = 1/N Σ_i w_i ||ṽ_i^(t) - ṽ_i^(t-1)||₂``   (Eq. 7, N = all hand vertices).

    The gates depend on the previous frame only. The norm is a "safe" one: its gradient is 0
    (not NaN) where a vertex has not moved, so the loss is exactly 0 at a rigid hand-object
    motion. Returns the loss and ``{"interact": loss, "num_gated": Σ w}``.
    """
    scale_prev = obj_scale if obj_scale_prev is None else obj_scale_prev
    w, motion = gated_motion(verts_cam, verts_cam_prev, T_cam_obj, T_cam_obj_prev, grid,
                             scale_prev, sigma_per_m, max_dist_m)
    loss = jnp.mean(w * safe_norm(motion))
    return loss, {"interact": loss, "num_gated": jnp.sum(w)}


def contact_loss(
    verts_cam: Float[ArrayLike, "N 3"],
    T_cam_obj: Float[ArrayLike, "4 4"],
    grid: SdfGrid,
    obj_scale: Float[ArrayLike, "3"],
    *,
    band_m: tuple[Float[ArrayLike, ""] | float, Float[ArrayLike, ""] | float] = (
        DEFAULT_CONTACT_BAND_M),
    softmin_m: Float[ArrayLike, ""] | float = DEFAULT_CONTACT_SOFTMIN_M,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Contact loss: no penetration, and the hand touches the object when it is close, metres.

    AGILE's "ray-traced contact loss" (supplementary §6, weight 5) has no published formula; this
    is an SDF version of its two aims. With ``d_i = Φ_s(R^T (v_i - T))`` (signed distance of hand
    vertex i to the scaled object, negative inside), the band ``(lo, hi)`` and the closest
    approach ``d_min = -τ log Σ_i exp(-d_i/τ)`` (a smooth minimum, ≤ min d_i, τ = ``softmin_m``):

        ``L_pen = 1/N Σ_i max(0, -d_i)``                       (mean penetration depth)
        ``L_att = clip(d_min - lo, 0, hi - lo) - (hi - lo)·[d_min ≥ hi]``   (close the gap)

    ``L_att`` pulls the hand's closest point onto the surface (within ``lo``) when the gap is
    below ``hi``; a hand farther away feels nothing (no long-range attraction), and the
    indicator, held without gradient, keeps the term continuous and 0 there. A grasp that
    touches the object without penetrating is a minimum (``L = 0``), so the term does not pull
    the ground truth away from itself, unlike a per-vertex attraction (a real grasp leaves many
    vertices a few millimetres off the surface).

    Returns the loss and ``{"contact": L, "penetration": L_pen, "attraction": L_att,
    "closest_m": d_min, "num_penetrating": count}``.
    """
    lo, hi = (jnp.asarray(b) for b in band_m)
    tau = jnp.asarray(softmin_m)
    v = cam_to_obj(jnp.asarray(T_cam_obj), jnp.asarray(verts_cam))
    d_m = query_sdf_scaled(grid, v, obj_scale)
    pen = jnp.mean(jnp.maximum(-d_m, 0.0))
    d_min = -tau * jax.nn.logsumexp(-d_m / tau)
    width = hi - lo
    far = jax.lax.stop_gradient((d_min - lo >= width).astype(d_m.dtype))
    att = jnp.clip(d_min - lo, 0.0, width) - width * far
    loss = pen + att
    return loss, {"contact": loss, "penetration": pen, "attraction": att, "closest_m": d_min,
                  "num_penetrating": jnp.sum(d_m < 0)}
