"""TIGeR's examples: the in-memory arrays, the ``.npz`` layout, priors and the pseudo-mapping.

One example is one object crop. ``N`` examples, ``S`` crop side (pixels), ``P`` prior points,
``Q`` ground-truth points. The ``.npz`` holds these arrays (names, shapes, dtypes):

============== ================= ======= ==================================================
name           shape             dtype   meaning
============== ================= ======= ==================================================
rgb            (N, S, S, 3)      uint8   the crop (S = 256 in the paper)
K              (N, 3, 3)         float32 intrinsics of the crop, pixels
prior_obj      (N, P, 3)         float32 shape prior V̄: object-centred, its own (canonical,
                                         unknown) orientation, metres
points_obj     (N, Q, 3)         float32 ground-truth object points V: centred on
                                         ``center_cam``, camera axes, metres
center_cam     (N, 3)            float32 object centre C_o (centroid of V), camera frame, m
hand_joints    (N, 21, 3)        float32 hand keypoints C_h, OpenPose order, camera frame, m
hand_verts     (N, 778, 3)       float32 ground-truth MANO vertices, camera frame, m
amodal_mask    (N, S, S)         bool    full object silhouette (occluders ignored)
visible_mask   (N, S, S)         bool    visible part of the object
mapping        (N, Q)            int32   optional: pseudo-mapping J(i) (computed if absent)
prior_source   (N,)              int32   optional: 0 sphere, 1 other instance, 2 noisy GT,
                                         -1 other/unknown
============== ================= ======= ==================================================

DexYCB / ObMan crops fit this layout: crop 256² around the object, K shifted and scaled
to the crop, object points from the posed model (or ShapeNet mesh), masks from the annotations.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hoijax import metrics

PRIOR_SOURCES = ("sphere", "instance", "noisy_gt")
"""Prior kinds of the synthetic data, as in TIGeR Table IIIa (unit sphere, a retrieved
instance, a generated prior; here a noisy or deformed ground truth stands in for the last)."""

_REQUIRED = ("rgb", "K", "prior_obj", "points_obj", "center_cam", "hand_joints", "hand_verts",
             "amodal_mask", "visible_mask")


class TigerDataError(ValueError):
    """An ``.npz`` of TIGeR examples that does not follow the layout."""


@dataclasses.dataclass
class TigerData:
    """A set of TIGeR examples as NumPy arrays (the ``.npz`` layout of the module docstring)."""

    rgb: np.ndarray
    """(N, S, S, 3) uint8 crops."""
    K: np.ndarray
    """(N, 3, 3) crop intrinsics, pixels."""
    prior_obj: np.ndarray
    """(N, P, 3) shape prior, object-centred, canonical orientation, metres."""
    points_obj: np.ndarray
    """(N, Q, 3) ground-truth points, object-centred, camera axes, metres."""
    center_cam: np.ndarray
    """(N, 3) object centre, camera frame, metres."""
    hand_joints: np.ndarray
    """(N, 21, 3) hand keypoints, camera frame, metres."""
    hand_verts: np.ndarray
    """(N, 778, 3) hand vertices, camera frame, metres."""
    amodal_mask: np.ndarray
    """(N, S, S) bool amodal object mask."""
    visible_mask: np.ndarray
    """(N, S, S) bool visible object mask."""
    mapping: np.ndarray | None = None
    """(N, Q) int32 pseudo-mapping J(i), or None until :func:`with_pseudo_mapping`."""
    prior_source: np.ndarray | None = None
    """(N,) int32 index into :data:`PRIOR_SOURCES` (-1: unknown), or None."""

    @property
    def num_examples(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def crop_px(self) -> int:
        return int(self.rgb.shape[1])

    def take(self, index) -> TigerData:
        """The examples at ``index`` (NumPy indexing)."""
        return TigerData(**{f.name: (None if getattr(self, f.name) is None
                                     else getattr(self, f.name)[index])
                            for f in dataclasses.fields(self)})

    def replace(self, **kw) -> TigerData:
        return dataclasses.replace(self, **kw)


def occlusion_rate(data: TigerData) -> np.ndarray:
    """TIGeR's ``R_occ = 1 − (A_visible + 1) / (A_amodal + 1)`` per example (areas in pixels)."""
    vis = data.visible_mask.reshape(data.num_examples, -1).sum(1).astype(np.float64)
    amo = data.amodal_mask.reshape(data.num_examples, -1).sum(1).astype(np.float64)
    return 1.0 - (vis + 1.0) / (amo + 1.0)


def concat_tiger_data(*parts: TigerData) -> TigerData:
    """Examples of several sets, in order (optional fields kept only if all have them)."""
    out = {}
    for f in dataclasses.fields(TigerData):
        vals = [getattr(p, f.name) for p in parts]
        out[f.name] = None if any(v is None for v in vals) else np.concatenate(vals)
    return TigerData(**out)


def validate_tiger_data(data: TigerData, source: str = "<memory>") -> None:
    """Check shapes, dtypes and finiteness; raise :class:`TigerDataError` naming the field."""
    n = data.num_examples
    s = data.rgb.shape[1] if data.rgb.ndim == 4 else -1
    expect = {"rgb": (n, s, s, 3), "K": (n, 3, 3), "center_cam": (n, 3),
              "hand_joints": (n, 21, 3), "hand_verts": (n, 778, 3),
              "amodal_mask": (n, s, s), "visible_mask": (n, s, s)}
    for name, shape in expect.items():
        got = np.shape(getattr(data, name))
        if got != shape:
            raise TigerDataError(f"{source}: field {name!r} has shape {got}, expected {shape}")
    for name in ("prior_obj", "points_obj"):
        a = getattr(data, name)
        if a.ndim != 3 or a.shape[0] != n or a.shape[2] != 3 or a.shape[1] < 1:
            raise TigerDataError(f"{source}: field {name!r} has shape {a.shape}, expected "
                                 f"({n}, points, 3)")
    if data.rgb.dtype != np.uint8:
        raise TigerDataError(f"{source}: field 'rgb' must be uint8, got {data.rgb.dtype}")
    if data.mapping is not None and data.mapping.shape != data.points_obj.shape[:2]:
        raise TigerDataError(f"{source}: field 'mapping' has shape {data.mapping.shape}, "
                             f"expected {data.points_obj.shape[:2]}")
    for name in ("K", "prior_obj", "points_obj", "center_cam", "hand_joints", "hand_verts"):
        if not np.isfinite(getattr(data, name)).all():
            raise TigerDataError(f"{source}: field {name!r} has non-finite values")


def save_tiger_data(path: str | Path, data: TigerData) -> Path:
    """Write ``data`` as a compressed ``.npz`` in the documented layout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)
              if getattr(data, f.name) is not None}
    np.savez_compressed(path, **arrays)
    return path


def load_tiger_data(path: str | Path) -> TigerData:
    """Read and validate an ``.npz`` written in the documented layout."""
    path = Path(path)
    try:
        with np.load(path) as z:
            missing = [k for k in _REQUIRED if k not in z]
            if missing:
                raise TigerDataError(f"{path}: missing field(s) {missing}")
            kw = {k: z[k] for k in z.files if k in {f.name for f in dataclasses.fields(TigerData)}}
    except (OSError, ValueError) as e:
        if isinstance(e, TigerDataError):
            raise
        raise TigerDataError(f"{path}: not a readable .npz ({e})") from e
    kw["amodal_mask"] = kw["amodal_mask"].astype(bool)
    kw["visible_mask"] = kw["visible_mask"].astype(bool)
    data = TigerData(**kw)
    validate_tiger_data(data, str(path))
    return data


# ----------------------------------------------------------------------------------- priors


def sphere_prior(num_points: int, radius_m: float) -> np.ndarray:
    """``num_points`` points spread evenly on a sphere (Fibonacci lattice), ``(P, 3)``."""
    i = np.arange(num_points) + 0.5
    z = 1.0 - 2.0 * i / num_points
    r = np.sqrt(1.0 - z**2)
    phi = np.pi * (1.0 + 5**0.5) * i
    return (radius_m * np.stack([r * np.cos(phi), r * np.sin(phi), z], -1)).astype(np.float32)


def sample_mesh_surface(verts: np.ndarray, faces: np.ndarray, num_points: int,
                        seed: int) -> np.ndarray:
    """``num_points`` points uniform on a triangle mesh (area-weighted faces, uniform
    barycentrics), float64. NumPy: converters meet a new mesh size per object, and one
    compiled program per size would cost more than the sampling."""
    tri = np.asarray(verts, np.float64)[np.asarray(faces)]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
    if not area.sum() > 0:
        raise ValueError("the mesh has no area")
    rng = np.random.default_rng(seed)
    f = rng.choice(len(tri), num_points, p=area / area.sum())
    r1, r2 = rng.uniform(size=(2, num_points, 1))
    s = np.sqrt(r1)
    return (1 - s) * tri[f, 0] + s * (1 - r2) * tri[f, 1] + s * r2 * tri[f, 2]


def noisy_prior(points: np.ndarray, rng: np.random.Generator, scale_std: float = 0.15,
                noise_m: float = 0.002) -> np.ndarray:
    """A deformed ground truth: anisotropic scaling ``1 + N(0, scale_std²)`` per axis, a
    smooth bend, and per-point Gaussian noise (metres); re-centred on its centroid."""
    p = np.asarray(points, np.float64)
    p = p * (1.0 + rng.normal(scale=scale_std, size=3)).clip(0.6, 1.6)
    bend = rng.normal(scale=2.0, size=3)  # 1/m: a quadratic bend across the longest axis
    ax = int(np.argmax(np.ptp(p, 0)))
    p = p + np.outer(p[:, ax] ** 2, bend * np.eye(3)[(ax + 1) % 3])
    p = p + rng.normal(scale=noise_m, size=p.shape)
    return (p - p.mean(0)).astype(np.float32)


# ------------------------------------------------------------------------ pseudo-mapping


@jax.jit
def _mapping_one(prior, gt):
    al = metrics.align_shapes(prior, gt, icp_points=128, num_iters=10)
    moved = al.transform.apply(prior - al.pred_center) + al.gt_center
    _, idx = metrics.nearest_neighbors(gt, moved)
    return idx.astype(jnp.int32), al.metrics.cd_cm2


def pseudo_mapping(prior_obj: np.ndarray, points_obj: np.ndarray,
                   chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """TIGeR Eq. 1 and ``J(i)``: the similarity A aligning each prior to its ground truth by
    multi-start ICP (:func:`hoijax.metrics.align_shapes`), then ``J(i) = argmin_j ‖V_i −
    A V̄_j‖``. Returns ``(mapping (N, Q) int32, aligned CD in cm² (N,))``. Training only."""
    n = prior_obj.shape[0]
    maps, cds = [], []
    fn = jax.vmap(_mapping_one)
    for s in range(0, n, chunk):
        idx = np.r_[np.arange(s, min(s + chunk, n)), np.full(max(0, s + chunk - n), n - 1)]
        m, cd = fn(jnp.asarray(prior_obj[idx]), jnp.asarray(points_obj[idx]))
        k = min(chunk, n - s)
        maps.append(np.asarray(m)[:k])
        cds.append(np.asarray(cd)[:k])
    return np.concatenate(maps), np.concatenate(cds)


def with_pseudo_mapping(data: TigerData) -> TigerData:
    """``data`` with :attr:`TigerData.mapping` filled in by :func:`pseudo_mapping`."""
    if data.mapping is not None:
        return data
    mapping, _ = pseudo_mapping(data.prior_obj, data.points_obj)
    return data.replace(mapping=mapping)
