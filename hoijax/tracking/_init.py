"""Metric initialization (AGILE §3.2): hand scale and translation, object pose, scale and onset.

All functions act on one unbatched :class:`~hoijax.data.Sequence`; batch with ``vmap``.

- Hand: the detector's (β, θ, R_h) are kept; the hand scale ``s_h`` comes from constrained ICP of
  the MANO mesh to the unprojected hand depth (rotation fixed, median over frames), and the
  per-frame translation from PnP on the 2D keypoints with the scaled 3D joints.
- Object pose at the onset frame: the given pose when the sequence has one, else a batched
  render-and-compare search (:func:`search_object_pose`): candidate rotations × a translation on
  the ray through the mask centre, with the scale solved from the silhouette area (and the depth
  from the depth map), scored by silhouette IoU outside the hand.
- Object scale: anisotropic constrained ICP of the mesh to the object's depth points with the
  rotation fixed, pooling the onset frame and the frames before it (the object rests before the
  onset, so one pose explains them all).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from hoijax import geometry, mano, render
from hoijax.data import HandParams, ObjectMesh, Sequence

_TINY = 1e-9


def hand_in_mano_frame(
    model: mano.ManoModel, params: HandParams
) -> tuple[Float[Array, "778 3"], Float[Array, "21 3"]]:
    """Posed, rotated hand at zero translation: vertices and 21 keypoints (OpenPose, smplx tips).

    ``params`` is one frame (unbatched leaves). The camera-frame hand is ``s_h · v + T_h``."""
    out = mano.forward(model, params.global_orient, params.hand_pose, params.betas,
                       flat_hand_mean=True)
    return out.vertices, out.keypoints("smplx", "openpose")


def sample_mask_points(
    K: Float[ArrayLike, "3 3"],
    depth_m: Float[ArrayLike, "H W"],
    mask: Bool[ArrayLike, "H W"],
    key: Array,
    num_points: int,
) -> tuple[Float[Array, "P 3"], Bool[Array, " P"]]:
    """A fixed-size random subset of the masked pixels with valid depth, unprojected (metres)."""
    points, valid = geometry.depth_to_points(K, depth_m, mask)
    priority = jax.random.uniform(key, valid.shape) + 2.0 * valid
    _, idx = jax.lax.top_k(priority, num_points)
    return points[idx], valid[idx]


def surface_samples(
    mesh: ObjectMesh, key: Array, num_points: int
) -> tuple[Float[Array, "P 3"], Float[Array, "P 3"]]:
    """Area-uniform random points on the mesh's real faces, with those faces' unit normals."""
    face, bary = geometry.sample_surface(key, mesh.vertices, mesh.faces, num_points,
                                         mesh.face_valid)
    tri = jnp.asarray(mesh.vertices)[mesh.faces[face]]
    points = jnp.einsum("pk,pkc->pc", bary, tri)
    cross = jnp.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return points, cross / jnp.maximum(geometry.safe_norm(cross), _TINY)[:, None]


class HandInit(eqx.Module):
    """Metric hand initialization of one sequence."""

    scale: Float[Array, ""]
    """Hand scale s_h (1 when the sequence has no depth)."""
    transl: Float[Array, "N 3"]
    """Per-frame translation T_h (camera frame, metres): the hand is ``s_h · v + T_h``."""
    scale_valid: Bool[Array, ""]
    """ICP determined the scale on at least one frame."""
    pnp_valid: Bool[Array, " N"]
    """PnP had enough confident keypoints."""
    scale_fallback: Bool[Array, ""]
    """The ICP scale lay outside ``scale_bounds`` and was replaced by 1."""


class HandObs(eqx.Module):
    """What the hand's initialization and refinement read of one sequence (leading axis N on
    the per-frame fields)."""

    K: Float[ArrayLike, "3 3"]
    """Camera intrinsics, pixels."""
    hand_init: HandParams
    """The detector's per-frame MANO estimate."""
    keypoints_px: Float[ArrayLike, "N 21 2"]
    """Detected 2D keypoints (OpenPose order), pixels."""
    keypoints_conf: Float[ArrayLike, "N 21"]
    """Their confidences (0 or non-finite: missing)."""
    valid: Bool[ArrayLike, " N"]
    """Real (not padded) frames."""
    hand_mask: Bool[ArrayLike, "N H W"] | None
    """Hand masks; None: keypoints only."""
    depth_m: Float[ArrayLike, "N H W"] | None
    """Depth maps, metres; None: keypoints only."""

    @classmethod
    def of(cls, seq: Sequence) -> HandObs:
        return cls(seq.K, seq.hand_init, seq.keypoints_px, seq.keypoints_conf, seq.valid,
                   seq.hand_mask, seq.depth_m)

    def without_depth(self) -> HandObs:
        return HandObs(self.K, self.hand_init, self.keypoints_px, self.keypoints_conf,
                       self.valid, None, None)


def _masked_median(x: Float[Array, " N"], valid: Bool[Array, " N"]) -> Float[Array, ""]:
    return jnp.nanmedian(jnp.where(valid, x, jnp.nan))


def _map_in_chunks(fn, xs, chunk: int):
    """``lax.map(fn, xs, batch_size=chunk)`` with the frames padded (the last one repeated) to
    a multiple of ``chunk`` and the padding dropped: ``lax.map`` compiles a second copy of
    ``fn`` for a remainder, and the frames are independent."""
    n = jax.tree.leaves(xs)[0].shape[0]
    pad = -n % chunk
    if pad:
        xs = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), xs)
    out = jax.lax.map(fn, xs, batch_size=chunk)
    return jax.tree.map(lambda x: x[:n], out)


def init_hand(
    model: mano.ManoModel,
    obs: HandObs,
    key: Array,
    *,
    num_points: int = 512,
    icp_iters: int = 30,
    trim_fraction: float = 0.6,
    pnp_refine_steps: int = 2,
    scale_bounds: tuple[Float[ArrayLike, ""], Float[ArrayLike, ""]] | None = None,
) -> HandInit:
    """AGILE §3.2 metric hand: ICP scale with R_h fixed (median over frames), then PnP per frame.

    ``scale_bounds`` (beyond AGILE): an ICP scale outside ``[lo, hi]`` is replaced by 1, the
    MANO model's own size (its betas already carry the person's shape). ICP fits the
    whole hand model to the visible part of a hand, with the scale free; on a small or partly
    hidden view that fit is loose, and it returned 1.5–3.2× hands on development sequences.
    """
    K, hand_init, hand_mask, depth_m = obs.K, obs.hand_init, obs.hand_mask, obs.depth_m
    keypoints_px, keypoints_conf, valid = obs.keypoints_px, obs.keypoints_conf, obs.valid
    verts, kps = jax.vmap(lambda p: hand_in_mano_frame(model, p))(hand_init)
    valid = jnp.asarray(valid, bool)
    uv, conf = jnp.asarray(keypoints_px), jnp.asarray(keypoints_conf)

    def pnp_at(scale):
        return jax.vmap(lambda k, u, w: geometry.translation_pnp(
            scale * k, u, K, w, num_refine_steps=pnp_refine_steps))(kps, uv, conf)

    if depth_m is not None and hand_mask is not None:
        # ICP starts from the unit-scale PnP translation: right in the image plane, and far
        # closer than a median alignment of a partial view, which can fall into a wrong minimum.
        pnp1 = pnp_at(jnp.ones((), verts.dtype))
        t_start = jnp.where(pnp1.valid[:, None], pnp1.translation, hand_init.transl)
        keys = jax.random.split(key, valid.shape[0])
        pts, pts_valid = jax.vmap(
            lambda d, m, k: sample_mask_points(K, d, m, k, num_points))(depth_m, hand_mask, keys)

        def icp_one(x):
            v, p, pv, t0 = x
            normals = geometry.vertex_normals(v, model.faces)
            return geometry.constrained_icp(v, p, jnp.eye(3, dtype=v.dtype), target_valid=pv,
                                            normals_model=normals, init_translation=t0,
                                            num_iters=icp_iters, trim_fraction=trim_fraction)

        icp = _map_in_chunks(icp_one, (verts, pts, pts_valid, t_start), 8)
        ok = valid & icp.valid & (icp.scale[:, 0] > 0)
        scale_valid = jnp.any(ok)
        scale = jnp.where(scale_valid, _masked_median(icp.scale[:, 0], ok), 1.0)
    else:
        scale, scale_valid = jnp.ones((), verts.dtype), jnp.zeros((), bool)
    fallback = jnp.zeros((), bool)
    if scale_bounds is not None:
        fallback = scale_valid & ((scale < scale_bounds[0]) | (scale > scale_bounds[1]))
        scale = jnp.where(fallback, 1.0, scale)
    pnp = pnp_at(scale)
    transl = jnp.where(pnp.valid[:, None], pnp.translation, hand_init.transl)
    return HandInit(scale=scale.astype(verts.dtype), transl=transl, scale_valid=scale_valid,
                    pnp_valid=pnp.valid & valid, scale_fallback=fallback)


def candidate_rotations(num_directions: int = 48, num_inplane: int = 8) -> np.ndarray:
    """Static rotation candidates ``R_cam_obj`` (D·I, 3, 3): the object's +z axis pointed along a
    Fibonacci-sphere direction, times in-plane turns about that axis."""
    i = np.arange(num_directions) + 0.5
    z = 1 - 2 * i / num_directions
    phi = np.pi * (1 + 5**0.5) * i
    dirs = np.stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi), z], -1)
    out = []
    for d in dirs:
        helper = np.array([1.0, 0, 0]) if abs(d[0]) < 0.9 else np.array([0, 1.0, 0])
        x = np.cross(helper, d)
        x /= np.linalg.norm(x)
        y = np.cross(d, x)
        base = np.stack([x, y, d], -1)  # columns: object axes in the camera frame
        for k in range(num_inplane):
            a = 2 * np.pi * k / num_inplane
            c, s = np.cos(a), np.sin(a)
            spin = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
            out.append(base @ spin)
    return np.asarray(out)


def _downsample_mask(mask: Bool[Array, "H W"], factor: int) -> Float[Array, "h w"]:
    H, W = mask.shape
    m = mask[: H // factor * factor, : W // factor * factor].astype(jnp.float32)
    return m.reshape(H // factor, factor, W // factor, factor).mean((1, 3))


def _scaled_K(K: Float[Array, "3 3"], factor: int) -> Float[Array, "3 3"]:
    """Intrinsics of an image downsampled by ``factor`` (pixel centres: u' = (u + 0.5)/f − 0.5)."""
    s = 1.0 / factor
    A = jnp.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5], [0, 0, 1]], K.dtype)
    return A @ K


class PoseSearchResult(eqx.Module):
    """Best candidate of :func:`search_object_pose`."""

    R_cam_obj: Float[Array, "3 3"]
    """Rotation, canonical object frame → camera."""
    t_cam_obj: Float[Array, "3"]
    """Translation, metres."""
    scale: Float[Array, ""]
    """Isotropic scale of the canonical mesh that matches the silhouette (and depth)."""
    score: Float[Array, ""]
    """IoU of the rendered and observed object silhouettes outside the hand mask."""
    scores: Float[Array, " R"]
    """Score of every candidate rotation."""
    overflow: Bool[Array, ""]
    """The rasterizer's pair list was too short for some candidate (raise ``pairs_per_face``)."""


def search_object_pose(
    mesh: ObjectMesh,
    K: Float[ArrayLike, "3 3"],
    object_mask: Bool[ArrayLike, "H W"],
    hand_mask: Bool[ArrayLike, "H W"],
    depth_m: Float[ArrayLike, "H W"] | None,
    rotations: Float[ArrayLike, "R 3 3"],
    *,
    downsample: int = 4,
    init_scale: Float[ArrayLike, ""] | float = 1.0,
    solve_scale: bool = True,
    fit_rounds: int = 3,
    batch_size: int = 16,
    pairs_per_face: int = 16,
) -> PoseSearchResult:
    """Render-and-compare search for the object pose at one frame (no FoundationPose needed).

    For every candidate rotation: place the mesh on the ray through the mask centroid (at the
    median object depth when a depth map is given, else at the depth that makes its silhouette
    area match), solve the isotropic scale from the visible-area ratio (``solve_scale``; the area
    grows with s²), re-centre the silhouette on the mask in the image plane, and score the IoU
    outside the observed hand mask at ``1/downsample`` resolution (hard coverage; the pair
    capacity must suffice for the mesh at that size: subdivide meshes with very large faces).
    Candidates render in chunks of
    ``batch_size`` with ``lax.map``. The result seeds a gradient refinement.
    """
    K = jnp.asarray(K)
    dtype = K.dtype
    om = jnp.asarray(object_mask, bool)
    free = ~jnp.asarray(hand_mask, bool)
    target = _downsample_mask(om & free, downsample)
    free_lo = _downsample_mask(free, downsample)
    Kl = _scaled_K(K, downsample)
    settings = render.RasterSettings(target.shape[0], target.shape[1],
                                     pairs_per_face=pairs_per_face)
    verts = jnp.asarray(mesh.vertices, dtype)
    center = jnp.sum(jnp.where(mesh.face_valid[:, None, None], verts[mesh.faces], 0), (0, 1)) / (
        3 * jnp.maximum(jnp.sum(mesh.face_valid), 1))
    verts0 = verts - center
    radius = jnp.max(jnp.linalg.norm(verts0, axis=-1))
    faces = jnp.where(mesh.face_valid[:, None], mesh.faces, 0)

    rows, cols = jnp.mgrid[: om.shape[0], : om.shape[1]]
    area_px = jnp.maximum(jnp.sum(om), 1)
    uv_c = jnp.stack([jnp.sum(cols * om), jnp.sum(rows * om)]) / area_px
    ray = geometry.unproject(K, uv_c, jnp.ones((), dtype))
    if depth_m is not None:
        d = jnp.asarray(depth_m)
        ok = om & (d > 0) & jnp.isfinite(d)
        z_surface = jnp.nanmedian(jnp.where(ok, d, jnp.nan))
        has_depth = jnp.isfinite(z_surface)
    else:
        z_surface, has_depth = jnp.zeros((), dtype), jnp.zeros((), bool)
    target_area = jnp.sum(target)
    rows_l, cols_l = jnp.mgrid[: target.shape[0], : target.shape[1]]

    def silhouette(R, s, t):
        v = s * verts0 @ R.T + t
        out = render.rasterize(v, faces, Kl, settings)
        # Hard coverage: at this resolution the soft edge would inflate small silhouettes.
        hard = out.mask & (free_lo > 0.5)
        return out.mask * free_lo, out.depth, hard, out.overflow

    def centroid(img):
        a = jnp.maximum(jnp.sum(img), _TINY)
        return jnp.stack([jnp.sum(cols_l * img), jnp.sum(rows_l * img)]) / a

    target_centroid = centroid(target)

    def one(R):
        s = jnp.asarray(init_scale, dtype)
        # Place the centre on the ray (the visible surface near the observed median depth).
        z = jnp.where(has_depth, z_surface + 0.5 * s * radius, 5.0 * s * radius)
        overflow = jnp.zeros((), bool)
        for _ in range(fit_rounds):
            sil, depth, hard, over = silhouette(R, s, ray * z)
            overflow = overflow | over
            ratio = jnp.sqrt(target_area / jnp.maximum(jnp.sum(sil), _TINY))
            # Area ∝ (s / z)²: with depth known, solve s and match the rendered surface's median
            # depth to the observed one; without depth, solve z.
            z_rendered = jnp.nanmedian(jnp.where(hard, depth, jnp.nan))
            shift = jnp.where(jnp.isfinite(z_rendered), z_surface - z_rendered, 0.0)
            if solve_scale:
                z_new = z + shift + (ratio - 1) * (z + shift - z_surface)
                s = jnp.where(has_depth, s * ratio, s)
            else:
                z_new = z + shift
            z = jnp.where(has_depth, z_new, z / ratio)
        t = ray * z
        sil, _, _, over1 = silhouette(R, s, t)
        duv = (target_centroid - centroid(sil)) * downsample  # full-resolution pixels
        t = t + jnp.stack([duv[0] / K[0, 0], duv[1] / K[1, 1], 0.0]).astype(dtype) * z
        sil, _, _, over2 = silhouette(R, s, t)
        inter = jnp.sum(sil * target)
        iou = inter / jnp.maximum(jnp.sum(sil) + target_area - inter, _TINY)
        return iou, s, t, overflow | over1 | over2

    Rs = jnp.asarray(rotations, dtype)
    ious, scales, ts, overflows = jax.lax.map(one, Rs, batch_size=batch_size)
    ious = jnp.where(jnp.isfinite(ious), ious, -1.0)
    best = jnp.argmax(ious)
    R = Rs[best]
    # The search placed the centred mesh; express the pose for the mesh's own origin.
    t = ts[best] - scales[best] * R @ center
    return PoseSearchResult(R_cam_obj=R, t_cam_obj=t, scale=scales[best], score=ious[best],
                            scores=ious, overflow=jnp.any(overflows))


def init_object_scale(
    mesh: ObjectMesh,
    K: Float[ArrayLike, "3 3"],
    R_cam_obj: Float[ArrayLike, "3 3"],
    t_cam_obj: Float[ArrayLike, "3"],
    init_scale: Float[ArrayLike, "3"],
    object_mask: Bool[ArrayLike, "N H W"],
    hand_mask: Bool[ArrayLike, "N H W"],
    depth_m: Float[ArrayLike, "N H W"],
    frames_used: Bool[ArrayLike, " N"],
    key: Array,
    *,
    num_points: int = 256,
    num_model_points: int = 2048,
    icp_iters: int = 30,
    trim_fraction: float = 0.7,
    anisotropic: bool = True,
) -> geometry.IcpResult:
    """Anisotropic object scale by constrained ICP, rotation fixed (AGILE §3.2).

    Pools ``num_points`` object depth points (outside the hand) from each frame in
    ``frames_used`` — frames that share the pose ``(R, t)``, e.g. the onset frame and the resting
    frames before it — and fits ``x = R diag(s) p + t`` with point-to-plane residuals."""
    keep = jnp.asarray(object_mask, bool) & ~jnp.asarray(hand_mask, bool)
    keys = jax.random.split(key, keep.shape[0])
    pts, ok = jax.vmap(lambda d, m, k: sample_mask_points(K, d, m, k, num_points))(
        jnp.asarray(depth_m), keep, keys)
    ok = ok & jnp.asarray(frames_used, bool)[:, None]
    model_pts, model_normals = surface_samples(mesh, jax.random.fold_in(key, 1), num_model_points)
    return geometry.constrained_icp(
        model_pts, pts.reshape(-1, 3), jnp.asarray(R_cam_obj), target_valid=ok.reshape(-1),
        normals_model=model_normals, init_scale=jnp.asarray(init_scale),
        init_translation=jnp.asarray(t_cam_obj), num_iters=icp_iters,
        trim_fraction=trim_fraction, anisotropic=anisotropic)


def frames_at_rest_before(onset: Int[Array, ""], valid: Bool[Array, " N"],
                          max_frames: int = 8) -> Bool[Array, " N"]:
    """The onset frame and up to ``max_frames − 1`` valid frames right before it."""
    n = valid.shape[0]
    k = jnp.arange(n)
    return valid & (k <= onset) & (k > onset - max_frames)
