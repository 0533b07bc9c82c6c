"""ObMan samples → TIGeR examples (:class:`~hoijax.tiger.TigerData`, the ``.npz`` layout).

Public layout (github hassony2/obman, ``obman/obman.py``)::

    <root>/<split>/rgb/%08d.jpg       256×256 render of hand and object (already TIGeR's crop)
    <root>/<split>/segm/%08d.png      labels; blue channel: the full render (object 100,
                                      right hand 22 / 24, left hand 21 / 23), red channel:
                                      the object rendered alone
    <root>/<split>/meta/%08d.pkl      dict: coords_3d (21, 3) and verts_3d (778, 3) of the hand,
                                      affine_transform (4, 4) of the object, class_id,
                                      sample_id, side, ...
    <shapenet_root>/<class_id>/<sample_id>/models/model_normalized.obj

The toolkit reads ``segm`` with OpenCV (BGR), so its channel 0 (the ``all`` mode) is the PNG's
blue channel and its channel 2 (``obj``) the red one. Camera: ``K = [[480, 0, 128], [0, 480,
128], [0, 0, 1]]``; every 3D quantity is brought into the OpenCV camera frame by the toolkit's
``cam_extr`` rotation ``diag(1, -1, -1)``, the object after its ``affine_transform``. Metres.

Per sample: ``visible_mask`` = blue == 100, ``amodal_mask`` = red == 100 (ObMan renders the
object alone, so its amodal mask is the dataset's, not ours); ``points_obj``: ``num_points``
points sampled uniformly (area-weighted, seeded per sample) on the transformed ShapeNet mesh,
centred on their centroid ``center_cam``; the hand from ``coords_3d`` (OpenPose order: the
toolkit's skeleton links are wrist → thumb … little finger) and ``verts_3d``; the prior as in
:func:`hoijax.tiger.load_dexycb_tiger` (a sphere, a file, or a folder holding
``<class_id>_<sample_id>.*`` or ``<class_id>.*``). A sample that cannot be read is reported by
file and field and skipped; the others are converted.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np

from hoijax.data._errors import SequenceFormatError
from hoijax.data._ho3d import read_obj
from hoijax.tiger._data import (
    PRIOR_SOURCES,
    TigerData,
    sample_mesh_surface,
    save_tiger_data,
    sphere_prior,
)
from hoijax.tiger._dexycb import prior_file, read_prior

OBMAN_K = np.array([[480.0, 0.0, 128.0], [0.0, 480.0, 128.0], [0.0, 0.0, 1.0]])
"""ObMan's camera intrinsics (toolkit ``cam_intr``)."""

OBMAN_CAM_ROTATION = np.diag([1.0, -1.0, -1.0])
"""ObMan's ``cam_extr[:3, :3]``: Blender's camera axes to OpenCV's."""

OBJECT_LABEL = 100
"""Object pixels' value in ``segm``."""


def _meta(path: Path) -> dict:
    if not path.is_file():
        raise SequenceFormatError(path, "meta", "file not found")
    try:
        with open(path, "rb") as f:
            meta = pickle.load(f, encoding="latin1")
    except Exception as e:  # pickle raises many kinds
        raise SequenceFormatError(path, "meta", f"unreadable pickle ({e})") from None
    if not isinstance(meta, dict):
        raise SequenceFormatError(path, "meta", "expected a dict")
    for key, shape in (("coords_3d", (21, 3)), ("verts_3d", (778, 3)),
                       ("affine_transform", (4, 4))):
        if key not in meta:
            raise SequenceFormatError(path, key, "missing key")
        a = np.asarray(meta[key], np.float64)
        if a.shape != shape or not np.isfinite(a).all():
            raise SequenceFormatError(path, key, f"expected finite {shape}, got {a.shape}")
        meta[key] = a
    for key in ("class_id", "sample_id"):
        if key not in meta:
            raise SequenceFormatError(path, key, "missing key")
    return meta


def _read_rgb_image(path: Path, field: str) -> np.ndarray:
    """An image as (H, W, 3) uint8, as the toolkit's ``cv2.imread(path, 1)`` gives it (palette
    and grey images expanded), or an error naming the file and field."""
    from PIL import Image

    if not path.is_file():
        raise SequenceFormatError(path, field, "file not found")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise SequenceFormatError(path, field, f"unreadable image ({e})") from None


def _sample(split_dir: Path, shapenet_root: Path, index: int, num_points: int, seed: int):
    name = f"{index:08d}"
    meta_path = split_dir / "meta" / f"{name}.pkl"
    meta = _meta(meta_path)
    rgb_path, segm_path = split_dir / "rgb" / f"{name}.jpg", split_dir / "segm" / f"{name}.png"
    rgb = _read_rgb_image(rgb_path, "rgb")
    segm = _read_rgb_image(segm_path, "segm")
    if rgb.shape[:2] != segm.shape[:2] or rgb.shape[0] != rgb.shape[1]:
        raise SequenceFormatError(segm_path, "segm", f"size {segm.shape[:2]} does not match "
                                  f"the square image {rgb.shape[:2]}")
    mesh_path = (shapenet_root / str(meta["class_id"]) / str(meta["sample_id"]) / "models"
                 / "model_normalized.obj")
    verts, faces = read_obj(mesh_path)
    try:
        canon = sample_mesh_surface(verts, faces, num_points, seed + index)
    except ValueError as e:
        raise SequenceFormatError(mesh_path, "mesh", str(e)) from None
    A = meta["affine_transform"]
    cam = (canon @ A[:3, :3].T + A[:3, 3]) @ OBMAN_CAM_ROTATION.T
    center = cam.mean(0)
    if center[2] <= 0:
        raise SequenceFormatError(meta_path, "affine_transform",
                                  f"object centre behind the camera (z = {center[2]:.3f} m)")
    K = OBMAN_K.copy()
    if rgb.shape[0] != 256:  # a resized copy of the dataset: scale the intrinsics with it
        K[:2] *= rgb.shape[0] / 256.0
    return meta, dict(
        rgb=rgb, K=K, points_obj=cam - center, center_cam=center,
        hand_joints=meta["coords_3d"] @ OBMAN_CAM_ROTATION.T,
        hand_verts=meta["verts_3d"] @ OBMAN_CAM_ROTATION.T,
        visible_mask=segm[..., 2] == OBJECT_LABEL, amodal_mask=segm[..., 0] == OBJECT_LABEL)


def load_obman_tiger(
    root: str | Path,
    split: str,
    shapenet_root: str | Path,
    indices: list[int] | None = None,
    *,
    prior: str | Path = "sphere",
    sphere_radius_m: float = 0.05,
    num_points: int = 512,
    seed: int = 0,
) -> TigerData:
    """TIGeR examples of ObMan samples ``indices`` of ``split`` (default: every ``meta/*.pkl``);
    see the module docstring. Raises only when no sample converts."""
    split_dir, shapenet_root = Path(root) / split, Path(shapenet_root)
    if indices is None:
        indices = sorted(int(p.stem) for p in (split_dir / "meta").glob("*.pkl")
                         if p.stem.isdigit())
    if not indices:
        raise SequenceFormatError(split_dir / "meta", "meta", "no samples")
    rows, skipped = [], []
    priors: dict[Path, np.ndarray] = {}  # a folder prior is shared by many samples: read once
    sphere = sphere_prior(num_points, sphere_radius_m)
    for index in indices:
        try:
            meta, row = _sample(split_dir, shapenet_root, int(index), num_points, seed)
            if prior == "sphere":
                pts, src = sphere, PRIOR_SOURCES.index("sphere")
            else:
                names = f"{meta['class_id']}_{meta['sample_id']}", str(meta["class_id"])
                path = prior_file(Path(prior), *names)
                if path not in priors:
                    priors[path] = read_prior(path, num_points, seed)
                pts, src = priors[path], -1
        except SequenceFormatError as e:
            warnings.warn(f"ObMan {split} sample {int(index):08d} skipped: {e}", stacklevel=2)
            skipped.append(int(index))
            continue
        rows.append({**row, "prior_obj": pts, "prior_source": src})
    if not rows:
        raise ValueError(f"no ObMan sample of {split_dir} converted ({len(skipped)} skipped)")
    stack = lambda k, dt: np.stack([r[k] for r in rows]).astype(dt)  # noqa: E731
    return TigerData(
        rgb=stack("rgb", np.uint8), K=stack("K", np.float32),
        prior_obj=stack("prior_obj", np.float32), points_obj=stack("points_obj", np.float32),
        center_cam=stack("center_cam", np.float32), hand_joints=stack("hand_joints", np.float32),
        hand_verts=stack("hand_verts", np.float32), amodal_mask=stack("amodal_mask", bool),
        visible_mask=stack("visible_mask", bool),
        prior_source=np.array([r["prior_source"] for r in rows], np.int32))


def convert_obman_tiger(root, split, shapenet_root, out: str | Path, indices=None,
                        **kwargs) -> TigerData:
    """:func:`load_obman_tiger`, written to ``out`` (``.npz``)."""
    data = load_obman_tiger(root, split, shapenet_root, indices, **kwargs)
    save_tiger_data(out, data)
    return data


__all__ = ["OBMAN_CAM_ROTATION", "OBMAN_K", "convert_obman_tiger", "load_obman_tiger"]
