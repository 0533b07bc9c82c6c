"""Metric-depth terms: the rendered object against the depth map, and depth points against the
hand surface.

AGILE uses the metric depth map (MoGe-2) only to initialize: the ICP scales of hand and object
and FoundationPose's pose at the onset frame (§3.2). hoijax can also keep it in the
optimization, as ``λ_depth L_depth``: with the scale fixed, a silhouette pins an object's depth
only through its size (at a 45-pixel object 0.2 px of outline is ~1 % of the depth), and 2D
keypoints pin a hand's depth only through its spread, while a depth map measures both directly.
Set ``LossWeights.depth = 0`` for AGILE's objective.

Residuals are in units of ``scale_m`` (default 1 cm) under the pseudo-Huber penalty
``sqrt(1 + r²) - 1``: quadratic within a centimetre, linear beyond, so a wrong depth pixel (a
mask edge, a flying pixel) pulls no harder than a right one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Shaped

from hoijax.geometry import safe_sqrt
from hoijax.losses._frames import safe_mean
from hoijax.render import Rendering

DEFAULT_DEPTH_SCALE_M = 0.01
"""Residual unit of the depth terms (the pseudo-Huber knee), metres."""


def _pseudo_huber(r: Float[Array, "*N"]) -> Float[Array, "*N"]:
    return safe_sqrt(1.0 + r * r) - 1.0


def depth_errors(rendering: Rendering, depth_m, object_mask, hand_mask, object_id: int,
                 scale_m) -> tuple[Float[Array, "H W"], Bool[Array, "H W"], Float[Array, "H W"],
                                   Float[Array, "H W"]]:
    """``((z - d)/scale, counted, z, d)`` of :func:`depth_loss` (0 where not counted)."""
    d = jnp.asarray(depth_m)
    ok = (jnp.isfinite(d) & (d > 0) & jnp.asarray(object_mask, bool)
          & (rendering.mesh_id == object_id))
    if hand_mask is not None:
        ok = ok & ~jnp.asarray(hand_mask, bool)
    d = jnp.where(ok, d, 0.0)
    z = jnp.where(ok, rendering.depth, 0.0)
    return (z - d) / jnp.asarray(scale_m, z.dtype), ok, z, d


def point_plane_errors(points, points_valid, verts, normals,
                       scale_m) -> tuple[Float[Array, " P"], Bool[Array, " P"]]:
    """``(point-to-plane distance / scale, counted)`` of :func:`point_to_surface_loss`."""
    p = jnp.asarray(points)
    ok = jnp.asarray(points_valid, bool) & jnp.all(jnp.isfinite(p), axis=-1)
    p = jnp.where(ok[:, None], p, 0.0)
    v, n = jnp.asarray(verts), jnp.asarray(normals)
    d2 = jnp.sum((jax.lax.stop_gradient(p)[:, None] - jax.lax.stop_gradient(v)[None]) ** 2, -1)
    nearest = jnp.argmin(d2, axis=1)
    return jnp.sum((p - v[nearest]) * n[nearest], -1) / jnp.asarray(scale_m, p.dtype), ok


def depth_loss(
    rendering: Rendering,
    depth_m: Float[ArrayLike, "H W"],
    object_mask: Shaped[ArrayLike, "H W"],
    hand_mask: Shaped[ArrayLike, "H W"] | None = None,
    *,
    object_id: int = 0,
    scale_m: Float[ArrayLike, ""] | float = DEFAULT_DEPTH_SCALE_M,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Rendered object depth against the observed depth map (robust mean, in ``scale_m`` units).

    Counts the pixels where the rendered object (mesh ``object_id``) covers the pixel centre,
    the observed object mask is on, the observed hand mask is off, and the depth is finite and
    positive: there the z-buffer depth and the map measure the same surface. The gradient flows
    through the z-buffer's barycentric depth (the coverage itself is a hard choice; L_mask moves
    the outline). No counted pixel gives 0 with a zero gradient. Non-finite depth values are
    replaced before any arithmetic.

    Returns the loss and ``{"depth": loss, "num_pixels": counted pixels,
    "median_abs_m": median |Δz| over the counted pixels (NaN when none)}``.
    """
    r, ok, z, d = depth_errors(rendering, depth_m, object_mask, hand_mask, object_id, scale_m)
    loss = safe_mean(_pseudo_huber(r), ok.astype(z.dtype))
    median = jnp.nanmedian(jnp.where(ok, jnp.abs(z - d), jnp.nan))
    return loss, {"depth": loss, "num_pixels": jnp.sum(ok),
                  "median_abs_m": jax.lax.stop_gradient(median)}


def point_to_surface_loss(
    points: Float[ArrayLike, "P 3"],
    points_valid: Bool[ArrayLike, " P"],
    verts: Float[ArrayLike, "V 3"],
    normals: Float[ArrayLike, "V 3"],
    *,
    scale_m: Float[ArrayLike, ""] | float = DEFAULT_DEPTH_SCALE_M,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Observed depth points against a mesh: each point's point-to-plane distance to its nearest
    vertex (one-sided, scan → model, so a partial view does not pull the unseen side), robust
    mean in ``scale_m`` units.

    Point-to-plane at the nearest vertex is unbiased on a smooth surface sampled more coarsely
    than the points (MANO's vertices are ~5 mm apart). ``normals`` are unit vertex normals (their
    sign does not matter). The nearest vertex is a hard choice with no gradient. Invalid or
    non-finite points are left out; none gives 0 with a zero gradient.

    Returns the loss and ``{"point_depth": loss, "num_points": counted points}``.
    """
    r, ok = point_plane_errors(points, points_valid, verts, normals, scale_m)
    loss = safe_mean(_pseudo_huber(r), ok.astype(r.dtype))
    return loss, {"point_depth": loss, "num_points": jnp.sum(ok)}
