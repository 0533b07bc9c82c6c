"""The synthetic hand-object benchmark: the synthetic MANO hand grasps and moves a procedural
object in front of a static pinhole camera; observations rendered with the hoijax rasterizer.

Story of a sequence (all deterministic from ``config.seed``):

1. **Object and hand.** A procedural metric object (:mod:`hoijax.data._objects`) or the user's
   mesh; MANO shape ``betas ~ N(0, 0.5²)``.
2. **Grasp.** The grasp is a one-parameter finger closure ``hand_pose = c · hands_mean``
   (absolute axis-angle). The object sits on the palm side with its longest side across the
   palm; a grid search over the closure ``c`` and the palm-to-object offset keeps the hand
   outside the object's convex hull (penetration ≤ 2 mm: the object lies inside its hull, so
   its own penetration is at most that) and maximises the hand vertices within 5 mm of it
   (palm and fingers touching).
3. **View (occlusion level).** The camera sees the grasp from an angle ``α`` between the palm
   normal (towards the object) and the viewing ray: ``heavy`` α≈0 (the back of the hand faces
   the camera and the object, shrunk to hand size, lies behind it), ``medium`` α≈75° (side
   view), ``light`` α≈125° (palm side, object in front of the fingers' roots).
4. **Motion.** Before the onset frame the object rests and the hand approaches from 10 cm
   back, opening → closing its fingers; from the onset on the object moves rigidly and the
   hand with it (fixed hand-to-object transform): smooth sinusoidal rotation about the
   object's centre and translation, zero at the onset, frequency ``0.01 · speed`` cycles per
   frame (≈1.5°/frame and ≈2 mm/frame at ``speed=1``); out-of-plane rotation is small for
   ``heavy`` so the hand keeps covering the object.
5. **Observations.** One rasterization per frame (hand = mesh 0, object = mesh 1): hand and
   visible-object masks from the z-buffer (the hand occludes the object and vice versa),
   metric depth + Gaussian noise, per-frame occlusion ratio ``1 - Σ visible_obj / Σ sil_obj``
   (soft silhouettes); a second, low-resolution rasterization (``H/8``) interpolates
   per-vertex object features, hand features and a smooth static background into the target
   feature maps, plus noise. Keypoints: ground-truth joints projected, pixel noise (doubled
   for occluded joints), dropouts and off-image joints with confidence 0 (coordinates 0);
   confidence ~U(0.7, 1) visible, ~U(0.25, 0.6) occluded.
6. **Initial estimates** as a detector errs (all scaled by ``init_difficulty``): finger
   articulation error in PCA space (12 components, per-sequence bias + per-frame jitter),
   global orientation error (bias + jitter, degrees), beta noise, a depth bias along the
   viewing ray plus lateral bias, per-frame translation jitter; optionally a noisy object pose
   at the onset frame (``T_cam_obj_init``, ``init_frame``).

Object-scale convention: the camera-frame object is ``T_cam_obj · (gt.obj_scale ⊙ v)`` for
canonical vertices ``v`` of ``seq.mesh``. With ``normalize_object_scale=False`` (the default)
the mesh is metric and ``obj_scale = 1``; with ``True`` the mesh is rescaled to a unit
bounding-box diagonal (as a generated shape prior would be) and ``obj_scale`` is the true
metric scale (isotropic, repeated 3 times).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from hoijax import geometry, mano, render
from hoijax.data._objects import (
    ALL_OBJECT_KINDS,
    OBJECT_KINDS,
    ObjectKind,
    make_object_trimesh,
    vertex_features,
)
from hoijax.data._sequence import GroundTruth, HandParams, ObjectMesh, Sequence, Side

OcclusionLevel = Literal["light", "medium", "heavy"]

_VIEW_ANGLE_DEG = {"heavy": 0.0, "medium": 75.0, "light": 125.0}
_OUT_OF_PLANE_RAD = {"heavy": 0.12, "medium": 0.35, "light": 0.35}
_HEAVY_MAX_EXTENT_M = 0.085  # heavy occlusion: object no larger than the palm's width
_PEN_TOL_M = 0.002
_CONTACT_M = 0.005


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Controls of one synthetic sequence. Noise levels and the initial-estimate difficulty
    are independent of the geometry: changing them leaves hand, object and motion unchanged."""

    seed: int = 0
    """Seed of everything (object size, grasp, view, motion, noise, detector errors)."""
    num_frames: int = 100
    """Number of frames N."""
    image_size: tuple[int, int] = (256, 256)
    """(H, W), pixels."""
    focal_factor: float = 1.5
    """Focal length in units of the image width (f = focal_factor · W px)."""
    distance_m: float = 0.5
    """Camera-to-scene distance, metres."""
    side: Side = "right"
    """Which hand (the synthetic MANO hand of that side)."""
    object_kind: ObjectKind = "box"
    """Procedural object: one of ``ALL_OBJECT_KINDS``; ignored when ``object_mesh`` is given."""
    object_mesh: Any = dataclasses.field(default=None, compare=False)
    """A user-supplied ``trimesh.Trimesh`` (metric, any origin), or None."""
    occlusion: OcclusionLevel = "medium"
    """How much of the object the hand hides after onset: light / medium / heavy (≥ 70 %)."""
    onset_fraction: float = 0.3
    """Onset frame = round(onset_fraction · N) (clipped to [0, N-1])."""
    speed: float = 1.0
    """Motion speed multiplier after onset (1 ≈ 1.5°/frame and 2 mm/frame)."""
    feature_dim: int = 16
    """Channels C of the per-vertex and target features."""
    feature_stride: int = 8
    """Feature maps are (H / stride, W / stride)."""
    keypoint_noise_px: float = 2.0
    """Standard deviation of 2D keypoint noise, pixels (doubled for occluded joints)."""
    keypoint_dropout: float = 0.05
    """Probability that the detector misses a keypoint (confidence 0)."""
    depth_noise_m: float = 0.002
    """Standard deviation of depth noise, metres."""
    feature_noise: float = 0.05
    """Standard deviation of the target feature maps' noise (features are unit-norm)."""
    init_difficulty: float = 1.0
    """Scale of every initial-estimate error (0: ``hand_init`` is the ground truth)."""
    pose_pca_noise: float = 0.5
    """Finger articulation error: per-sequence bias std in PCA space (12 components)."""
    orient_noise_deg: float = 5.0
    """Global orientation bias, degrees (per-frame jitter is a third of it)."""
    betas_noise: float = 0.5
    """Std of the error on betas."""
    depth_bias_m: float = 0.04
    """Std of the translation bias along the viewing ray, metres (lateral: a quarter)."""
    object_init: bool = True
    """Give a noisy object pose at the onset frame (``T_cam_obj_init``)."""
    object_init_rot_deg: float = 5.0
    """Rotation error of ``T_cam_obj_init``, degrees (times ``init_difficulty``)."""
    object_init_trans_m: float = 0.01
    """Translation error of ``T_cam_obj_init``, metres (times ``init_difficulty``)."""
    normalize_object_scale: bool = False
    """Hand the tracker a unit-diagonal mesh (true scale in ``gt.obj_scale``); default metric."""
    with_depth: bool = True
    """Render the depth map."""
    with_features: bool = True
    """Render the target feature maps."""
    with_rgb: bool = False
    """Render a flat-shaded RGB image (object colour from its features), for pictures."""
    chunk_size: int = 8
    """Frames rasterized at once (one vmapped, compiled call per chunk): memory vs speed."""
    # ---- benchmark v2 controls (their defaults leave the original benchmark unchanged)
    grasp: Literal["palm", "contact"] = "palm"
    """``palm``: the object's longest side across the palm (module docstring, step 2);
    ``contact``: a contact point sampled on the object's surface, the palm placed against it
    along its normal with a random roll, closure and offset searched against the object's
    exact SDF (penetration ≤ 2 mm, most hand vertices within 5 mm)."""
    motion_rot_deg_per_s: float | None = None
    """Peak rotation speed after onset, degrees per second at ``fps`` (None: ``speed`` only)."""
    motion_trans_m_per_s: float | None = None
    """Peak translation speed after onset, m/s at ``fps`` (None: ``speed`` only). Reduced when
    the object would leave the image; the achieved peaks are in the manifest's meta."""
    fps: float = 30.0
    """Frame rate that turns the peak speeds into per-frame motion."""
    slide_m: float = 0.0
    """In-hand sliding: the hand slides this far along the object (in its palm plane) during
    a window after onset."""
    occluder: float = 0.0
    """Fraction of the visible object an external static occluder hides (median over the
    frames after onset): a half-plane in front of the scene, also over the hand."""
    keypoint_outliers: float = 0.0
    """Probability that a detected keypoint is a confident outlier (a uniform pixel)."""
    mask_damage: float = 0.0
    """Object-mask damage in [0, 1]: per-frame erosion or dilation up to 3 px (at 128²),
    holes with this probability, a wrong blob with half of it."""
    depth_model: Literal["gaussian", "sensor"] = "gaussian"
    """``sensor``: noise σ = ``depth_noise_m`` · (z / 0.5 m)², 1 mm quantisation, holes at
    depth edges; ``gaussian``: constant σ."""
    depth_holes: float = 0.0
    """Fraction of the depth image lost in random blobs (0 = none)."""
    feature_correlation: float = 1.0
    """Correlation between the features rendered into the target maps and the per-vertex
    features handed to the tracker (1: the same; 0.6: a real DINO-like mismatch)."""

    def noiseless(self) -> "SyntheticConfig":
        """The same sequence with every observation noise and initial-estimate error off."""
        return dataclasses.replace(self, keypoint_noise_px=0.0, keypoint_dropout=0.0,
                                   depth_noise_m=0.0, feature_noise=0.0, init_difficulty=0.0)

    def to_json(self) -> dict:
        """JSON-able fields (the user mesh is recorded only as present or not)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name != "object_mesh"}
        d["image_size"] = list(self.image_size)
        d["object_mesh"] = None if self.object_mesh is None else "user-supplied"
        return d


# ------------------------------------------------------------------------------- small maths


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, sum(ord(c) * 31 ** i for i, c in enumerate(stream))
                                  % (2 ** 31)])


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _se3(R, t):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def _unit(v):
    return v / np.linalg.norm(v)


def _random_rotation(rng, std_rad: float) -> np.ndarray:
    return Rotation.from_rotvec(rng.normal(scale=std_rad, size=3)).as_matrix()


# ------------------------------------------------------------------------------------- grasp


@dataclasses.dataclass
class _Grasp:
    closure: float
    T_mano_obj: np.ndarray  # metric object canonical → MANO frame (hand at zero orient/transl)
    normal: np.ndarray  # palm normal towards the object, MANO frame
    finger: np.ndarray  # wrist → middle MCP, MANO frame
    penetration_m: float
    contact_verts: int


@functools.lru_cache(maxsize=8)
def _mano_fns(side: str):
    model = mano.synthetic_mano(side)

    def fwd(g, h, b, t):
        out = mano.forward(model, g, h, b, t, flat_hand_mean=True)
        return out.vertices, out.keypoints("smplx", "openpose"), out.joints[0]

    return model, jax.jit(jax.vmap(fwd))


def _hull_planes(mesh) -> tuple[np.ndarray, np.ndarray]:
    hull = mesh.convex_hull
    normals = np.asarray(hull.face_normals)
    offsets = np.einsum("fc,fc->f", normals, hull.vertices[hull.faces[:, 0]])
    _, keep = np.unique(np.round(np.c_[normals, offsets], 5), axis=0, return_index=True)
    return normals[keep], offsets[keep]


_CLOSURES = np.linspace(0.0, 3.0, 13)


def _palm_frame(model, fwd, betas):
    """Hand vertices at every closure and the palm frame: (verts (C, V, 3), palm centre,
    lateral, finger, normal towards the closing fingertips)."""
    closures = _CLOSURES
    mean = np.asarray(model.hands_mean, np.float64)
    nc = len(closures)
    verts, kps, _ = fwd(jnp.zeros((nc, 3)), jnp.asarray(closures[:, None] * mean, jnp.float32),
                        jnp.tile(jnp.asarray(betas, jnp.float32), (nc, 1)), jnp.zeros((nc, 3)))
    verts, kps = np.asarray(verts, np.float64), np.asarray(kps, np.float64)
    k0 = kps[0]
    finger = _unit(k0[9] - k0[0])
    lateral = k0[5] - k0[17]
    lateral = _unit(lateral - finger * (lateral @ finger))
    normal = np.cross(finger, lateral)
    palm = k0[[0, 5, 9, 13, 17]].mean(0)
    tips = kps[-1][[8, 12, 16, 20]].mean(0)
    if normal @ (tips - palm) < 0:
        normal = -normal
    lateral = np.cross(finger, normal)  # right-handed (lateral, finger, normal) frame
    return verts, palm, lateral, finger, normal


def _find_grasp(model, fwd, betas, mesh, rng) -> _Grasp:
    """Grid search of finger closure × palm offset (see module docstring, step 2)."""
    closures = _CLOSURES
    nc = len(closures)
    verts, palm, lateral, finger, normal = _palm_frame(model, fwd, betas)
    # Object axes (x longest, y, z shortest) → lateral, finger, normal, with a seeded twist
    # about the normal and a random flip (which end points where).
    flip = Rotation.from_rotvec([0.0, np.pi * rng.integers(2), 0.0]).as_matrix()
    twist = Rotation.from_rotvec(normal * rng.uniform(-0.35, 0.35)).as_matrix()
    R_mano_obj = twist @ np.stack([lateral, finger, normal], 1) @ flip
    centre0 = palm + finger * 0.01  # a little towards the fingers, so they wrap the object
    N_obj, b_obj = _hull_planes(mesh)
    offsets = np.arange(0.0, 0.15, 0.0015)
    best = None
    m_dir = R_mano_obj.T @ normal  # the normal in object coordinates
    for ci in range(nc):
        q = (verts[ci] - centre0) @ R_mano_obj  # hand vertices in object coords at offset 0
        sd_q = (q @ N_obj.T - b_obj).astype(np.float32)  # (V, P)
        shift = (N_obj @ m_dir).astype(np.float32)  # (P,)
        sd = np.max(sd_q[None] - offsets[:, None, None] * shift[None, None], axis=-1)  # (D, V)
        pen = np.maximum(0.0, -sd.min(axis=1))
        ok = pen <= _PEN_TOL_M
        if not ok.any():
            continue
        contact = np.sum(sd < _CONTACT_M, axis=1)
        di = int(np.argmax(np.where(ok, contact, -1)))
        score = (int(contact[di]), -ci)
        if best is None or score > best[0]:
            best = (score, ci, di, float(pen[di]))
    if best is None:
        raise RuntimeError("no grasp without penetration found (object too large?)")
    _, ci, di, pen = best
    T = _se3(R_mano_obj, centre0 + offsets[di] * normal)
    return _Grasp(closure=float(closures[ci]), T_mano_obj=T, normal=normal, finger=finger,
                  penetration_m=pen, contact_verts=best[0][0])


@jax.jit
def _grasp_scores(grid, q0, m_dir, offsets):
    """Penetration and contact counts of hand vertices ``q0`` (C, V, 3, object frame at offset
    0) moved by each offset along ``-m_dir``: (C, D) each."""
    from hoijax import sdf

    q = q0[:, None] - offsets[None, :, None, None] * m_dir
    d = sdf.query_sdf(grid, q)
    return jnp.maximum(0.0, -d.min(-1)), jnp.sum(d < _CONTACT_M, axis=-1)


def _find_contact_grasp(model, fwd, betas, mesh, rng, candidates: int = 12) -> _Grasp:
    """Contact grasp (``SyntheticConfig.grasp='contact'``): ``candidates`` surface points
    sampled by area; for each, the palm faces the point along its outward normal with a random
    roll, and closure × offset are searched against the object's exact SDF grid (penetration
    ≤ 2 mm); the candidate with the most hand vertices within 5 mm wins."""
    import trimesh

    from hoijax import sdf

    verts, palm, lateral, finger, normal = _palm_frame(model, fwd, betas)
    grid = sdf.sdf_grid_from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces),
                                  resolution=40, source="grasp object")
    pts, fidx = trimesh.sample.sample_surface(mesh, candidates,
                                              seed=int(rng.integers(2 ** 31)))
    n_obj = np.asarray(mesh.face_normals)[fidx]
    centre0 = palm + finger * 0.01
    offsets = np.arange(-0.005, 0.06, 0.001)
    best = None
    for p, n_o in zip(np.asarray(pts), n_obj):
        # R maps the outward normal to -normal (the surface faces the palm), then a roll.
        R0 = Rotation.align_vectors([-normal], [n_o])[0].as_matrix()
        R = Rotation.from_rotvec(normal * rng.uniform(0, 2 * np.pi)).as_matrix() @ R0
        q0 = (verts - centre0) @ R + p  # hand in object coordinates, p at the palm centre
        pen, contact = (np.asarray(a) for a in _grasp_scores(
            grid, jnp.asarray(q0, jnp.float32), jnp.asarray(R.T @ normal, jnp.float32),
            jnp.asarray(offsets, jnp.float32)))
        ok = pen <= _PEN_TOL_M
        if not ok.any():
            continue
        score = np.where(ok, contact, -1)
        ci, di = np.unravel_index(int(np.argmax(score)), score.shape)
        key = (int(score[ci, di]), -int(ci))
        if best is None or key > best[0]:
            T = _se3(R, centre0 + offsets[di] * normal - R @ p)
            best = (key, ci, T, float(pen[ci, di]))
    if best is None or best[0][0] <= 0:
        raise RuntimeError("no contact grasp without penetration found")
    key, ci, T, pen = best
    return _Grasp(closure=float(_CLOSURES[ci]), T_mano_obj=T, normal=normal, finger=finger,
                  penetration_m=pen, contact_verts=key[0])


# ------------------------------------------------------------------------------------ render


def _bilinear_background(rng, hf: int, wf: int, dim: int) -> np.ndarray:
    """A smooth, static background feature field (Hf, Wf, C), unit norm per pixel."""
    base = _unit(rng.normal(size=dim))
    coarse = rng.normal(scale=0.6, size=(3, 3, dim))
    ys, xs = np.linspace(0, 2, hf), np.linspace(0, 2, wf)
    y0, x0 = np.minimum(ys.astype(int), 1), np.minimum(xs.astype(int), 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    c = (coarse[y0][:, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1][:, x0] * fy * (1 - fx)
         + coarse[y0][:, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1][:, x0 + 1] * fy * fx)
    f = base + c
    return (f / np.linalg.norm(f, axis=-1, keepdims=True)).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("settings", "settings_f", "with_rgb"))
def _render_chunk(verts_hand, verts_obj, faces, face_mesh_id, K, K_f, feats, bg, colours,
                  settings, settings_f, with_rgb):
    """A chunk of frames (vmapped): mesh id, depth, soft object silhouette sums, feature map
    (and RGB). Shapes depend only on the chunk size, the padded face count and the settings,
    so one compilation serves every sequence length and every object of a size bucket."""

    def one(vh, vo):
        verts = jnp.concatenate([vh, vo])
        r = render.rasterize(verts, faces, K, settings, face_mesh_id=face_mesh_id,
                             num_meshes=2)
        rf = render.rasterize(verts, faces, K_f, settings_f, face_mesh_id=face_mesh_id,
                              num_meshes=2)
        feat = render.interpolate(rf, feats, faces)
        feat = jnp.where(rf.mask[..., None], feat, bg)
        out = dict(mesh_id=r.mesh_id.astype(jnp.int8), depth=r.depth,
                   sil_obj=jnp.sum(r.silhouette[1]), vis_obj=jnp.sum(r.visible[1]),
                   feat=feat, overflow=r.overflow | rf.overflow)
        if with_rgb:
            out["rgb"] = render.interpolate(r, colours, faces, background=0.35)
        return out

    return jax.vmap(one)(verts_hand, verts_obj)


def _render_all(verts_hand, verts_obj, static_args, settings, settings_f, chunk, with_rgb):
    """Render every frame, ``chunk`` at a time (the last chunk padded by repetition); on
    capacity overflow, retry with doubled pair capacity."""
    n = verts_hand.shape[0]
    pad = (-n) % chunk
    idx = np.r_[np.arange(n), np.full(pad, n - 1)]
    for _ in range(6):
        outs = [_render_chunk(verts_hand[idx[i:i + chunk]], verts_obj[idx[i:i + chunk]],
                              *static_args, settings=settings, settings_f=settings_f,
                              with_rgb=with_rgb)
                for i in range(0, n + pad, chunk)]
        out = {k: np.concatenate([np.asarray(o[k]) for o in outs])[:n] for k in outs[0]}
        if not out["overflow"].any():
            return out
        settings, settings_f = settings.doubled(), settings_f.doubled()
    raise RuntimeError("rasterizer capacity still exceeded after 6 doublings")


def _bucket(x: int, smallest: int) -> int:
    """The next power-of-two multiple of ``smallest`` that holds ``x``."""
    b = smallest
    while b < x:
        b *= 2
    return b


# --------------------------------------------------------------------------------- generator


def _object_trimesh(config: SyntheticConfig):
    import trimesh

    if config.object_mesh is not None:
        mesh = config.object_mesh.copy()
        if not isinstance(mesh, trimesh.Trimesh):
            raise TypeError("object_mesh must be a trimesh.Trimesh")
        mesh.apply_translation(-mesh.bounds.mean(0))
        return mesh
    if config.object_kind not in ALL_OBJECT_KINDS:
        raise ValueError(f"unknown object kind {config.object_kind!r}; one of {ALL_OBJECT_KINDS}")
    return make_object_trimesh(config.object_kind, config.seed)


def _view_rotation(level: str, normal, finger, rng) -> np.ndarray:
    """R_cam_mano: the palm normal at angle α from the viewing ray, fingers roughly up."""
    alpha = np.deg2rad(_VIEW_ANGLE_DEG[level] + rng.uniform(-8, 8)) * rng.choice([-1, 1])
    n_c = np.array([np.sin(alpha), 0.0, np.cos(alpha)])
    f_c = np.array([0.0, -1.0, 0.0])
    src = np.stack([finger, normal, np.cross(finger, normal)], 1)
    dst = np.stack([f_c, n_c, np.cross(f_c, n_c)], 1)
    roll = Rotation.from_rotvec([0.0, 0.0, rng.uniform(-0.5, 0.5)]).as_matrix()
    return roll @ dst @ src.T


def _rate_scale(traj: np.ndarray, per_frame: float) -> float:
    """The factor that makes the peak frame-to-frame step of ``traj`` (N, 3) ``per_frame``."""
    peak = np.linalg.norm(np.diff(traj, axis=0), axis=-1).max(initial=0.0)
    return per_frame / peak if peak > 0 else 1.0


def _keep_in_view(dpos: np.ndarray, centre: np.ndarray, config: SyntheticConfig) -> np.ndarray:
    """Shrink a translation trajectory until the object's centre stays in the central 70 % of
    the image and at least 0.15 m from the camera."""
    half = 0.35 / config.focal_factor  # |x / z| bound, in units of the image width
    for k in np.linspace(1.0, 0.05, 40):
        c = centre + k * dpos
        if (c[:, 2] >= 0.15).all() and (np.abs(c[:, :2]) <= half * c[:, 2:]).all():
            return k * dpos
    return 0.05 * dpos


def _seen_features(feats: np.ndarray, verts: np.ndarray, rho: float, seed: int) -> np.ndarray:
    """What the target maps show of the object: the per-vertex features mixed with unrelated
    smooth ones, ``ρ f + √(1-ρ²) g`` renormalised (``SyntheticConfig.feature_correlation``)."""
    rho = float(rho)
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"feature_correlation must be in [0, 1], got {rho}")
    if rho == 1.0:
        return feats
    other = vertex_features(verts, feats.shape[1], seed=seed + 104729, frequency=0.7)
    mixed = rho * feats + np.sqrt(1 - rho ** 2) * other
    return (mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(np.float32)


def _disc(H: int, W: int, cy, cx, r) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _occluder_mask(obj: np.ndarray, onset: int, fraction: float,
                   rng: np.random.Generator) -> np.ndarray:
    """A static half-plane (H, W) hiding ``fraction`` of the visible object pixels ``obj``
    (N, H, W), as the median over the frames from ``onset`` on (bisection on its offset)."""
    _, H, W = obj.shape
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[:H, :W]
    proj = xx * np.cos(theta) + yy * np.sin(theta)
    frames = obj[onset:]
    area = np.maximum(frames.sum((1, 2)), 1)
    lo, hi = proj.min() - 1, proj.max() + 1  # hidden = proj > c: hi hides nothing
    for _ in range(40):
        c = (lo + hi) / 2
        hidden = np.median((frames & (proj > c)).sum((1, 2)) / area)
        lo, hi = (c, hi) if hidden > fraction else (lo, c)
    return proj > (lo + hi) / 2


def _damage_masks(masks: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Segmenter-like damage of (N, H, W) masks (``SyntheticConfig.mask_damage``)."""
    from scipy import ndimage

    level = float(np.clip(level, 0.0, 1.0))
    out = masks.copy()
    _, H, W = masks.shape
    for t, m in enumerate(masks):
        area = int(m.sum())
        if area == 0:
            continue
        r = int(round(rng.uniform(0, level * 3 * H / 128)))
        if r > 0:
            disc = _disc(2 * r + 1, 2 * r + 1, r, r, r)
            m = (ndimage.binary_dilation(m, disc) if rng.random() < 0.5
                 else ndimage.binary_erosion(m, disc))
        if rng.random() < level:
            ys, xs = np.nonzero(m)
            for _ in range(int(rng.integers(1, 4))):
                if len(ys):
                    k = int(rng.integers(len(ys)))
                    m = m & ~_disc(H, W, ys[k], xs[k], max(1.0, 0.12 * np.sqrt(area)))
        if rng.random() < level / 2:
            m = m | _disc(H, W, rng.uniform(0, H), rng.uniform(0, W),
                          max(1.5, 0.3 * np.sqrt(area / np.pi)))
        out[t] = m
    return out


def _sensor_depth(depth: np.ndarray, sigma_m: float, rng: np.random.Generator) -> np.ndarray:
    """Depth as a structured-light / ToF sensor reports it: noise σ·(z / 0.5 m)², 1 mm steps,
    and most pixels on depth edges (jumps over 2 cm) lost."""
    noisy = depth + sigma_m * (depth / 0.5) ** 2 * rng.normal(size=depth.shape)
    noisy = np.round(noisy * 1000.0) / 1000.0
    jump = np.zeros(depth.shape, bool)
    dy, dx = np.abs(np.diff(depth, axis=1)) > 0.02, np.abs(np.diff(depth, axis=2)) > 0.02
    jump[:, 1:] |= dy
    jump[:, :-1] |= dy
    jump[:, :, 1:] |= dx
    jump[:, :, :-1] |= dx
    lost = jump & (rng.random(size=depth.shape) < 0.7)
    return np.where((depth > 0) & ~lost, noisy, 0.0)


def _blobs(shape: tuple, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Random blobs covering ``fraction`` of each (H, W) frame: a smooth random field (cells
    of 1/16 of the side) thresholded at its quantile."""
    from scipy import ndimage

    n, H, W = shape
    coarse = rng.normal(size=(n, max(2, H // 16), max(2, W // 16)))
    field = ndimage.zoom(coarse, (1, H / coarse.shape[1], W / coarse.shape[2]), order=1)
    field = field[:, :H, :W]
    return field > np.quantile(field, 1.0 - fraction, axis=(1, 2), keepdims=True)


def motion_summary(T_cam_obj: np.ndarray, onset: int, fps: float = 30.0) -> dict:
    """Peak and median object speed after ``onset``: ``rot_deg_per_s`` (rotation between
    consecutive frames) and ``trans_m_per_s``; what the manifests record of each sequence."""
    T = np.asarray(T_cam_obj, np.float64)[onset:]
    if len(T) < 2:
        return {"peak_rot_deg_per_s": 0.0, "peak_trans_m_per_s": 0.0,
                "median_rot_deg_per_s": 0.0, "median_trans_m_per_s": 0.0}
    rel = np.einsum("nji,njk->nik", T[:-1, :3, :3], T[1:, :3, :3])
    ang = np.degrees(Rotation.from_matrix(rel).magnitude()) * fps
    tr = np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=-1) * fps
    return {"peak_rot_deg_per_s": float(ang.max()), "peak_trans_m_per_s": float(tr.max()),
            "median_rot_deg_per_s": float(np.median(ang)),
            "median_trans_m_per_s": float(np.median(tr))}


def generate_sequence(config: SyntheticConfig = SyntheticConfig()) -> Sequence:
    """One synthetic hand-object sequence (see the module docstring for what it shows)."""
    n = int(config.num_frames)
    if n < 1:
        raise ValueError("num_frames must be >= 1")
    H, W = config.image_size
    s = config.feature_stride
    if H % s or W % s:
        raise ValueError(f"image size {config.image_size} must be divisible by "
                         f"feature_stride={s}")
    model, fwd = _mano_fns(config.side)
    seed = config.seed
    rng_geo, rng_view, rng_motion = (_rng(seed, k) for k in ("geometry", "view", "motion"))

    # Object (metric, centred) and hand shape.
    mesh = _object_trimesh(config)
    if config.occlusion == "heavy" and mesh.extents.max() > _HEAVY_MAX_EXTENT_M:
        mesh = mesh.copy()
        mesh.apply_scale(_HEAVY_MAX_EXTENT_M / mesh.extents.max())
    obj_verts_m = np.asarray(mesh.vertices, np.float64)
    obj_faces = np.asarray(mesh.faces, np.int32)
    betas = rng_geo.normal(scale=0.5, size=10)

    if config.grasp == "contact":
        grasp = _find_contact_grasp(model, fwd, betas, mesh, _rng(seed, "contact grasp"))
    elif config.grasp == "palm":
        grasp = _find_grasp(model, fwd, betas, mesh, rng_geo)
    else:
        raise ValueError(f"grasp must be 'palm' or 'contact', got {config.grasp!r}")
    grasp_pose = grasp.closure * np.asarray(model.hands_mean, np.float64)

    # Hand pose at onset: view rotation, scene centred on the optical axis.
    onset = int(np.clip(round(config.onset_fraction * n), 0, n - 1))
    R_cam_mano = _view_rotation(config.occlusion, grasp.normal, grasp.finger, rng_view)
    _, _, root = fwd(jnp.zeros((1, 3)), jnp.asarray(grasp_pose[None], jnp.float32),
                     jnp.asarray(betas[None], jnp.float32), jnp.zeros((1, 3)))
    root = np.asarray(root[0], np.float64)
    T_cam_mano0 = _se3(R_cam_mano, np.zeros(3))
    T_cam_obj0 = T_cam_mano0 @ grasp.T_mano_obj
    obj_c = obj_verts_m @ T_cam_obj0[:3, :3].T + T_cam_obj0[:3, 3]
    centre = obj_c.mean(0)
    shift = np.array([0.0, 0.0, config.distance_m]) - centre
    T_cam_mano0[:3, 3] += shift
    T_cam_obj0[:3, 3] += shift
    T_obj_mano = np.linalg.inv(grasp.T_mano_obj)

    # Motion after onset: rotation about the object centre (camera axes) and translation.
    freq = 0.01 * config.speed
    phase = rng_motion.uniform(0, 2 * np.pi, size=(2, 3))
    t_rel = np.arange(n) - onset
    wave = np.sin(2 * np.pi * freq * np.maximum(t_rel, 0)[:, None, None] + phase) - np.sin(phase)
    oop = _OUT_OF_PLANE_RAD[config.occlusion]
    rotvec = wave[:, 0] * np.array([oop, oop, 0.6])
    dpos = wave[:, 1] * np.array([0.025, 0.025, 0.04])
    if config.motion_rot_deg_per_s is not None:
        rotvec = rotvec * _rate_scale(rotvec, np.deg2rad(config.motion_rot_deg_per_s)
                                      / config.fps)
    if config.motion_trans_m_per_s is not None:
        dpos = dpos * _rate_scale(dpos, config.motion_trans_m_per_s / config.fps)
        dpos = _keep_in_view(dpos, T_cam_obj0[:3, 3], config)
    T_cam_obj = np.stack([_se3(Rotation.from_rotvec(rv).as_matrix() @ T_cam_obj0[:3, :3],
                               T_cam_obj0[:3, 3] + dp) for rv, dp in zip(rotvec, dpos)])
    T_cam_mano = T_cam_obj @ T_obj_mano
    if config.slide_m > 0:
        # In-hand sliding: the hand moves along the object in its palm plane during a window.
        rng_slide = _rng(seed, "slide")
        direction = _unit(rng_slide.normal(size=2) @ np.stack([grasp.finger,
                                                               np.cross(grasp.finger,
                                                                        grasp.normal)]))
        a = onset + int(rng_slide.integers(0, max(1, (n - onset) // 2)))
        span = max(2, (n - onset) // 4)
        w = _smoothstep((np.arange(n) - a) / span)
        shift = np.zeros((n, 4, 4)) + np.eye(4)
        shift[:, :3, 3] = config.slide_m * w[:, None] * direction
        T_cam_mano = T_cam_mano @ shift

    # Approach before onset: from 10 cm back (away from the object) and rotated, fingers open.
    back = -R_cam_mano @ grasp.normal * 0.1 + rng_motion.normal(scale=0.02, size=3)
    R_start = _random_rotation(rng_motion, 0.25)
    closure = np.full(n, 1.0)
    for t in range(onset):
        w = _smoothstep(t / max(onset, 1))  # 0 at frame 0, → 1 at onset
        R_off = Rotation.from_matrix(R_start).as_rotvec() * (1 - w)
        T = T_cam_mano[onset].copy()
        T[:3, :3] = Rotation.from_rotvec(R_off).as_matrix() @ T[:3, :3]
        T[:3, 3] = T[:3, 3] + back * (1 - w)
        T_cam_mano[t] = T
        closure[t] = 0.2 + 0.8 * w
    hand_pose = closure[:, None] * grasp_pose[None]
    global_orient = Rotation.from_matrix(T_cam_mano[:, :3, :3]).as_rotvec()
    # MANO rotates about the root joint: verts = R (v - J0) + J0 + transl.
    transl = T_cam_mano[:, :3, 3] + np.einsum("nij,j->ni", T_cam_mano[:, :3, :3], root) - root

    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    verts_h, kps, _ = fwd(f32(global_orient), f32(hand_pose), f32(np.tile(betas, (n, 1))),
                          f32(transl))
    verts_obj_cam = (np.einsum("nij,vj->nvi", T_cam_obj[:, :3, :3], obj_verts_m)
                     + T_cam_obj[:, None, :3, 3])

    # Camera and rendering.
    f = config.focal_factor * W
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1.0]])
    # Feature pixel (r, c) covers image pixels s·r … s·r + s − 1: centre at s·c + (s − 1)/2.
    K_f = np.array([[f / s, 0, (K[0, 2] - (s - 1) / 2) / s],
                    [0, f / s, (K[1, 2] - (s - 1) / 2) / s], [0, 0, 1.0]])
    hand_faces = np.asarray(model.faces, np.int32)
    nvh = verts_h.shape[1]
    # Pad the object to a size bucket with culled (0, 0, 0)-style faces: fewer compilations.
    vo_pad = _bucket(len(obj_verts_m), 1024) - len(obj_verts_m)
    fo_pad = _bucket(len(obj_faces), 2048) - len(obj_faces)
    faces = np.concatenate([hand_faces, obj_faces + nvh, np.full((fo_pad, 3), nvh, np.int32)])
    face_mesh_id = np.r_[np.zeros(len(hand_faces), np.int32),
                         np.ones(len(obj_faces) + fo_pad, np.int32)]
    C = config.feature_dim
    obj_feats = vertex_features(obj_verts_m, C, seed=seed)
    seen_feats = _seen_features(obj_feats, obj_verts_m, config.feature_correlation, seed)
    hand_feats = vertex_features(np.asarray(model.v_template), C, seed=seed + 7919)
    feats = np.concatenate([hand_feats, seen_feats, np.zeros((vo_pad, C), np.float32)])
    colours = np.concatenate([np.tile([[0.85, 0.65, 0.55]], (len(hand_feats), 1)),
                              0.5 + 0.45 * obj_feats[:, :3] / np.abs(obj_feats[:, :3]).max(),
                              np.zeros((vo_pad, 3))])
    rng_noise = _rng(seed, "noise")
    bg = _bilinear_background(rng_noise, H // s, W // s, C)
    settings = render.RasterSettings(height=H, width=W)
    settings_f = render.RasterSettings(height=H // s, width=W // s, tile_size=2)
    verts_obj_pad = np.concatenate([verts_obj_cam, np.repeat(verts_obj_cam[:, :1], vo_pad, 1)],
                                   axis=1)
    out = _render_all(
        np.asarray(verts_h, np.float32), verts_obj_pad.astype(np.float32),
        (jnp.asarray(faces), jnp.asarray(face_mesh_id), f32(K), f32(K_f), f32(feats), f32(bg),
         f32(colours)),
        settings, settings_f, max(1, int(config.chunk_size)), bool(config.with_rgb))
    mesh_id = np.asarray(out["mesh_id"])
    depth = np.asarray(out["depth"], np.float64)
    sil, vis = np.asarray(out["sil_obj"]), np.asarray(out["vis_obj"])
    feat_maps = np.asarray(out["feat"], np.float64)
    if config.occluder > 0:
        # A static half-plane in front of the scene: hides object, hand and background alike.
        occ = _occluder_mask(mesh_id == 1, onset, config.occluder, _rng(seed, "occluder"))
        before = np.maximum((mesh_id == 1).sum((1, 2)), 1)
        mesh_id = np.where(occ, np.int8(2), mesh_id)
        vis = vis * (mesh_id == 1).sum((1, 2)) / before
        seen = depth[depth > 0]
        depth = np.where(occ, 0.7 * (seen.min() if seen.size else config.distance_m), depth)
        occ_f = occ.reshape(H // s, s, W // s, s).mean((1, 3)) > 0.5
        feat_maps = np.where(occ_f[None, ..., None], _unit(_rng(seed, "occluder feature").normal(size=C)),
                             feat_maps)
        if config.with_rgb:
            out["rgb"] = np.where(occ[None, ..., None], 0.55, np.asarray(out["rgb"]))
    depth_clean = depth.copy()
    hand_mask, object_mask = mesh_id == 0, mesh_id == 1
    occlusion_ratio = np.where(sil > 1e-3, 1 - vis / np.maximum(sil, 1e-3), 0.0).clip(0, 1)
    if config.mask_damage > 0:
        object_mask = _damage_masks(object_mask, config.mask_damage, _rng(seed, "mask damage"))

    # Noise (its own stream: the noise levels do not change the geometry).
    if config.depth_model == "sensor":
        depth = _sensor_depth(depth, config.depth_noise_m, rng_noise)
    elif config.depth_model != "gaussian":
        raise ValueError(f"depth_model must be 'gaussian' or 'sensor', got {config.depth_model!r}")
    elif config.depth_noise_m > 0:
        depth = np.where(depth > 0, depth + rng_noise.normal(scale=config.depth_noise_m,
                                                             size=depth.shape), 0.0)
    if config.depth_holes > 0:
        depth = np.where(_blobs(depth.shape, config.depth_holes, _rng(seed, "depth holes")),
                         0.0, depth)
    if config.feature_noise > 0:
        feat_maps = feat_maps + rng_noise.normal(scale=config.feature_noise, size=feat_maps.shape)

    # Keypoints: projected ground truth, occlusion-aware confidence, noise, dropouts.
    joints = np.asarray(kps, np.float64)
    uv_f32 = np.asarray(geometry.project(f32(K), f32(joints)), np.float64)
    cols, rows = np.round(uv_f32[..., 0]).astype(int), np.round(uv_f32[..., 1]).astype(int)
    inside = (cols >= 0) & (cols < W) & (rows >= 0) & (rows < H) & (joints[..., 2] > 0)
    fr = np.arange(n)[:, None]
    rc, cc = rows.clip(0, H - 1), cols.clip(0, W - 1)
    d_at = depth_clean[fr, rc, cc]
    covering = mesh_id[fr, rc, cc]
    occluded = inside & (((covering == 1) & (d_at < joints[..., 2]))
                         | ((d_at > 0) & (d_at < joints[..., 2] - 0.02)))
    rng_kp = _rng(seed, "keypoints")
    conf = np.where(occluded, rng_kp.uniform(0.25, 0.6, size=occluded.shape),
                    rng_kp.uniform(0.7, 1.0, size=occluded.shape))
    sigma = config.keypoint_noise_px * np.where(occluded, 2.0, 1.0)[..., None]
    uv = uv_f32 + sigma * rng_kp.normal(size=uv_f32.shape)
    missed = rng_kp.random(size=conf.shape) < config.keypoint_dropout
    drop = missed | ~inside
    conf = np.where(drop, 0.0, conf)
    uv = np.where(drop[..., None], 0.0, uv)
    if config.keypoint_outliers > 0:
        rng_out = _rng(seed, "keypoint outliers")
        wrong = (rng_out.random(size=conf.shape) < config.keypoint_outliers) & ~drop
        uv = np.where(wrong[..., None], rng_out.uniform([0, 0], [W - 1, H - 1], uv.shape), uv)
        conf = np.where(wrong, rng_out.uniform(0.7, 1.0, size=conf.shape), conf)

    # Initial estimates, as a detector errs.
    d = config.init_difficulty
    rng_init = _rng(seed, "init")
    comps = np.asarray(model.hands_components, np.float64)[:12]
    pca_err = (rng_init.normal(scale=config.pose_pca_noise, size=12)
               + rng_init.normal(scale=config.pose_pca_noise / 3, size=(n, 12)))
    pose_init = hand_pose + d * pca_err @ comps
    R_bias = _random_rotation(rng_init, d * np.deg2rad(config.orient_noise_deg))
    R_init = np.stack([_random_rotation(rng_init, d * np.deg2rad(config.orient_noise_deg) / 3)
                       @ R_bias @ R for R in T_cam_mano[:, :3, :3]])
    betas_init = betas + d * rng_init.normal(scale=config.betas_noise, size=10)
    ray = _unit(T_cam_mano[onset, :3, 3] + T_cam_mano[onset, :3, :3] @ root)
    t_bias = (ray * rng_init.normal(scale=config.depth_bias_m)
              + rng_init.normal(scale=config.depth_bias_m / 4, size=3))
    transl_init = transl + d * (t_bias + rng_init.normal(scale=0.005, size=(n, 3)))
    hand_init = HandParams(betas=f32(np.tile(betas_init, (n, 1))), hand_pose=f32(pose_init),
                           global_orient=f32(Rotation.from_matrix(R_init).as_rotvec()),
                           transl=f32(transl_init))

    # The mesh handed to the tracker (metric, or unit-diagonal with the scale in gt).
    scale = 1.0
    if config.normalize_object_scale:
        scale = float(np.linalg.norm(mesh.extents))
    T_init = None
    if config.object_init:
        T_init = T_cam_obj[onset].copy()
        T_init[:3, :3] = _random_rotation(
            rng_init, d * np.deg2rad(config.object_init_rot_deg)) @ T_init[:3, :3]
        T_init[:3, 3] += d * rng_init.normal(scale=config.object_init_trans_m / np.sqrt(3),
                                             size=3)
    obj_mesh = ObjectMesh(vertices=f32(obj_verts_m / scale), faces=jnp.asarray(obj_faces),
                          face_valid=jnp.ones(len(obj_faces), bool),
                          vertex_features=f32(obj_feats))
    gt = GroundTruth(
        hand=HandParams(betas=f32(np.tile(betas, (n, 1))), hand_pose=f32(hand_pose),
                        global_orient=f32(global_orient), transl=f32(transl)),
        joints_cam=f32(joints), verts_cam=jnp.asarray(verts_h, jnp.float32),
        T_cam_obj=f32(T_cam_obj), obj_scale=f32(np.full(3, scale)),
        onset_frame=jnp.asarray(onset, jnp.int32), occlusion_ratio=f32(occlusion_ratio))
    return Sequence(
        K=f32(K), valid=jnp.ones(n, bool), hand_mask=jnp.asarray(hand_mask),
        object_mask=jnp.asarray(object_mask), keypoints_px=f32(uv), keypoints_conf=f32(conf),
        hand_init=hand_init, mesh=obj_mesh,
        depth_m=f32(depth) if config.with_depth else None,
        features=f32(feat_maps) if config.with_features else None,
        rgb=(jnp.asarray(np.round(np.asarray(out["rgb"]) * 255).clip(0, 255), jnp.uint8)
             if config.with_rgb else None),
        T_cam_obj_init=None if T_init is None else f32(T_init),
        init_frame=None if T_init is None else jnp.asarray(onset, jnp.int32),
        gt=gt, side=config.side)


def default_benchmark_configs(n: int, seed: int = 0, **overrides) -> list[SyntheticConfig]:
    """``n`` configs, seeds ``seed + i``: object kinds cycle (``i mod 5``), occlusion levels
    cycle independently (light, medium, heavy: ``i mod 3``), and every fourth sequence
    (``i mod 4 = 3``) moves fast (``speed`` 2: ~3° and 4 mm per frame, 15° between the frames
    a stride of 5 processes). Any eight consecutive configs thus hold every kind, two heavy
    occlusions and two fast motions. ``overrides`` set any other field (``speed`` included)."""
    levels = ("light", "medium", "heavy")
    return [SyntheticConfig(**{"seed": seed + i, "object_kind": OBJECT_KINDS[i % len(OBJECT_KINDS)],
                               "occlusion": levels[i % 3],
                               "speed": FAST_SPEED if i % 4 == 3 else 1.0, **overrides})
            for i in range(n)]


FAST_SPEED = 2.0
"""``speed`` of the fast-motion sequences of :func:`default_benchmark_configs`."""


def tracking_benchmark_configs(n: int, frames: int, image_size: int, seed: int = 0,
                               hand_noise: float = 1.0) -> list[SyntheticConfig]:
    """The synthetic tracking benchmark the demo and the experiments track
    (:func:`default_benchmark_configs`): every object kind and occlusion level, a crop-like
    field of view, feature maps at stride 4, detector-like initial object poses (15° RMS
    rotation, 2 cm RMS translation), RGB for the pictures.

    ``hand_noise`` scales the hand detector's errors (articulation, shape, orientation, depth
    bias; 1 = the generator's defaults, 0 = the true MANO parameters, still with unknown metric
    translation and scale and noisy 2D keypoints)."""
    d = SyntheticConfig()
    return default_benchmark_configs(
        n, seed=seed, num_frames=frames, image_size=(image_size, image_size),
        focal_factor=2.2, feature_stride=4, object_init_rot_deg=15.0 / np.sqrt(3),
        object_init_trans_m=0.02, with_rgb=True,
        pose_pca_noise=hand_noise * d.pose_pca_noise, betas_noise=hand_noise * d.betas_noise,
        orient_noise_deg=hand_noise * d.orient_noise_deg,
        depth_bias_m=hand_noise * d.depth_bias_m)


def write_benchmark(out_dir: str | Path,
                    configs: list[SyntheticConfig] | tuple[int, int], *,
                    mesh_file: str = "object.ply") -> list[Path]:
    """Generate and save sequences under ``out_dir`` (``seq_000``, ``seq_001``, ...).

    ``configs`` is a list of :class:`SyntheticConfig` or ``(n, seed)`` for
    :func:`default_benchmark_configs`. Each manifest's ``meta`` holds the config, the onset
    frame and the mean occlusion after onset. Returns the sequence directories.
    """
    from hoijax.data._format import save_sequence

    if isinstance(configs, tuple):
        configs = default_benchmark_configs(*configs)
    out_dir = Path(out_dir)
    paths = []
    for i, cfg in enumerate(configs):
        seq = generate_sequence(cfg)
        onset = int(seq.gt.onset_frame)
        occ = np.asarray(seq.gt.occlusion_ratio)[onset:]
        meta = {"generator": "hoijax.data.generate_sequence", "config": cfg.to_json(),
                "onset_frame": onset, "mean_occlusion_after_onset": float(occ.mean()),
                "motion": motion_summary(np.asarray(seq.gt.T_cam_obj), onset, cfg.fps)}
        paths.append(save_sequence(seq, out_dir / f"seq_{i:03d}", mesh_file=mesh_file,
                                   meta=meta))
    return paths


__all__ = ["OcclusionLevel", "SyntheticConfig", "default_benchmark_configs",
           "generate_sequence", "motion_summary", "write_benchmark"]
