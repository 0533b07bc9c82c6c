"""DINO features for real sequences: the frames' feature maps and the object's per-vertex features.

AGILE's semantic loss (§3.3, Eq. 4) compares the DINO features of each frame with per-point
features of the object. This module computes both from a checkpoint:

* :func:`frame_features`: the final-norm patch features of every frame (N, Hf, Wf, C), batched
  and jitted (one compilation per image size and batch). The frame is resized to a multiple of
  the patch size (:func:`hoijax.features.patch_aligned_hw`), so Hf ≈ H / 14 for DINOv2 and
  H / 16 for DINOv3. The tracker accepts any feature-map size: :func:`hoijax.losses.dino_loss`
  maps pixels to cells with :func:`hoijax.features.image_to_feature_uv` from the image size and
  the map's own size (same field of view), and it compares features by *cosine* similarity, so
  the scale of a feature vector does not matter. The maps are stored L2-normalised per cell
  (``normalize=True``), which changes nothing for the loss and keeps the values bounded.
* :func:`object_vertex_features`: the textured mesh rendered from ``views`` viewpoints spread
  evenly on a sphere around it (:func:`view_cameras`, Fibonacci lattice, each camera looking at
  the bounding-box centre from a distance at which the bounding sphere fills
  ``fill`` of the image), DINO run on each rendering (white background), and each vertex's
  feature the mean, over the views that see it, of the feature map read bilinearly at its
  projection (:func:`lift_vertex_features`). A vertex is seen by a view when it projects inside
  the image onto a covered pixel and is not behind the z-buffer there by more than a tolerance
  (depth test against the rasterizer's hard depth, the pixel under the vertex or one of its
  8 neighbours, so vertices on the silhouette count). Each view's sample is L2-normalised
  before averaging and the mean is normalised again (cosine features). Vertices no view sees
  get the mean of their mesh neighbours' features, spread over the edges until every vertex
  connected to a seen one has a value; vertices of components never seen get the mean of all
  seen vertices' features.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from hoijax.features._config import ViTConfig
from hoijax.features._dense import dense_features, patch_aligned_hw
from hoijax.features._similarity import _normalize, bilinear_sample, image_to_feature_uv


# ------------------------------------------------------------------------------------ frames


@functools.partial(jax.jit, static_argnames=("config", "input_hw", "normalize"))
def _batch_features(params, images, *, config: ViTConfig, input_hw: tuple[int, int],
                    normalize: bool):
    feats = jax.vmap(lambda im: dense_features(params, config, im, input_hw=input_hw))(images)
    return _normalize(feats) if normalize else feats


def frame_features(
    params: dict,
    config: ViTConfig,
    rgb: ArrayLike,
    *,
    batch: int = 8,
    input_hw: tuple[int, int] | None = None,
    normalize: bool = True,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """DINO patch features of every frame, (N, Hf, Wf, C) float32.

    Args:
      params, config: the ViT (e.g. ``load_vit_params(path, vit_preset("dinov2_vits14"))``).
      rgb: frames (N, H, W, 3), uint8 (or float in [0, 1]).
      batch: frames per call of the compiled program; the last batch is padded (repeating the
        last frame), so every call has the same shape and compiles once.
      input_hw: size the frames are resized to before the ViT (multiples of the patch size);
        default the nearest to (H, W), :func:`hoijax.features.patch_aligned_hw`.
      normalize: L2-normalise each cell's feature (the tracker's loss is cosine, so this is
        only a choice of storage; the default).
      progress: called with the number of frames done after each batch (e.g. a tqdm update).

    Returns:
      NumPy (N, Hf, Wf, C) with ``(Hf, Wf) = input_hw / patch_size``; equals
      :func:`hoijax.features.dense_features` of each frame (normalised when asked).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must be (N, H, W, 3), got shape {rgb.shape}")
    n = rgb.shape[0]
    if n == 0:
        raise ValueError("no frames")
    p = config.patch_size
    input_hw = patch_aligned_hw(rgb.shape[1:3], p) if input_hw is None else tuple(input_hw)
    if input_hw[0] % p or input_hw[1] % p or min(input_hw) <= 0:
        raise ValueError(f"input_hw {input_hw} must be positive multiples of the patch size {p}")
    batch = max(1, min(int(batch), n))
    out = None
    for start in range(0, n, batch):
        chunk = rgb[start:start + batch]
        real = chunk.shape[0]
        if real < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real, axis=0)])
        feats = np.asarray(_batch_features(params, jnp.asarray(chunk), config=config,
                                           input_hw=input_hw, normalize=normalize))
        if out is None:
            out = np.empty((n, *feats.shape[1:]), np.float32)
        out[start:start + real] = feats[:real]
        if progress is not None:
            progress(real)
    return out


# ------------------------------------------------------------------------------------ views


def fibonacci_directions(num: int) -> np.ndarray:
    """``num`` unit vectors spread evenly on the sphere (Fibonacci lattice), (num, 3)."""
    if num < 1:
        raise ValueError(f"need at least one view, got {num}")
    i = np.arange(num) + 0.5
    z = 1.0 - 2.0 * i / num
    r = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``T_cam_obj`` (4, 4) of an OpenCV camera at ``eye`` looking at ``target`` (image up is
    the object's +z, or +y when looking along z)."""
    z = np.asarray(target, np.float64) - np.asarray(eye, np.float64)
    z /= np.linalg.norm(z)
    up = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.95 else np.array([0.0, 1.0, 0.0])
    y = -up - np.dot(-up, z) * z
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    R = np.stack([x, y, z])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ np.asarray(eye, np.float64)
    return T


def view_cameras(vertices: ArrayLike, num_views: int, image_size: int, *,
                 fov_deg: float = 40.0, fill: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics (3, 3) and poses ``T_cam_obj`` (num_views, 4, 4) of cameras around an object.

    Square images of side ``image_size`` with a ``fov_deg`` field of view; the cameras sit on
    a sphere (:func:`fibonacci_directions`) around the bounding-box centre, at the distance
    where the bounding sphere spans ``fill`` of the field of view.
    """
    v = np.asarray(vertices, np.float64)
    lo, hi = v.min(0), v.max(0)
    centre = (lo + hi) / 2
    radius = max(float(np.linalg.norm(v - centre, axis=1).max()), 1e-6)
    half = math.radians(fov_deg) / 2
    f = (image_size / 2) / math.tan(half)
    distance = radius / math.sin(fill * half)
    K = np.array([[f, 0.0, (image_size - 1) / 2], [0.0, f, (image_size - 1) / 2],
                  [0.0, 0.0, 1.0]])
    T = np.stack([look_at(centre + distance * d, centre) for d in fibonacci_directions(num_views)])
    return K.astype(np.float32), T.astype(np.float32)


def sample_texture(texture: ArrayLike, uv: ArrayLike) -> jax.Array:
    """Bilinear samples (..., 3) in [0, 1] of a (H, W, 3) uint8 texture at texture coordinates
    ``uv`` (..., 2) (origin at the image's bottom-left, as OBJ and glTF-by-trimesh give them;
    wrapped, so coordinates outside [0, 1] repeat the texture)."""
    tex = jnp.asarray(texture, jnp.float32) / 255.0
    h, w = tex.shape[:2]
    u = jnp.mod(jnp.asarray(uv)[..., 0], 1.0) * w - 0.5
    v = (1.0 - jnp.mod(jnp.asarray(uv)[..., 1], 1.0)) * h - 0.5
    x0, y0 = jnp.floor(u), jnp.floor(v)
    fx, fy = (u - x0)[..., None], (v - y0)[..., None]
    xi = lambda x: jnp.mod(x.astype(jnp.int32), w)  # noqa: E731
    yi = lambda y: jnp.mod(y.astype(jnp.int32), h)  # noqa: E731
    c00, c01 = tex[yi(y0), xi(x0)], tex[yi(y0), xi(x0 + 1)]
    c10, c11 = tex[yi(y0 + 1), xi(x0)], tex[yi(y0 + 1), xi(x0 + 1)]
    return (1 - fy) * ((1 - fx) * c00 + fx * c01) + fy * ((1 - fx) * c10 + fx * c11)


def render_views(vertices: ArrayLike, faces: ArrayLike, colors: ArrayLike, K: ArrayLike,
                 T_cam_obj: ArrayLike, image_size: int, *, background: float = 1.0,
                 uv: ArrayLike | None = None, texture: ArrayLike | None = None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Colour images (n, S, S, 3) uint8 and z-buffer depths (n, S, S) (0 = background) of a
    mesh with per-vertex ``colors`` ((V, 3), uint8 or float in [0, 1]) seen by each camera.

    Colours are interpolated perspective-correctly over the nearest face (no shading: the
    texture as it is); the background is white by default. With ``uv`` (V, 2) and ``texture``
    (H, W, 3) uint8 the texture is sampled per pixel at the interpolated texture coordinates
    instead (:func:`sample_texture`), so detail finer than the mesh survives."""
    from hoijax import render

    verts = np.asarray(vertices, np.float32)
    faces = np.asarray(faces, np.int32)
    colors = np.asarray(colors)
    colors = (colors.astype(np.float32) / 255.0 if colors.dtype == np.uint8
              else colors.astype(np.float32))[:, :3]
    K = jnp.asarray(K, jnp.float32)
    settings = render.RasterSettings(image_size, image_size, tile_size=8)
    textured = uv is not None and texture is not None
    if textured:
        tex = jnp.asarray(texture, jnp.uint8)[..., :3]

        def shade_fn(r, attrs):
            st = render.interpolate(r, attrs, faces)
            return jnp.where(r.mask[..., None], sample_texture(tex, st), background)

        attrs = jnp.asarray(uv, jnp.float32)[:, :2]
    else:
        def shade_fn(r, attrs):
            return render.interpolate(r, attrs, faces, background=background)

        attrs = jnp.asarray(colors)
    shade = jax.jit(shade_fn)
    images, depths = [], []
    for T in np.asarray(T_cam_obj, np.float32):
        verts_cam = verts @ T[:3, :3].T + T[:3, 3]
        rendering, settings = render.rasterize_checked(jnp.asarray(verts_cam), faces, K, settings)
        img = np.asarray(shade(rendering, attrs))
        images.append(np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8))
        depths.append(np.where(np.asarray(rendering.mask), np.asarray(rendering.depth), 0.0))
    return np.stack(images), np.stack(depths).astype(np.float32)


# ------------------------------------------------------------------------------------ lifting


def visible_vertices(vertices: ArrayLike, K: ArrayLike, T_cam_obj: ArrayLike, depth: ArrayLike,
                     *, tol_m: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which vertices each view sees, (n, V) bool, and their pixel projections (n, V, 2).

    A vertex is seen when it is in front of the camera, projects inside the image, and its
    camera depth is at most the z-buffer's plus ``tol_m`` at the pixel under it or at one of
    the 8 neighbouring pixels (so vertices right on the silhouette, whose own pixel may be
    background, are kept). Default ``tol_m``: 2 % of the object's bounding radius plus the
    size of 1.5 pixels at the vertex's depth (covers the depth slope across a pixel)."""
    v = np.asarray(vertices, np.float64)
    K = np.asarray(K, np.float64)
    T = np.asarray(T_cam_obj, np.float64).reshape(-1, 4, 4)
    depth = np.asarray(depth, np.float64).reshape(T.shape[0], *np.shape(depth)[-2:])
    n, H, W = depth.shape
    centre = (v.min(0) + v.max(0)) / 2
    radius = float(np.linalg.norm(v - centre, axis=1).max())
    cam = np.einsum("nij,vj->nvi", T[:, :3, :3], v) + T[:, None, :3, 3]
    z = cam[..., 2]
    zs = np.where(z > 1e-9, z, 1.0)
    uv = np.stack([K[0, 0] * cam[..., 0] / zs + K[0, 2], K[1, 1] * cam[..., 1] / zs + K[1, 2]],
                  axis=-1)
    tol = 0.02 * radius + 1.5 * z / K[0, 0] if tol_m is None else tol_m
    col = np.rint(uv[..., 0]).astype(np.int64)
    row = np.rint(uv[..., 1]).astype(np.int64)
    inside = (z > 1e-9) & (uv[..., 0] >= -0.5) & (uv[..., 0] <= W - 0.5) \
        & (uv[..., 1] >= -0.5) & (uv[..., 1] <= H - 0.5)
    seen = np.zeros_like(inside)
    views = np.arange(n)[:, None]
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            r = np.clip(row + dr, 0, H - 1)
            c = np.clip(col + dc, 0, W - 1)
            d = depth[views, r, c]
            seen |= (d > 0) & (z <= d + tol)
    return seen & inside, uv.astype(np.float32)


def _fill_unseen(features: np.ndarray, seen: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unseen vertices get the mean of their filled neighbours (repeated until nothing
    changes); vertices of components never seen get the mean of the seen ones."""
    features = features.copy()
    filled = seen.copy()
    if filled.all():
        return features
    if not filled.any():
        raise ValueError("no vertex is visible in any view (empty or degenerate mesh?)")
    faces = np.asarray(faces, np.int64)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    V = features.shape[0]
    while True:
        src, dst = edges[:, 0], edges[:, 1]
        use = filled[src] & ~filled[dst]
        if not use.any():
            break
        total = np.zeros_like(features)
        count = np.zeros(V)
        np.add.at(total, dst[use], features[src[use]])
        np.add.at(count, dst[use], 1.0)
        new = count > 0
        features[new] = total[new] / count[new, None]
        filled |= new
    if not filled.all():
        features[~filled] = features[seen].mean(0)
    return features


def lift_vertex_features(
    vertices: ArrayLike,
    faces: ArrayLike,
    K: ArrayLike,
    T_cam_obj: ArrayLike,
    depth: ArrayLike,
    feature_maps: ArrayLike,
    *,
    normalize: bool = True,
    fill: bool = True,
    tol_m: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex features (V, C) from per-view feature maps (n, Hf, Wf, C), and the number of
    views that saw each vertex (V,).

    Each vertex seen by a view (:func:`visible_vertices`) reads that view's map bilinearly at
    its projection (pixel → cell by :func:`hoijax.features.image_to_feature_uv`, the image
    size being the depth maps'); the samples are averaged over the views that see it.
    ``normalize``: each sample and the mean are L2-normalised (cosine features). ``fill``:
    vertices no view sees get their neighbours' mean, or the global mean (module doc);
    without it they are 0.
    """
    depth = np.asarray(depth)
    fmaps = np.asarray(feature_maps, np.float32)
    seen, uv = visible_vertices(vertices, K, T_cam_obj, depth, tol_m=tol_m)
    image_hw = depth.shape[-2:]
    V, C = seen.shape[1], fmaps.shape[-1]
    total = np.zeros((V, C), np.float64)
    for k in range(fmaps.shape[0]):
        uv_feat = image_to_feature_uv(uv[k], image_hw, fmaps.shape[1:3])
        sample, _ = bilinear_sample(fmaps[k], uv_feat)
        sample = _normalize(sample) if normalize else sample
        total += np.where(seen[k][:, None], np.asarray(sample, np.float64), 0.0)
    count = seen.sum(0)
    feats = total / np.maximum(count, 1)[:, None]
    if normalize:
        feats = np.asarray(_normalize(jnp.asarray(feats, jnp.float32)), np.float64)
    if fill:
        feats = _fill_unseen(feats, count > 0, np.asarray(faces))
        if normalize:
            feats = np.asarray(_normalize(jnp.asarray(feats, jnp.float32)), np.float64)
    return feats.astype(np.float32), count


def object_vertex_features(
    params: dict,
    config: ViTConfig,
    vertices: ArrayLike,
    faces: ArrayLike,
    colors: ArrayLike,
    *,
    views: int = 16,
    image_size: int = 224,
    batch: int = 8,
    normalize: bool = True,
    fov_deg: float = 40.0,
    progress: Callable[[int], None] | None = None,
    uv: ArrayLike | None = None,
    texture: ArrayLike | None = None,
) -> tuple[np.ndarray, dict]:
    """AGILE's per-point object features: DINO features of the textured mesh rendered from
    ``views`` viewpoints, lifted to the vertices (module doc).

    Args:
      params, config: the ViT.
      vertices, faces: the object mesh (object frame; any unit).
      colors: per-vertex colours (V, 3) (uint8, or float in [0, 1]), e.g. a texture baked with
        :func:`hoijax.data.read_textured_mesh`.
      views: number of viewpoints on the sphere.
      image_size: side of the square renderings, pixels (resized to a multiple of the patch
        size for the ViT: 224 gives a 16 × 16 grid with DINOv2, 14 × 14 with DINOv3).
      batch: renderings per ViT call.
      normalize: unit-norm samples and result (the tracker's loss is cosine).
      fov_deg: the virtual cameras' field of view.
      progress: called with the number of views done after each ViT batch.
      uv, texture: the mesh's texture coordinates and image, when it has them
        (:class:`hoijax.data.TexturedMesh`): the renderings sample the texture per pixel.

    Returns:
      ``(features (V, C) float32, info)`` with ``info``: ``views_seen`` (V,) int (how many
      views saw each vertex), ``unseen`` (count of vertices filled from neighbours),
      ``images`` (views, S, S, 3) uint8 (the renderings, for checking).
    """
    K, T = view_cameras(vertices, views, image_size, fov_deg=fov_deg)
    images, depth = render_views(vertices, faces, colors, K, T, image_size, uv=uv,
                                 texture=texture)
    fmaps = frame_features(params, config, images, batch=batch, normalize=False,
                           progress=progress)
    feats, count = lift_vertex_features(vertices, faces, K, T, depth, fmaps, normalize=normalize)
    return feats, {"views_seen": count, "unseen": int(np.sum(count == 0)), "images": images}


__all__ = ["fibonacci_directions", "frame_features", "lift_vertex_features", "look_at",
           "object_vertex_features", "render_views", "sample_texture", "view_cameras", "visible_vertices"]
