"""Per-face screen-space data and the pixel–face geometry shared by the binned and dense paths.

Conventions: pixel (row r, column c) has its centre at ``uv = (c, r)`` in the coordinates that
``K`` projects to (OpenCV, as :func:`hoijax.geometry.project`); distances are in pixels, so
σ is in px². Triangles are double-sided.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from hoijax.geometry import project

AREA_EPS_PX2 = 1e-8
"""Faces whose doubled screen area is below this are culled (they cover no pixel centre)."""


class ScreenFaces(eqx.Module):
    """Projected faces, one row per face plus a last *sentinel* row.

    The sentinel is a harmless triangle far outside any image; padded slots of tile lists point
    at it, so masked lanes compute finite values and never poison gradients.
    """

    uv: Float[Array, "F1 3 2"]
    """Screen positions of the three corners, pixels."""
    inv_z: Float[Array, "F1 3"]
    """1 / depth of the three corners, 1/metres (depths clamped to the near plane)."""
    area2: Float[Array, " F1"]
    """Twice the signed screen area (positive: counter-clockwise in uv)."""
    mesh_id: Int[Array, " F1"]
    """Mesh of each face (-1 for the sentinel)."""
    valid: Bool[Array, " F1"]
    """Face is rendered: in front of the near plane, finite, non-degenerate."""


def screen_faces(
    verts_cam: Float[Array, "V 3"],
    faces: Int[Array, "F 3"],
    K: Float[Array, "3 3"],
    face_mesh_id: Int[Array, " F"],
    near_m,
    num_meshes: int = 1,
) -> ScreenFaces:
    """Project the faces and decide which render.

    Culled: faces with a corner at or behind ``near_m`` (not clipped), non-finite corners,
    repeated vertex indices, screen area below rounding level (relative to the coordinates'
    magnitude: XLA fuses the area's products into multiply-adds, so an exactly degenerate face
    comes out with a rounding-sized area), and a mesh id outside ``[0, num_meshes)``."""
    z = verts_cam[:, 2]
    z_safe = jnp.maximum(z, near_m)
    uv = project(K, verts_cam, min_depth_m=near_m)[faces]  # depth clamped: always finite
    inv_z = (1.0 / z_safe)[faces]
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    in_front = jnp.all(z[faces] > near_m, axis=1)
    finite = jnp.all(jnp.isfinite(verts_cam[faces]), axis=(1, 2))
    repeated = ((faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2])
                | (faces[:, 2] == faces[:, 0]))
    eps = jnp.finfo(uv.dtype).eps
    scale = jnp.max(jnp.abs(jnp.where(finite[:, None, None], uv, 0.0)), axis=(1, 2))
    edge_len = jnp.sum(jnp.abs(e1), -1) + jnp.sum(jnp.abs(e2), -1)
    area_tol = jnp.maximum(AREA_EPS_PX2, 16 * eps * scale * edge_len)
    known_mesh = (face_mesh_id >= 0) & (face_mesh_id < num_meshes)
    valid = in_front & finite & ~repeated & known_mesh & (jnp.abs(area2) > area_tol)
    uv = jnp.where(finite[:, None, None], uv, 0.0)
    sentinel_uv = jnp.array([[-1e6, -1e6], [-1e6 + 1.0, -1e6], [-1e6, -1e6 + 1.0]], uv.dtype)
    return ScreenFaces(
        uv=jnp.concatenate([uv, sentinel_uv[None]]),
        inv_z=jnp.concatenate([jnp.where(finite[:, None], inv_z, 1.0), jnp.ones((1, 3),
                                                                                 inv_z.dtype)]),
        area2=jnp.concatenate([jnp.where(valid, area2, 1.0), jnp.ones((1,), area2.dtype)]),
        mesh_id=jnp.concatenate([face_mesh_id.astype(jnp.int32), jnp.full((1,), -1, jnp.int32)]),
        valid=jnp.concatenate([valid, jnp.zeros((1,), bool)]),
    )


class PixelFace(eqx.Module):
    """Geometry of pixel–face pairs (any leading shape ``*P``)."""

    inside: Bool[Array, "*P"]
    """Pixel centre inside the triangle (edges included)."""
    dist2_signed: Float[Array, "*P"]
    """Squared distance to the triangle, negative inside (px²)."""
    inv_z: Float[Array, "*P"]
    """1 / depth at the pixel, perspective-correct (meaningful where ``inside``)."""


def _edge_functions(px, py, uv):
    """Edge functions (w0, w1, w2) of pixel fields against triangles (scalar fields).

    Edge i runs from corner i+1 to corner i+2 (opposite corner i); ``w_i`` is twice the signed
    area of the sub-triangle opposite corner i, so they sum to ``area2`` and ``w / area2`` are
    the screen-space barycentrics.
    """
    out = []
    for i in range(3):
        x0, y0 = uv[..., (i + 1) % 3, 0], uv[..., (i + 1) % 3, 1]
        ex, ey = uv[..., (i + 2) % 3, 0] - x0, uv[..., (i + 2) % 3, 1] - y0
        out.append(ex * (py - y0) - ey * (px - x0))
    return tuple(out)


def edge_weights(p, uv):
    """Edge functions (w0, w1, w2) of points p (..., 2) against triangles uv (..., 3, 2)."""
    return _edge_functions(p[..., 0], p[..., 1], uv)


def _inside(w, area2):
    """Pixel centre inside the triangle, edges included, for either winding."""
    sign = jnp.sign(area2)
    return (w[0] * sign >= 0) & (w[1] * sign >= 0) & (w[2] * sign >= 0)


def pixel_face(p: Float[Array, "*P 2"], uv, inv_z, area2) -> PixelFace:
    """Inside test, signed squared distance and perspective-correct 1/z of pixel–face pairs.

    ``uv`` (..., 3, 2), ``inv_z`` (..., 3) and ``area2`` (...) broadcast against ``p``'s
    leading axes. Written on scalar fields (structure of arrays): every intermediate has the
    pairs' full shape with no small trailing axis, so XLA fuses the whole computation into one
    vectorized loop over pixels.
    """
    px, py = p[..., 0], p[..., 1]
    w = _edge_functions(px, py, uv)
    inside = _inside(w, area2)
    dist2 = _nearest_edge(px, py, uv)[0]
    inv_z_px = sum(w[i] * (inv_z[..., i] / area2) for i in range(3))
    return PixelFace(inside=inside, dist2_signed=jnp.where(inside, -dist2, dist2),
                     inv_z=inv_z_px)


def soft_log_transmittance(dist2_signed, sigma_px2, cutoff_px2):
    """``log(1 - p)`` with ``p = sigmoid(-d/σ)`` for ``d <= cutoff``, else 0 (p = 0).

    Computed as ``-softplus(-d/σ)``: finite, with finite gradients, even where p rounds to 1.
    """
    x = -dist2_signed / sigma_px2
    return jnp.where(dist2_signed <= cutoff_px2, -jax.nn.softplus(x), 0.0)


def _nearest_edge(px, py, uv):
    """Per pixel: squared distance to the triangle's boundary, and the nearest edge's
    (index, t, residual r = p - closest point). Scalar fields, as in :func:`pixel_face`."""
    best = None
    for i in range(3):
        x0, y0 = uv[..., (i + 1) % 3, 0], uv[..., (i + 1) % 3, 1]
        ex, ey = uv[..., (i + 2) % 3, 0] - x0, uv[..., (i + 2) % 3, 1] - y0
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
            best = tuple(jnp.where(closer, c, b) for c, b in zip(cand, best))
    return best


@jax.custom_jvp
def soft_log_t(pix, uv, sigma_px2, cutoff_px2):
    """``log(1 - p)`` of pixel–face pairs, ``p = sigmoid(-d/σ)`` (0 beyond the cut-off).

    ``pix`` (..., 2) pixel centres, ``uv`` (..., 3, 2) the faces' corners broadcast against
    them. The same values as ``soft_log_transmittance(pixel_face(...).dist2_signed, ...)``,
    with a hand-written derivative: by the envelope theorem the squared distance to a segment
    x0–x1 whose closest point sits at parameter t changes by ``-2 r·((1 - t) dx0 + t dx1)``
    (r = pixel − closest point), and only the nearest edge counts. Written as a JVP rule, so
    forward mode works and reverse mode comes from its transpose; autodiff of the plain
    expression materializes dozens of pair-sized arrays instead (about 4× slower here).
    """
    px, py = pix[..., 0], pix[..., 1]
    d2 = _nearest_edge(px, py, uv)[0]
    d = jnp.where(_inside(_edge_functions(px, py, uv), _area2(uv)), -d2, d2)
    return soft_log_transmittance(d, sigma_px2, cutoff_px2)


def _area2(uv):
    return ((uv[..., 1, 0] - uv[..., 0, 0]) * (uv[..., 2, 1] - uv[..., 0, 1])
            - (uv[..., 1, 1] - uv[..., 0, 1]) * (uv[..., 2, 0] - uv[..., 0, 0]))


@soft_log_t.defjvp
def _soft_log_t_jvp(primals, tangents):
    pix, uv, sigma_px2, cutoff_px2 = primals
    _, duv, dsigma, _ = tangents  # pixel centres and the cut-off carry no derivative
    px, py = pix[..., 0], pix[..., 1]
    d2, edge, t, rx, ry = _nearest_edge(px, py, uv)
    inside = _inside(_edge_functions(px, py, uv), _area2(uv))
    d = jnp.where(inside, -d2, d2)
    out = soft_log_transmittance(d, sigma_px2, cutoff_px2)
    live = d <= cutoff_px2
    s = jax.nn.sigmoid(-d / sigma_px2)
    # d log(1-p) / d d = sigmoid(-d/σ) / σ ;  d d / d d2 = ∓1 (inside: d = -d2)
    k = jnp.where(live, s / sigma_px2, 0.0) * jnp.where(inside, -1.0, 1.0)
    # d(d2) = -2 r · Σ_j w_j du_j with w = (1 - t) at the nearest edge's start corner, t at its end.
    dx_w, dy_w = 0.0, 0.0
    for j in range(3):
        w = (jnp.where(edge == (j + 2) % 3, 1.0 - t, 0.0)  # edge i starts at corner i+1
             + jnp.where(edge == (j + 1) % 3, t, 0.0))  # ... and ends at corner i+2
        dx_w = dx_w + w * duv[..., j, 0]
        dy_w = dy_w + w * duv[..., j, 1]
    tangent = k * (-2.0 * (rx * dx_w + ry * dy_w))
    tangent = tangent + jnp.where(live, -s * d / sigma_px2**2, 0.0) * dsigma
    return out, tangent
