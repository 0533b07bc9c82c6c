"""Pixel–face geometry on one tile's pixels, in the scalar form a Triton program needs.

The same formulas, in the same operation order, as ``hoijax.render._faces`` (edge functions,
inside test, nearest edge, ``log(1 - p)``): there they act on arrays ``uv (..., 3, 2)``, here on
the six corner coordinates ``c = (u0, v0, u1, v1, u2, v2)`` as scalars, because a (3, 2) block
is not a power-of-two Triton shape. ``hoijax.render`` imports ``hoijax.kernels`` (never the
reverse, so the Bazel targets form no cycle), hence a second copy rather than an import;
``tests/test_kernels_raster.py`` holds the two to bit-for-bit agreement.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _corner(c, i):
    return c[2 * i], c[2 * i + 1]


def edge_functions(px, py, c):
    """(w0, w1, w2): edge i runs from corner i+1 to i+2; ``w_i`` is twice the signed area of
    the sub-triangle opposite corner i (``_faces._edge_functions``)."""
    out = []
    for i in range(3):
        x0, y0 = _corner(c, (i + 1) % 3)
        x1, y1 = _corner(c, (i + 2) % 3)
        ex, ey = x1 - x0, y1 - y0
        out.append(ex * (py - y0) - ey * (px - x0))
    return tuple(out)


def area2(c):
    """Twice the signed screen area (``_faces._area2``)."""
    return (c[2] - c[0]) * (c[5] - c[1]) - (c[3] - c[1]) * (c[4] - c[0])


def inside(w, area2_px2):
    """Pixel centre inside the triangle, edges included, either winding (``_faces._inside``)."""
    sign = jnp.sign(area2_px2)
    return (w[0] * sign >= 0) & (w[1] * sign >= 0) & (w[2] * sign >= 0)


def nearest_edge(px, py, c):
    """Squared distance to the boundary and the nearest edge's (index, t, r = p - closest
    point) (``_faces._nearest_edge``)."""
    best = None
    for i in range(3):
        x0, y0 = _corner(c, (i + 1) % 3)
        x1, y1 = _corner(c, (i + 2) % 3)
        ex, ey = x1 - x0, y1 - y0
        len2 = ex * ex + ey * ey
        inv_len2 = jnp.where(len2 > 0, 1.0 / jnp.where(len2 > 0, len2, 1.0), 0.0)
        dx, dy = px - x0, py - y0
        t = jnp.clip((dx * ex + dy * ey) * inv_len2, 0.0, 1.0)
        rx, ry = dx - t * ex, dy - t * ey
        d2 = rx * rx + ry * ry
        cand = (d2, jnp.full(d2.shape, i, jnp.int32), t, rx, ry)
        if best is None:
            best = cand
        else:
            closer = d2 < best[0]
            best = tuple(jnp.where(closer, a, b) for a, b in zip(cand, best))
    return best


def soft_log_transmittance(dist2_signed, sigma_px2, cutoff_px2):
    """``log(1 - sigmoid(-d/σ))`` for ``d <= cutoff``, else 0, as ``-softplus(-d/σ)``
    (``_faces.soft_log_transmittance``)."""
    x = -dist2_signed / sigma_px2
    return jnp.where(dist2_signed <= cutoff_px2, -jax.nn.softplus(x), 0.0)
