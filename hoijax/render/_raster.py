"""The binned rasterizer: soft silhouettes, occlusion-aware visible silhouettes and a z-buffer.

Fine stage: every (face, tile) pair from the coarse stage is evaluated on the tile's pixels,
shape (P, T²), and reduced into pixels with segment sums and maxima, so the work follows the
faces' screen footprints and never H·W·F.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from hoijax.render._binning import Pairs, enumerate_pairs
from hoijax.render._faces import (
    ScreenFaces,
    edge_weights,
    pixel_face,
    screen_faces,
    soft_log_t,
)
from hoijax.render._settings import RasterSettings, default_blur_radius_px

DEFAULT_SIGMA_PX2 = 1.0
"""Default σ of the soft silhouette, px² (the edge blends over about ±2 px)."""
DEFAULT_PROB_EPS = 1e-4
"""Default cut-off: faces farther than where ``p < eps`` do not contribute (as PyTorch3D)."""
DEFAULT_NEAR_M = 1e-3
"""Default near plane, metres: faces with a corner at or behind it are culled."""
BACKEND_ENV = "HOIJAX_RASTER_BACKEND"
"""Environment variable that decides ``rasterize(backend="auto")``: ``jax`` or ``pallas``."""


class Rendering(eqx.Module):
    """What :func:`rasterize` returns. Images are (H, W) with row = v, column = u."""

    silhouette: Float[Array, "*B M H W"]
    """Soft silhouette of each mesh on its own: ``1 - Π(1 - p)`` over its faces."""
    visible: Float[Array, "*B M H W"]
    """Occlusion-aware soft silhouette. Meshes are composited front to back per pixel, each
    as one layer of opacity ``silhouette[m]`` at the depth of its nearest face within the blur
    radius (a face's depth at a pixel: its plane's, clipped to the face's depth range):
    ``visible[m] = silhouette[m] · Π_{m' nearer} (1 - silhouette[m'])``. An object behind the
    hand thus shows only where the hand lets it through. The per-pixel order is total, so the
    meshes' visible silhouettes sum to :attr:`alpha` exactly."""
    alpha: Float[Array, "*B H W"]
    """Soft silhouette of the whole scene, ``1 - Π(1 - p)`` over all faces."""
    face_id: Int[Array, "*B H W"]
    """Nearest face covering the pixel centre (index into ``faces``), -1 for background."""
    mesh_id: Int[Array, "*B H W"]
    """Mesh of :attr:`face_id`, -1 for background."""
    depth: Float[Array, "*B H W"]
    """Depth (camera z, metres) of the nearest surface; 0 for background. Differentiable."""
    bary: Float[Array, "*B H W 3"]
    """Perspective-correct barycentrics in :attr:`face_id`; 0 for background. Differentiable."""
    incomplete: Bool[Array, "*B H W"]
    """Pixels that may miss faces because a capacity was exceeded (then all of them)."""
    overflow: Bool[Array, "*B"]
    """The (face, tile) pair list was too short (see :func:`rasterize_checked`)."""
    num_pairs: Int[Array, "*B"]
    """(face, tile) pairs the scene needs (compare with the capacity)."""

    @property
    def mask(self) -> Bool[Array, "*B H W"]:
        """Hard coverage: some face covers the pixel centre."""
        return self.face_id >= 0


def _tile_pixels(tile, settings: RasterSettings, dtype):
    """Pixel centres (..., T², 2) of tiles (row-major over the tile grid)."""
    T = settings.tile_size
    ty, tx = tile // settings.tiles_x, tile % settings.tiles_x
    iy, ix = jnp.meshgrid(jnp.arange(T), jnp.arange(T), indexing="ij")
    u = tx[..., None] * T + ix.reshape(-1)
    v = ty[..., None] * T + iy.reshape(-1)
    return jnp.stack([u, v], -1).astype(dtype)


def _image(per_tile, settings: RasterSettings):
    """(num_tiles, T², ...) → (H, W, ...)."""
    T = settings.tile_size
    trailing = per_tile.shape[2:]
    img = per_tile.reshape((settings.tiles_y, settings.tiles_x, T, T) + trailing)
    img = jnp.moveaxis(img, 2, 1).reshape((settings.tiles_y * T, settings.tiles_x * T) + trailing)
    return img[: settings.height, : settings.width]


def rasterize(
    verts_cam: Float[ArrayLike, "V 3"],
    faces: Int[ArrayLike, "F 3"],
    K: Float[ArrayLike, "3 3"],
    settings: RasterSettings,
    *,
    face_mesh_id: Int[ArrayLike, " F"] | None = None,
    num_meshes: int = 1,
    sigma_px2: Float[ArrayLike, ""] | float = DEFAULT_SIGMA_PX2,
    prob_eps: Float[ArrayLike, ""] | float = DEFAULT_PROB_EPS,
    near_m: Float[ArrayLike, ""] | float = DEFAULT_NEAR_M,
    backend: Literal["auto", "jax", "pallas"] = "auto",
) -> Rendering:
    """Rasterize triangle meshes seen by a pinhole camera: soft and hard, binned to tiles.

    Soft silhouettes follow SoftRas / PyTorch3D's ``SoftSilhouetteShader``:
    ``p = sigmoid(-d/σ)`` with ``d`` the signed squared distance from the pixel centre to the
    triangle in px² (negative inside), ``alpha = 1 - Π(1 - p)`` over the faces with
    ``p >= prob_eps`` (the blur radius ``sqrt(σ log(1/eps - 1))`` px); computed as
    ``1 - exp(-Σ softplus(-d/σ))``, which is exact and keeps gradients finite where ``p → 1``.
    Unlike PyTorch3D's ``faces_per_pixel``, no face within the radius is ever dropped.

    Args:
      verts_cam: vertices in the camera frame (OpenCV: x right, y down, z forward), metres.
      faces: triangles; both windings render (double-sided).
      K: intrinsics; pixel (r, c) has its centre at ``K``-projected ``(u, v) = (c, r)``.
      settings: static image size, tiling and pair capacity.
      face_mesh_id: mesh of each face in ``[0, num_meshes)`` (several meshes in one scene);
        default all 0.
      num_meshes: static number of meshes (the leading axis of the silhouettes).
      sigma_px2: σ, px² (traced).
      prob_eps: probability cut-off defining the blur radius (traced).
      near_m: near plane, metres; faces with a corner at or behind it are culled, not
        clipped (traced).
      backend: the fine stage's implementation. ``"jax"``: segment reductions over pairs (the
        reference; the CPU path). ``"pallas"``: the kernels of :mod:`hoijax.kernels`, one
        program per tile (on a CPU they run in Pallas' interpreter: slow, for tests).
        ``"auto"``: the environment variable ``HOIJAX_RASTER_BACKEND`` (``jax`` or
        ``pallas``) if set, else ``"pallas"`` on a GPU when the kernels support the case
        (``hoijax.kernels.unsupported_reason``) and ``"jax"`` otherwise. Both give the same
        ``Rendering`` up to float rounding.

    Work: every (face, tile) pair whose boxes overlap is evaluated on the tile's
    ``tile_size²`` pixels and reduced into pixels with segment sums and maxima. Depth and
    barycentrics are recomputed from the chosen face with live vertices, so they are
    differentiable while the choice itself is not. A too-short pair list sets ``overflow``
    and marks the image ``incomplete`` rather than silently dropping faces.
    """
    verts_cam = jnp.asarray(verts_cam)
    faces = jnp.asarray(faces, jnp.int32)
    if faces.ndim != 2 or faces.shape[0] == 0 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3) with F >= 1, got {faces.shape}")
    dtype = verts_cam.dtype
    face_mesh_id = (jnp.zeros((faces.shape[0],), jnp.int32) if face_mesh_id is None
                    else jnp.asarray(face_mesh_id, jnp.int32))
    return _rasterize(verts_cam, faces, jnp.asarray(K, dtype), face_mesh_id,
                      jnp.asarray(sigma_px2, dtype), jnp.asarray(prob_eps, dtype),
                      jnp.asarray(near_m, dtype), settings=settings, num_meshes=num_meshes,
                      pallas=_use_pallas(backend, settings, dtype))


@functools.partial(jax.jit, static_argnames=("settings", "num_meshes", "pallas"))
def _rasterize(verts_cam, faces, K, face_mesh_id, sigma_px2, prob_eps, near_m, *,
               settings: RasterSettings, num_meshes: int, pallas: bool) -> Rendering:
    """:func:`rasterize`'s work, its backend resolved. A ``jit`` function, so a program that
    renders the same shapes at several places (the tracker's stages) traces it once: the
    later calls find it in jit's trace cache (XLA still inlines each call site)."""
    F, M = faces.shape[0], num_meshes
    dtype = verts_cam.dtype
    cutoff_px2 = sigma_px2 * jnp.log(1.0 / prob_eps - 1.0)

    sf = screen_faces(verts_cam, faces, K, face_mesh_id, near_m, M)
    pairs = enumerate_pairs(sf, settings, default_blur_radius_px(sigma_px2, prob_eps))
    ntiles = settings.num_tiles
    if pallas:
        from hoijax.kernels import raster_tiles  # GPU kernels; imported only when used

        tiles = raster_tiles(sf.uv, sf.inv_z, sf.area2, sf.mesh_id, pairs.face, pairs.tile,
                             tile_size=settings.tile_size, tiles_x=settings.tiles_x,
                             tiles_y=settings.tiles_y, num_meshes=M, sigma_px2=sigma_px2,
                             cutoff_px2=cutoff_px2)
        log_t_mesh, mesh_inv_z, face_sel = tiles.log_t, tiles.mesh_inv_z, tiles.face
        covered = face_sel < F
    else:
        log_t_mesh, mesh_inv_z, face_sel, covered = _fine_stage(
            sf, pairs, settings, M, sigma_px2, cutoff_px2)
    sil = -jnp.expm1(log_t_mesh)  # (tiles, M, T²)
    alpha = -jnp.expm1(jnp.sum(log_t_mesh, axis=1))

    # Mesh-level compositing for the visible silhouettes (ordering carries no gradient).
    order = jnp.arange(M)
    nearer = (mesh_inv_z[:, None, :, :] > mesh_inv_z[:, :, None, :]) | (
        (mesh_inv_z[:, None, :, :] == mesh_inv_z[:, :, None, :])
        & (order[None, :] < order[:, None])[None, :, :, None])  # [t, m, m', p]: m' before m
    vis = sil * jnp.exp(jnp.einsum("tnmp,tmp->tnp", nearer.astype(dtype), log_t_mesh))

    # Depth and barycentrics from the chosen face with live vertices (differentiable).
    pix_all = _tile_pixels(jnp.arange(ntiles), settings, dtype)  # (tiles, T², 2)
    w = jnp.stack(edge_weights(pix_all, sf.uv[face_sel]), -1)
    persp = (w / sf.area2[face_sel][..., None]) * sf.inv_z[face_sel]
    inv_depth = jnp.where(covered, jnp.sum(persp, -1), 1.0)
    bary = jnp.where(covered[..., None], persp / inv_depth[..., None], 0.0)
    depth = jnp.where(covered, 1.0 / inv_depth, 0.0)

    face_id = _image(jnp.where(covered, face_sel, -1), settings)
    return Rendering(
        silhouette=jnp.moveaxis(_image(jnp.moveaxis(sil, 1, -1), settings), -1, 0),
        visible=jnp.moveaxis(_image(jnp.moveaxis(vis, 1, -1), settings), -1, 0),
        alpha=_image(alpha, settings),
        face_id=face_id,
        mesh_id=jnp.where(face_id >= 0, face_mesh_id[jnp.maximum(face_id, 0)], -1),
        depth=_image(depth, settings),
        bary=_image(bary, settings),
        incomplete=jnp.broadcast_to(pairs.overflow, face_id.shape),
        overflow=pairs.overflow,
        num_pairs=pairs.needed,
    )


def _fine_stage(sf: ScreenFaces, pairs: Pairs, settings: RasterSettings, M: int, sigma_px2,
                cutoff_px2):
    """The fine stage in pure JAX: per tile and pixel, per-mesh ``Σ log(1 - p)`` (tiles, M, T²),
    per-mesh nearest clipped plane 1/z (tiles, M, T²), the nearest covering face (tiles, T²;
    ``F`` where none) and its coverage mask. ``hoijax.kernels.raster_tiles`` is the GPU twin."""
    ntiles = settings.num_tiles
    F = sf.uv.shape[0] - 1
    pix = _tile_pixels(pairs.tile, settings, sf.uv.dtype)  # (P, T², 2)

    # Soft part on the live graph: every pair on every pixel of its tile.
    # Values that need no gradient (inside test, 1/z) come from pixel_face under stop_gradient;
    # log(1 - p) has a hand-written backward pass (soft_log_t).
    pf = pixel_face(pix, jax.lax.stop_gradient(sf.uv[pairs.face])[:, None],
                    jax.lax.stop_gradient(sf.inv_z[pairs.face])[:, None],
                    jax.lax.stop_gradient(sf.area2[pairs.face])[:, None])
    log_t = soft_log_t(pix, sf.uv[pairs.face][:, None], sigma_px2, cutoff_px2)  # (P, T²)
    inside, pair_inv_z = pf.inside, pf.inv_z
    pair_mesh = jnp.maximum(sf.mesh_id[pairs.face], 0)
    seg = pairs.tile * M + pair_mesh  # unused slots fall into the dropped last tile
    n_seg = (ntiles + 1) * M
    log_t_mesh = jax.ops.segment_sum(log_t, seg, n_seg).reshape(ntiles + 1, M, -1)[:ntiles]

    # A face's depth at a pixel: its plane's, clipped to the face's own depth range (outside
    # the triangle the plane extrapolates). A mesh's depth: that of its nearest such face.
    corner_inv_z = jax.lax.stop_gradient(sf.inv_z[pairs.face])[:, None, :]
    plane_inv_z = jnp.clip(jax.lax.stop_gradient(pair_inv_z), jnp.min(corner_inv_z, -1),
                           jnp.max(corner_inv_z, -1))
    reach = jnp.where(log_t < 0, plane_inv_z, -jnp.inf)
    mesh_inv_z = jax.ops.segment_max(reach, seg, n_seg).reshape(ntiles + 1, M, -1)[:ntiles]

    # Hard part: the nearest covering face per pixel (the choice has no gradient).
    inside_inv_z = jnp.where(inside, jax.lax.stop_gradient(pair_inv_z), -jnp.inf)
    best = jax.ops.segment_max(inside_inv_z, pairs.tile, ntiles + 1)  # (tiles+1, T²)
    P = pairs.face.shape[0]
    is_best = inside & (inside_inv_z == best[pairs.tile]) & (inside_inv_z > -jnp.inf)
    winner = jax.ops.segment_min(jnp.where(is_best, jnp.arange(P)[:, None], P), pairs.tile,
                                 ntiles + 1)[:ntiles]  # (tiles, T²); P where uncovered
    covered = winner < P
    face_sel = jnp.where(covered, pairs.face[jnp.minimum(winner, P - 1)], F)  # F: sentinel
    return log_t_mesh, mesh_inv_z, face_sel, covered


def _use_pallas(backend: str, settings: RasterSettings, dtype) -> bool:
    """Resolve ``rasterize(backend=...)``: explicit > ``HOIJAX_RASTER_BACKEND`` > auto."""
    choice = backend
    if backend == "auto":
        choice = os.environ.get(BACKEND_ENV, "").strip().lower() or "auto"
    if choice not in ("auto", "jax", "pallas"):
        raise ValueError(f"rasterize backend must be 'auto', 'jax' or 'pallas' (argument or "
                         f"${BACKEND_ENV}), got {choice!r}")
    if choice == "jax" or (choice == "auto" and jax.default_backend() != "gpu"):
        return False
    try:
        from hoijax.kernels import unsupported_reason
    except ImportError as e:  # a JAX without Pallas' Triton backend (deprecated in 0.11)
        if choice == "pallas":
            raise ValueError(f"rasterize backend 'pallas' is not available in this JAX "
                             f"({jax.__version__}): {e}") from e
        _warn_no_kernels(str(e))
        return False

    why = unsupported_reason(settings.tile_size, dtype)
    if why is not None and choice == "pallas":
        raise ValueError(f"rasterize backend 'pallas' cannot render this case: {why}")
    return why is None


@functools.cache
def _warn_no_kernels(why: str) -> None:
    """Once per process and cause: the GPU renders with the pure-JAX path instead."""
    warnings.warn(f"hoijax.kernels cannot be imported ({why}); rasterize uses its pure-JAX "
                  f"path on this GPU (set {BACKEND_ENV}=jax to choose it and silence this)",
                  RuntimeWarning, stacklevel=4)


def screen_space(verts_cam, faces, K, near_m=DEFAULT_NEAR_M) -> ScreenFaces:
    """The projected faces :func:`rasterize` works on (for inspection and tests)."""
    faces = jnp.asarray(faces, jnp.int32)
    return screen_faces(jnp.asarray(verts_cam), faces, jnp.asarray(K),
                        jnp.zeros((faces.shape[0],), jnp.int32), near_m)
