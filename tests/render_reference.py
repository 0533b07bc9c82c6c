"""Shared code of the ``test_render_*`` files: an independent NumPy ray caster and test scenes.

The ray caster shares no code with :mod:`hoijax.render`: it intersects the camera ray of every
pixel centre with every triangle in 3D (Möller–Trumbore, float64) instead of rasterizing in
screen space, so agreeing with it checks the projection, the pixel-centre convention, the
inside test, binning and the z-buffer all at once.
"""

from __future__ import annotations

import numpy as np

NEAR_M = 1e-3
"""The rasterizer's default near plane; faces with a corner at or behind it are culled."""


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def pixel_centres(height: int, width: int) -> np.ndarray:
    """(H·W, 2) pixel centres (u, v) = (column, row), row-major."""
    v, u = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([u.ravel(), v.ravel()], -1).astype(np.float64)


def camera_rays(K: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Directions ``K⁻¹ [u, v, 1]`` (N, 3) of the rays through pixel positions ``uv`` (N, 2)."""
    hom = np.concatenate([uv, np.ones((uv.shape[0], 1))], -1)
    return hom @ np.linalg.inv(K).T


def _moller_trumbore(d, v0, e1, e2):
    """Ray parameters t of rays ``0 + t d`` against triangles (+inf where they miss) and the
    barycentrics (a, b) of the hit point along ``e1``, ``e2``.

    ``d`` (N, 3) against triangles broadcast to (N, F, 3) or (N, 3); double-sided.
    """
    p = np.cross(d, e2)
    det = np.sum(e1 * p, -1)
    ok = np.abs(det) > 1e-300
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = -v0  # ray origin (the camera centre) minus v0
    a = np.sum(s * p, -1) * inv
    q = np.cross(s, e1)
    b = np.sum(d * q, -1) * inv
    t = np.sum(e2 * q, -1) * inv
    hit = ok & (a >= 0) & (b >= 0) & (a + b <= 1) & (t > 0)
    return np.where(hit, t, np.inf), a, b


def ray_cast(verts_cam, faces, K, height: int, width: int, near_m: float = NEAR_M,
             chunk: int = 256):
    """Nearest triangle hit by each pixel-centre ray.

    Returns ``face_id`` (H, W) int (-1 background), ``depth`` (H, W) float64, metres of camera z
    (0 background), and ``bary`` (H, W, 3), the barycentrics of the hit point on the 3D triangle
    (0 background): those are the perspective-correct barycentrics. Faces with a corner at or
    behind ``near_m`` are skipped, as the rasterizer culls them.
    """
    verts = np.asarray(verts_cam, np.float64)
    faces = np.asarray(faces, np.int64)
    tri = verts[faces]
    kept = np.all(tri[:, :, 2] > near_m, axis=1)
    v0, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    d = camera_rays(np.asarray(K, np.float64), pixel_centres(height, width))
    face_id = np.full(d.shape[0], -1, np.int64)
    depth = np.zeros(d.shape[0])
    bary = np.zeros((d.shape[0], 3))
    for s in range(0, d.shape[0], chunk):
        dc = d[s:s + chunk, None, :]
        t, a, b = _moller_trumbore(dc, v0[None], e1[None], e2[None])
        t = np.where(kept[None], t, np.inf)
        best = np.argmin(t, axis=1)
        rows = np.arange(t.shape[0])
        t_best = t[rows, best]
        hit = np.isfinite(t_best)
        face_id[s:s + chunk] = np.where(hit, best, -1)
        depth[s:s + chunk] = np.where(hit, t_best * d[s:s + chunk, 2], 0.0)
        ab = np.stack([a[rows, best], b[rows, best]], -1)
        bary[s:s + chunk] = np.where(hit[:, None],
                                     np.concatenate([1 - ab.sum(-1, keepdims=True), ab], -1), 0.0)
    return (face_id.reshape(height, width), depth.reshape(height, width),
            bary.reshape(height, width, 3))


def ray_depth(verts_cam, faces, K, uv, face_ids) -> np.ndarray:
    """Camera z where the ray through ``uv`` (N, 2) meets face ``face_ids`` (N,); inf if it misses."""
    tri = np.asarray(verts_cam, np.float64)[np.asarray(faces)[face_ids]]
    d = camera_rays(np.asarray(K, np.float64), uv)
    t, _, _ = _moller_trumbore(d, tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return t * d[:, 2]


def project(verts_cam, K) -> np.ndarray:
    v = np.asarray(verts_cam, np.float64)
    hom = v @ np.asarray(K, np.float64).T
    return hom[:, :2] / hom[:, 2:]


def edge_distance_px(verts_cam, faces, K, uv, face_ids) -> np.ndarray:
    """Screen distance (N,) from points ``uv`` (N, 2) to the nearest edge of faces ``face_ids``."""
    tri = project(verts_cam, K)[np.asarray(faces)[face_ids]]  # (N, 3, 2)
    best = np.full(uv.shape[0], np.inf)
    for i in range(3):
        a, b = tri[:, i], tri[:, (i + 1) % 3]
        ab = b - a
        len2 = np.sum(ab * ab, -1)
        t = np.clip(np.sum((uv - a) * ab, -1) / np.where(len2 > 0, len2, 1.0), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(uv - (a + t[:, None] * ab), axis=-1))
    return best


def inside_margin_px(verts_cam, faces, K, height: int, width: int, face_id) -> np.ndarray:
    """(H, W) screen distance from each pixel centre to the nearest edge of its face (-inf bg)."""
    uv = pixel_centres(height, width)
    fid = np.asarray(face_id).ravel()
    out = np.full(fid.shape, -np.inf)
    fg = fid >= 0
    out[fg] = edge_distance_px(verts_cam, faces, K, uv[fg], fid[fg])
    return out.reshape(height, width)


# --- scenes (NumPy float64, camera frame, metres) ----------------------------------------------

def random_soup(seed: int, n: int, K, height: int, width: int, z_range=(0.5, 2.0),
                size_px=(6.0, 30.0)):
    """``n`` random triangles in front of the camera, spread over (and a little past) the image.

    Centres are drawn in pixels and depth, then back-projected, so the soup fills the view;
    corners are offset by random 3D vectors of about ``size_px`` pixels, so triangles tilt in
    depth and many of them intersect.
    """
    rng = np.random.default_rng(seed)
    K = np.asarray(K, np.float64)
    uv = rng.uniform([-0.1 * width, -0.1 * height], [1.1 * width, 1.1 * height], (n, 2))
    z = rng.uniform(*z_range, n)
    centres = camera_rays(K, uv) * z[:, None]
    scale = rng.uniform(*size_px, n) * z / K[0, 0]  # metres per `size_px` pixels at depth z
    offsets = rng.normal(size=(n, 3, 3)) * scale[:, None, None]
    verts = (centres[:, None, :] + offsets).reshape(-1, 3)
    verts[:, 2] = np.maximum(verts[:, 2], 0.1)
    faces = np.arange(3 * n).reshape(n, 3)
    return verts, faces


def rotation(axis, angle_rad) -> np.ndarray:
    axis = np.asarray(axis, np.float64)
    axis = axis / np.linalg.norm(axis)
    x = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * x + (1 - np.cos(angle_rad)) * x @ x


def icosphere(radius=0.12, centre=(0.01, -0.005, 0.5), subdivisions=2):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(m.vertices) + np.asarray(centre), np.asarray(m.faces)


def box(extents=(0.2, 0.15, 0.1), centre=(-0.01, 0.02, 0.6)):
    import trimesh

    m = trimesh.creation.box(extents=extents)
    R = rotation([1.0, 0.7, 0.3], 0.8)
    return np.asarray(m.vertices) @ R.T + np.asarray(centre), np.asarray(m.faces)


R_CAM_MANO = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
"""Turns the synthetic hand (fingers along -x, dorsal +y) to lie across the image, palm facing
the camera."""


def mano_hand(seed: int = 0, z_m: float = 0.4, pose_scale: float = 0.3):
    """A posed synthetic MANO right hand centred on the optical axis at depth ``z_m``."""
    import jax.numpy as jnp

    from hoijax import mano

    rng = np.random.default_rng(seed)
    model = mano.synthetic_mano("right")
    out = mano.forward(model, jnp.zeros(3), jnp.asarray(rng.normal(scale=pose_scale, size=45)),
                       jnp.asarray(rng.normal(scale=0.5, size=10)))
    v = np.asarray(out.vertices, np.float64) @ R_CAM_MANO.T
    v = v - v.mean(0) + np.array([0.0, 0.0, z_m])
    return v, np.asarray(model.faces)


def distance_to_any_edge_px(verts_cam, faces, K, height: int, width: int,
                            chunk: int = 512) -> np.ndarray:
    """(H, W) screen distance from each pixel centre to the nearest edge of any face in front of
    the near plane (where soft silhouettes are not yet saturated for small σ)."""
    verts = np.asarray(verts_cam, np.float64)
    faces = np.asarray(faces)
    faces = faces[np.all(verts[faces][:, :, 2] > NEAR_M, axis=1)]
    tri = project(verts, K)[faces]
    a = tri.reshape(-1, 2)
    b = tri[:, [1, 2, 0]].reshape(-1, 2)
    ab = b - a
    len2 = np.maximum(np.sum(ab * ab, -1), 1e-300)
    uv = pixel_centres(height, width)
    out = np.empty(uv.shape[0])
    for s in range(0, uv.shape[0], chunk):
        p = uv[s:s + chunk, None, :]
        t = np.clip(np.sum((p - a) * ab, -1) / len2, 0.0, 1.0)
        out[s:s + chunk] = np.min(np.linalg.norm(p - (a + t[..., None] * ab), axis=-1), axis=1)
    return out.reshape(height, width)


def _cross2(a, b):
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def soft_silhouette(verts_cam, faces, K, height: int, width: int, sigma_px2: float,
                    prob_eps: float, chunk: int = 256) -> np.ndarray:
    """SoftRas / PyTorch3D silhouette (H, W) in float64, written from the formula alone:
    ``alpha = 1 - Π_f (1 - sigmoid(-d_f/σ))`` over faces with ``p >= prob_eps``, where ``d_f`` is
    the squared screen distance from the pixel centre to triangle f, negated inside it.
    Faces with a corner at or behind the near plane are left out (the rasterizer culls them)."""
    verts = np.asarray(verts_cam, np.float64)
    faces = np.asarray(faces)
    faces = faces[np.all(verts[faces][:, :, 2] > NEAR_M, axis=1)]
    tri = project(verts, K)[faces]  # (F, 3, 2)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    tri = tri[np.abs(_cross2(e1, e2)) > 1e-9]
    uv = pixel_centres(height, width)
    log_t = np.zeros(uv.shape[0])
    cutoff = sigma_px2 * np.log(1.0 / prob_eps - 1.0)
    for s in range(0, uv.shape[0], chunk):
        p = uv[s:s + chunk, None, :]  # (N, 1, 2)
        dist2 = np.full((p.shape[0], tri.shape[0]), np.inf)
        cross = []
        for i in range(3):
            a, b = tri[None, :, i], tri[None, :, (i + 1) % 3]
            ab = b - a
            t = np.clip(np.sum((p - a) * ab, -1) / np.sum(ab * ab, -1), 0.0, 1.0)
            dist2 = np.minimum(dist2, np.sum((p - (a + t[..., None] * ab)) ** 2, -1))
            cross.append(_cross2(ab, p - a))
        cross = np.stack(cross, -1)
        inside = np.all(cross >= 0, -1) | np.all(cross <= 0, -1)
        d = np.where(inside, -dist2, dist2)
        # log(1 - p) with p = sigmoid(-d/σ) is -log(1 + exp(-d/σ)).
        log_t[s:s + chunk] = np.sum(np.where(d <= cutoff, -np.logaddexp(0.0, -d / sigma_px2),
                                             0.0), -1)
    return (-np.expm1(log_t)).reshape(height, width)
