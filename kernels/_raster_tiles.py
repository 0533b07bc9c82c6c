"""Pallas kernels for the binned rasterizer's fine stage: one program per (frame, tile).

Each program owns the ``tile_size²`` pixels of one tile and walks that tile's face list
(:func:`hoijax.kernels.tile_face_lists`) in ascending face order, keeping per pixel:

* per mesh, ``Σ log(1 - p)`` over the mesh's faces (the soft silhouette before ``1 - exp``);
* per mesh, the largest clipped plane ``1/z`` among faces within the blur radius (the depth
  that orders meshes for the visible silhouettes);
* the nearest face whose inside test passes (largest perspective-correct ``1/z``; ties go to
  the first, i.e. smallest, face), or the sentinel ``F``.

These are exactly what the pure-JAX path of :func:`hoijax.render.rasterize` computes with
segment sums and maxima over (face, tile) pairs, with the same formulas (``_pixel_face``), so
``rasterize`` finishes both paths with the same code: compositing, and depth and barycentrics
recomputed from the chosen face with live vertices.

The soft term is differentiable through :func:`jax.custom_vjp`: a second kernel walks the same
lists and, for each pair, sums over its tile's pixels the cotangent of its mesh times
``d log(1-p) / d uv`` (the envelope-theorem derivative of ``soft_log_t``'s ``custom_jvp``) and
``d log(1-p) / d σ``. Each pair belongs to exactly one tile, so every program writes its own
pairs' slots: no atomics. The z-buffer outputs carry no gradient (the reference takes them
under ``stop_gradient`` as well).

Written for the Triton backend of Pallas (scalar loads and stores, a dynamic-bound loop,
1-D blocks of ``tile_size²`` lanes); with ``interpret=True`` it runs anywhere (the CPU tests).
JAX 0.11 deprecates Pallas' Triton backend (still shipped). A Mosaic GPU version would be a
rewrite (the face-list walk staged through shared memory), worth it only once the GPU suite
shows these kernels beating the pure-JAX path; the README's *GPU suite* says why. Where this
module cannot be imported, ``rasterize(backend="auto")`` falls back to the pure-JAX path.
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton
from jaxtyping import Array, ArrayLike, Float, Int

from hoijax.kernels._pixel_face import (
    area2,
    edge_functions,
    inside,
    nearest_edge,
    soft_log_transmittance,
)
from hoijax.kernels._tile_lists import TileLists, tile_face_lists

_GEOM_ROWS = 10
"""Rows of the per-slot geometry: u0 v0 u1 v1 u2 v2 (px), 1/z0 1/z1 1/z2, doubled area."""
_GRAD_ROWS = 7
"""Rows of the backward kernel's output: d/du0 … d/dv2, d/dσ."""
MAX_TILE_SIZE = 32
"""Largest supported tile side (1024 lanes per program)."""
_DTYPES = ("float32", "float64")


class TileRaster(eqx.Module):
    """Per-tile results of the fine stage, pixels of a tile row-major (``tile_size²`` lanes)."""

    log_t: Float[Array, "T M L"]
    """Per mesh ``Σ log(1 - p)`` over its faces (≤ 0). Differentiable (custom VJP)."""
    mesh_inv_z: Float[Array, "T M L"]
    """Per mesh, the largest clipped plane 1/z of its faces within the blur radius; ``-inf``
    where none. No gradient."""
    face: Int[Array, "T L"]
    """Nearest face covering the pixel centre; ``F`` (the sentinel) where none."""
    lists: TileLists
    """The per-tile face lists the kernels walked."""


def unsupported_reason(tile_size: int, dtype) -> str | None:
    """Why the kernels cannot render with this tile size and dtype (``None``: they can).

    A program's pixels form one Triton block of ``tile_size²`` lanes, and Triton blocks must
    have power-of-two sizes.
    """
    T = tile_size
    if T < 2 or T > MAX_TILE_SIZE or T & (T - 1):
        return (f"tile_size must be a power of two in [2, {MAX_TILE_SIZE}] for the Pallas "
                f"kernels, got {T}")
    if jnp.dtype(dtype).name not in _DTYPES:
        return f"the Pallas kernels render float32 or float64, got {jnp.dtype(dtype).name}"
    return None


@dataclasses.dataclass(frozen=True)
class _Config:
    """Static shape of one kernel launch (hashable: a ``custom_vjp`` non-diff argument)."""

    tile_size: int
    tiles_x: int
    num_tiles: int
    num_meshes: int
    num_faces: int
    interpret: bool

    @property
    def lanes(self) -> int:
        return self.tile_size * self.tile_size

    @property
    def num_warps(self) -> int:
        return max(1, min(4, self.lanes // 32))


def _pixel_centres(cfg: _Config, dtype):
    """(u, v) of this program's tile, lanes row-major (as ``_raster._tile_pixels``)."""
    t = pl.program_id(0)
    T = cfg.tile_size
    lane = jax.lax.broadcasted_iota(jnp.int32, (cfg.lanes,), 0)
    u = (t % cfg.tiles_x) * T + lane % T
    v = (t // cfg.tiles_x) * T + lane // T
    return u.astype(dtype), v.astype(dtype)


def _pair_forward(px, py, g, sigma, cutoff):
    """One face (``g``: its ``_GEOM_ROWS`` scalars) on a tile's pixels: ``log(1 - p)``, the
    inside test, perspective-correct 1/z and the clipped plane 1/z of the compositing order."""
    c = g[:6]
    # Soft term: as soft_log_t (its inside test uses the live corners' own area).
    d2 = nearest_edge(px, py, c)[0]
    w = edge_functions(px, py, c)
    log_t = soft_log_transmittance(jnp.where(inside(w, area2(c)), -d2, d2), sigma, cutoff)
    # Hard terms: as pixel_face (inside test and 1/z with the face's stored area).
    a2 = g[9]
    covers = inside(w, a2)
    inv_z = sum(w[i] * (g[6 + i] / a2) for i in range(3))
    plane = jnp.clip(inv_z, jnp.minimum(jnp.minimum(g[6], g[7]), g[8]),
                     jnp.maximum(jnp.maximum(g[6], g[7]), g[8]))
    return log_t, covers, inv_z, plane


def _pair_backward(px, py, g, sigma, cutoff, ct):
    """The transpose of ``soft_log_t``'s JVP rule for one face, summed over the tile's pixels
    with cotangents ``ct``: ``(d/du0, d/dv0, …, d/dv2, d/dσ)`` as scalars."""
    c = g[:6]
    d2, edge, t, rx, ry = nearest_edge(px, py, c)
    covers = inside(edge_functions(px, py, c), area2(c))
    d = jnp.where(covers, -d2, d2)
    live = d <= cutoff
    s = jax.nn.sigmoid(-d / sigma)
    k_d = jnp.where(live, s / sigma, 0.0) * jnp.where(covers, -1.0, 1.0)
    c = ct * k_d * -2.0
    cx, cy = c * rx, c * ry
    out = []
    for j in range(3):
        w = (jnp.where(edge == (j + 2) % 3, 1.0 - t, 0.0)  # edge i starts at corner i+1
             + jnp.where(edge == (j + 1) % 3, t, 0.0))  # ... and ends at corner i+2
        out += [jnp.sum(cx * w), jnp.sum(cy * w)]
    return out + [jnp.sum(ct * jnp.where(live, -s * d / sigma**2, 0.0))]


def _accumulate(carry, f, m, log_t_f, covers, inv_z, plane):
    """Fold face ``f`` of mesh ``m`` into a tile's per-pixel state (the segment reductions of
    the pure-JAX path, in pair order)."""
    log_t, reach_z, best, face = carry
    reach = jnp.where(log_t_f < 0, plane, -jnp.inf)
    log_t = tuple(jnp.where(m == j, x + log_t_f, x) for j, x in enumerate(log_t))
    reach_z = tuple(jnp.where(m == j, jnp.maximum(z, reach), z) for j, z in enumerate(reach_z))
    nearer = covers & (inv_z > best)  # strict: the first (smallest) face wins ties
    return log_t, reach_z, jnp.where(nearer, inv_z, best), jnp.where(nearer, f, face)


def _fwd_kernel(cfg: _Config, start_ref, geom_ref, ids_ref, par_ref, *out_refs):
    M = cfg.num_meshes
    log_refs, z_refs, face_ref = out_refs[:M], out_refs[M:2 * M], out_refs[2 * M]
    dtype = geom_ref.dtype
    px, py = _pixel_centres(cfg, dtype)
    sigma, cutoff = par_ref[0], par_ref[1]
    neg_inf = jnp.full((cfg.lanes,), -jnp.inf, dtype)

    def body(k, carry):
        g = [geom_ref[r, k] for r in range(_GEOM_ROWS)]
        return _accumulate(carry, ids_ref[0, k], ids_ref[1, k],
                           *_pair_forward(px, py, g, sigma, cutoff))

    t = pl.program_id(0)
    init = (tuple(jnp.zeros((cfg.lanes,), dtype) for _ in range(M)), (neg_inf,) * M, neg_inf,
            jnp.full((cfg.lanes,), cfg.num_faces, jnp.int32))
    log_t, reach_z, _, face = jax.lax.fori_loop(start_ref[t], start_ref[t + 1], body, init)
    for j in range(M):
        log_refs[j][...] = log_t[j]
        z_refs[j][...] = reach_z[j]
    face_ref[...] = face


def _bwd_kernel(cfg: _Config, start_ref, geom_ref, ids_ref, par_ref, *refs):
    M = cfg.num_meshes
    ct_refs, grad_ref = refs[:M], refs[M]
    px, py = _pixel_centres(cfg, geom_ref.dtype)
    sigma, cutoff = par_ref[0], par_ref[1]
    cts = [r[...] for r in ct_refs]

    def body(k, carry):
        m = ids_ref[1, k]
        ct = cts[0]
        for j in range(1, M):
            ct = jnp.where(m == j, cts[j], ct)
        grads = _pair_backward(px, py, [geom_ref[r, k] for r in range(6)], sigma, cutoff, ct)
        for r, value in enumerate(grads):
            grad_ref[r, k] = value
        return carry

    t = pl.program_id(0)
    jax.lax.fori_loop(start_ref[t], start_ref[t + 1], body, jnp.int32(0))


def _compiler_params(cfg: _Config):
    return pltriton.CompilerParams(num_warps=cfg.num_warps, num_stages=1)


def _tile_spec(cfg: _Config):
    return pl.BlockSpec((pl.squeezed, cfg.lanes), lambda t: (t, 0))


def _forward(cfg: _Config, uv6, sigma, rest, ids, start, cutoff):
    dtype = uv6.dtype
    geom = jnp.concatenate([uv6, rest])
    params = jnp.stack([sigma, cutoff]).astype(dtype)
    M, n = cfg.num_meshes, cfg.num_tiles
    img = jax.ShapeDtypeStruct((n, cfg.lanes), dtype)
    outs = pl.pallas_call(
        functools.partial(_fwd_kernel, cfg),
        out_shape=[img] * (2 * M) + [jax.ShapeDtypeStruct((n, cfg.lanes), jnp.int32)],
        grid=(n,),
        in_specs=[pl.no_block_spec] * 4,
        out_specs=[_tile_spec(cfg)] * (2 * M + 1),
        interpret=cfg.interpret,
        compiler_params=_compiler_params(cfg),
        name="hoijax_raster_tiles_fwd",
    )(start, geom, ids, params)
    return jnp.stack(outs[:M], 1), jnp.stack(outs[M:2 * M], 1), outs[2 * M]


def _backward(cfg: _Config, uv6, sigma, ids, start, cutoff, log_t_ct):
    dtype = uv6.dtype
    params = jnp.stack([sigma, cutoff]).astype(dtype)
    M, n = cfg.num_meshes, cfg.num_tiles
    grads = pl.pallas_call(
        functools.partial(_bwd_kernel, cfg),
        out_shape=jax.ShapeDtypeStruct((_GRAD_ROWS, uv6.shape[1]), dtype),
        grid=(n,),
        in_specs=[pl.no_block_spec] * 4 + [_tile_spec(cfg)] * M,
        out_specs=pl.no_block_spec,
        interpret=cfg.interpret,
        compiler_params=_compiler_params(cfg),
        name="hoijax_raster_tiles_bwd",
    )(start, uv6, ids, params, *(log_t_ct[:, j] for j in range(M)))
    # Slots past start[-1] belong to no tile: never written (uninitialized on a GPU).
    used = jnp.arange(uv6.shape[1]) < start[-1]
    return jnp.where(used[None], grads, 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _tiles(cfg, uv6, sigma, rest, ids, start, cutoff):
    return _forward(cfg, uv6, sigma, rest, ids, start, cutoff)


def _tiles_fwd(cfg, uv6, sigma, rest, ids, start, cutoff):
    out = _forward(cfg, uv6, sigma, rest, ids, start, cutoff)
    return out, (uv6, sigma, ids, start, cutoff, rest)


def _tiles_bwd(cfg, res, cts):
    uv6, sigma, ids, start, cutoff, rest = res
    grads = _backward(cfg, uv6, sigma, ids, start, cutoff, cts[0])
    return (grads[:6], jnp.sum(grads[6]).astype(sigma.dtype), jnp.zeros_like(rest), None,
            None, jnp.zeros_like(cutoff))


_tiles.defvjp(_tiles_fwd, _tiles_bwd)


def raster_tiles(
    uv: Float[Array, "F1 3 2"],
    inv_z: Float[Array, "F1 3"],
    area2_px2: Float[Array, " F1"],
    mesh_id: Int[Array, " F1"],
    pair_face: Int[Array, " P"],
    pair_tile: Int[Array, " P"],
    *,
    tile_size: int,
    tiles_x: int,
    tiles_y: int,
    num_meshes: int,
    sigma_px2: Float[ArrayLike, ""] | float,
    cutoff_px2: Float[ArrayLike, ""] | float,
    interpret: bool | None = None,
) -> TileRaster:
    """The fine stage of :func:`hoijax.render.rasterize` as Pallas kernels, one frame.

    Args:
      uv, inv_z, area2_px2, mesh_id: the projected faces with a last sentinel row (``F`` =
        rows - 1), as ``hoijax.render``'s ``ScreenFaces``: corners in px, corner 1/z, doubled
        signed area, mesh of each face.
      pair_face, pair_tile: the coarse stage's (face, tile) pairs; unused slots have the face
        ``F`` and the tile ``tiles_x · tiles_y``.
      tile_size, tiles_x, tiles_y: static tiling (``RasterSettings``); ``tile_size`` must pass
        :func:`unsupported_reason`.
      num_meshes: static number of meshes.
      sigma_px2: σ of the soft silhouette, px² (differentiable).
      cutoff_px2: squared-distance cut-off beyond which a face contributes nothing, px²
        (``σ log(1/eps - 1)``; no derivative, as in ``soft_log_t``).
      interpret: run the kernels in Pallas' interpreter; default: unless the default backend
        is a GPU.

    Batch with ``vmap``: Pallas adds the batch as a grid axis. Gradients flow into ``uv``
    (through :attr:`TileRaster.log_t`) and ``sigma_px2``.
    """
    dtype = uv.dtype
    why = unsupported_reason(tile_size, dtype)
    if why is not None:
        raise ValueError(why)
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    num_tiles = tiles_x * tiles_y
    lists = tile_face_lists(pair_face, pair_tile, num_tiles)
    face = lists.face
    P = face.shape[0]
    cfg = _Config(tile_size=tile_size, tiles_x=tiles_x, num_tiles=num_tiles,
                  num_meshes=num_meshes, num_faces=uv.shape[0] - 1, interpret=bool(interpret))
    uv6 = uv[face].reshape(P, 6).T  # live: the soft term's gradient flows back through it
    rest = jax.lax.stop_gradient(jnp.concatenate([inv_z[face].T, area2_px2[face][None]]))
    ids = jnp.stack([face, jnp.maximum(mesh_id[face], 0)]).astype(jnp.int32)
    sigma = jnp.asarray(sigma_px2, dtype)
    cutoff = jax.lax.stop_gradient(jnp.asarray(cutoff_px2, dtype))
    log_t, mesh_inv_z, face_px = _tiles(cfg, uv6, sigma, rest, ids, lists.start, cutoff)
    return TileRaster(log_t=log_t, mesh_inv_z=jax.lax.stop_gradient(mesh_inv_z), face=face_px,
                      lists=lists)
