"""SDF-based hand-object terms: interaction stability (AGILE Eq. 5-7) and contact."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from hoijax.geometry import safe_norm
from hoijax.losses._frames import cam_to_obj
from hoijax.sdf import DEFAULT_SIGMA_PER_M, SdfGrid, query_sdf_scaled, sdf_gate

DEFAULT_MAX_DIST_M = 0.05
"""Vertices farther than this from the object do not count in L_interact (supplementary §6)."""
DEFAULT_CONTACT_BAND_M = (0.005, 0.02)
"""Vertices between these distances from the surface are pulled towards it by L_contact."""


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
    T_t, T_p = jnp.asarray(T_cam_obj), jnp.asarray(T_cam_obj_prev)
    scale_prev = jnp.asarray(obj_scale if obj_scale_prev is None else obj_scale_prev)
    v_t = cam_to_obj(T_t, jnp.asarray(verts_cam))
    v_p = cam_to_obj(T_p, jnp.asarray(verts_cam_prev))
    d_m = jnp.maximum(query_sdf_scaled(grid, v_p, scale_prev), 0.0)
    w = jnp.where(d_m <= max_dist_m, sdf_gate(d_m, sigma_per_m), 0.0)
    loss = jnp.mean(w * safe_norm(v_t - v_p))
    return loss, {"interact": loss, "num_gated": jnp.sum(w)}


def contact_loss(
    verts_cam: Float[ArrayLike, "N 3"],
    T_cam_obj: Float[ArrayLike, "4 4"],
    grid: SdfGrid,
    obj_scale: Float[ArrayLike, "3"],
    *,
    band_m: tuple[Float[ArrayLike, ""] | float, Float[ArrayLike, ""] | float] = (
        DEFAULT_CONTACT_BAND_M),
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Contact loss: penetration plus attraction of near-contact hand vertices, metres.

    AGILE's "ray-traced contact loss" (supplementary §6, weight 5) has no published formula; this
    is an SDF version of the same two aims. With ``d_i = Φ_s(R^T (v_i - T))`` (signed distance of
    hand vertex i to the scaled object, negative inside) and the band ``(lo, hi)``:

        ``L_pen = 1/N Σ_i max(0, -d_i)``                      (penetration depth)
        ``L_att = 1/N Σ_i clip(d_i - lo, 0, hi - lo) - (hi - lo)·N_far/N``

    ``L_att`` pulls vertices between ``lo`` and ``hi`` from the surface linearly towards ``lo``;
    vertices already within ``lo`` (in contact) or beyond ``hi`` (not touching) feel nothing,
    and the term is continuous. The constant for the vertices beyond ``hi`` (``N_far``, counted
    without gradient) is subtracted so that ``L_att = 0`` when no vertex is in the band.
    ``L = L_pen + L_att``. Note that the minimum is not at the ground truth in general (a real
    grasp leaves vertices in the band); the term is a prior, not a data term.

    Returns the loss and ``{"contact": L, "penetration": L_pen, "attraction": L_att,
    "num_penetrating": count}``.
    """
    lo, hi = (jnp.asarray(b) for b in band_m)
    v = cam_to_obj(jnp.asarray(T_cam_obj), jnp.asarray(verts_cam))
    d_m = query_sdf_scaled(grid, v, obj_scale)
    pen = jnp.mean(jnp.maximum(-d_m, 0.0))
    width = hi - lo
    far = (d_m - lo >= width).astype(d_m.dtype)
    att = jnp.mean(jnp.clip(d_m - lo, 0.0, width) - width * far)
    loss = pen + att
    return loss, {"contact": loss, "penetration": pen, "attraction": att,
                  "num_penetrating": jnp.sum(d_m < 0)}
