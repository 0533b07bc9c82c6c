"""Exact signed distance to a triangle mesh: point-to-triangle distance and winding-number sign.

Brute force over all (point, face) pairs, chunked over the points so memory stays bounded: meant
for small meshes (tests, the one-off grid build of :func:`hoijax.sdf.sdf_grid_from_mesh`), not
for the tracker's inner loop (which queries an :class:`hoijax.sdf.SdfGrid`).

Sign convention (hoijax-wide): **positive outside, negative inside** (AGILE Eq. 6 uses
``max(0, Φ)`` as the distance *outside* the object). trimesh's ``signed_distance`` is the
opposite (positive inside).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from hoijax.geometry import safe_sqrt

DEFAULT_CHUNK = 1024
"""Points per chunk of the brute-force loop (the work per chunk is ``chunk × F`` pairs)."""


def _safe_div(num, den, xp=jnp):
    ok = den > 0
    return xp.where(ok, num / xp.where(ok, den, 1.0), 0.0)


def _face_frames(tri, xp=jnp) -> dict:
    """Per-face constants of the branch-free point-triangle distance (Quilez' ``udTriangle``).

    ``xp`` is ``jax.numpy`` or ``numpy`` (the grid builder runs the same formulas on the host)."""
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    ba, cb, ac = b - a, c - b, a - c
    nor = xp.cross(ba, ac)
    return dict(a=a, b=b, c=c, ba=ba, cb=cb, ac=ac, nor=nor,
                n_ba=xp.cross(ba, nor), n_cb=xp.cross(cb, nor), n_ac=xp.cross(ac, nor),
                ba2=xp.sum(ba * ba, -1), cb2=xp.sum(cb * cb, -1), ac2=xp.sum(ac * ac, -1),
                nor2=xp.sum(nor * nor, -1))


def _segment_d2(edge, edge2, rel, xp=jnp):
    """Squared distance from ``rel`` (point minus segment start) to the segment ``edge``."""
    t = xp.clip(_safe_div(xp.sum(edge * rel, -1), edge2, xp), 0.0, 1.0)
    d = edge * t[..., None] - rel
    return xp.sum(d * d, -1)


def _pair_d2(fr: dict, p, xp=jnp):
    """Squared distances between points and faces, broadcast: ``p`` (P, 1, 3) against faces
    (F, 3) gives (P, F); paired (K, 3) against (K, 3) gives (K,). Degenerate faces: their edges."""
    pa, pb, pc = p - fr["a"], p - fr["b"], p - fr["c"]
    inside = (xp.sign(xp.sum(fr["n_ba"] * pa, -1)) + xp.sign(xp.sum(fr["n_cb"] * pb, -1))
              + xp.sign(xp.sum(fr["n_ac"] * pc, -1))) >= 2.0
    plane = _safe_div(xp.sum(fr["nor"] * pa, -1) ** 2, fr["nor2"], xp)
    edges = xp.minimum(xp.minimum(_segment_d2(fr["ba"], fr["ba2"], pa, xp),
                                  _segment_d2(fr["cb"], fr["cb2"], pb, xp)),
                       _segment_d2(fr["ac"], fr["ac2"], pc, xp))
    return xp.where(inside & (fr["nor2"] > 0), plane, edges)


def _solid_angles(tri: Float[Array, "F 3 3"], p: Float[Array, "P 1 3"]) -> Float[Array, "P F"]:
    """Signed solid angle of each face seen from each point (van Oosterom & Strackee 1983)."""
    a, b, c = tri[:, 0] - p, tri[:, 1] - p, tri[:, 2] - p
    la, lb, lc = (safe_sqrt(jnp.sum(x * x, -1)) for x in (a, b, c))
    det = jnp.sum(a * jnp.cross(b, c), -1)
    den = (la * lb * lc + jnp.sum(a * b, -1) * lc + jnp.sum(b * c, -1) * la
           + jnp.sum(c * a, -1) * lb)
    return 2.0 * jnp.arctan2(det, den)


def _chunked(fn, points: Float[Array, "N 3"], chunk: int):
    """``fn`` over ``points`` in static chunks (padded with copies of the first point)."""
    n = points.shape[0]
    chunk = max(1, min(chunk, n))
    n_pad = -(-n // chunk) * chunk
    padded = jnp.concatenate([points, jnp.broadcast_to(points[:1], (n_pad - n, 3))])
    out = jax.lax.map(fn, padded.reshape(-1, chunk, 3))
    return jax.tree.map(lambda x: x.reshape((n_pad,) + x.shape[2:])[:n], out)


def _flat(points):
    points = jnp.asarray(points)
    return points.reshape(-1, 3), points.shape[:-1]


def unsigned_distance_exact(
    vertices: Float[ArrayLike, "V 3"],
    faces: Int[ArrayLike, "F 3"],
    points: Float[ArrayLike, "*N 3"],
    *,
    chunk: int = DEFAULT_CHUNK,
) -> Float[Array, "*N"]:
    """Euclidean distance from each point to the nearest point of the mesh surface (metres).

    Differentiable in ``points`` and ``vertices`` (a zero gradient where the distance is 0)."""
    tri = jnp.asarray(vertices)[jnp.asarray(faces, jnp.int32)]
    pts, batch = _flat(points)
    fr = _face_frames(tri)
    d2 = _chunked(lambda p: jnp.min(_pair_d2(fr, p[:, None, :]), axis=-1), pts, chunk)
    return safe_sqrt(d2).reshape(batch)


def winding_number(
    vertices: Float[ArrayLike, "V 3"],
    faces: Int[ArrayLike, "F 3"],
    points: Float[ArrayLike, "*N 3"],
    *,
    chunk: int = DEFAULT_CHUNK,
) -> Float[Array, "*N"]:
    """Generalized winding number (Jacobson et al. 2013): 1 inside, 0 outside a closed mesh.

    Sums the signed solid angles of the faces, ``w = Σ Ω_f / 4π`` (faces wound counter-clockwise
    seen from outside). On a mesh with small holes it degrades gracefully to about 1/2 near the
    hole, so ``w > 1/2`` is a robust inside test."""
    tri = jnp.asarray(vertices)[jnp.asarray(faces, jnp.int32)]
    pts, batch = _flat(points)
    w = _chunked(lambda p: jnp.sum(_solid_angles(tri, p[:, None, :]), axis=-1), pts, chunk)
    return (w / (4.0 * jnp.pi)).reshape(batch)


def signed_distance_exact(
    vertices: Float[ArrayLike, "V 3"],
    faces: Int[ArrayLike, "F 3"],
    points: Float[ArrayLike, "*N 3"],
    *,
    chunk: int = DEFAULT_CHUNK,
) -> Float[Array, "*N"]:
    """Exact signed distance Φ(p) to a mesh, metres: positive outside, negative inside.

    Magnitude from the exact point-to-triangle distance, sign from the generalized winding
    number (inside where ``|w| > 1/2``, either orientation). ``O(N·F)`` work: for small meshes
    and for building grids.
    Differentiable in ``points`` (the sign is piecewise constant)."""
    tri = jnp.asarray(vertices)[jnp.asarray(faces, jnp.int32)]
    pts, batch = _flat(points)
    fr = _face_frames(tri)

    def one(p):
        p = p[:, None, :]
        return (jnp.min(_pair_d2(fr, p), axis=-1), jnp.sum(_solid_angles(tri, p), axis=-1))

    d2, omega = _chunked(one, pts, chunk)
    inside = jnp.abs(jax.lax.stop_gradient(omega)) > 2.0 * jnp.pi
    return jnp.where(inside, -1.0, 1.0).astype(d2.dtype).reshape(batch) * safe_sqrt(
        d2).reshape(batch)
