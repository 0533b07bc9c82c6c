"""DexYCB → :class:`hoijax.data.Sequence` (one sequence seen by one camera).

Public layout (github NVlabs/dex-ycb-toolkit, ``dex_ycb_toolkit/dex_ycb.py``)::

    <root>/<subject>/<sequence>/meta.yml     ycb_ids, ycb_grasp_ind, mano_sides, mano_calib,
                                             num_frames
    <root>/<subject>/<sequence>/<serial>/labels_%06d.npz
                                             pose_m (1, 51), pose_y (num_obj, 3, 4),
                                             seg (H, W), joint_3d (1, 21, 3) metres, ...
    <root>/<subject>/<sequence>/<serial>/color_%06d.jpg
    <root>/<subject>/<sequence>/<serial>/aligned_depth_to_color_%06d.png   uint16, mm
    <root>/calibration/intrinsics/<serial>_640x480.yml   color: fx, fy, ppx, ppy
    <root>/calibration/mano_<mano_calib>/mano.yml        betas (10)
    <root>/models/<ycb class>/textured_simple.obj

Hand (toolkit ``layers/mano_layer.py``: manopth ``ManoLayer(flat_hand_mean=False, ncomps=45,
use_pca=True)``): ``pose_m[0, :3]`` is the global axis-angle, ``pose_m[0, 3:48]`` 45 PCA
coefficients, ``pose_m[0, 48:51]`` the translation in metres (manopth outputs millimetres; the
toolkit divides by 1000). manopth poses about the rest root joint and adds the translation last,
as smplx does, so the only change is the articulation, made absolute for our format::

    hand_pose = coeffs @ hands_components[:45] + hands_mean      (flat_hand_mean=True after)

The camera frame is OpenCV already. ``pose_y[ycb_grasp_ind]`` is ``[R | t]`` (metres) of the
grasped object, ``T_cam_obj``. Masks: ``seg == 255`` is the hand, ``seg == ycb_ids[grasp]`` the
object. Frames whose ``pose_m`` is all zero have no hand annotation and are dropped. ``joint_3d``
(manopth's fingertips) is used as a check: the keypoints recomputed with manopth's tips must
agree within ``joint_check_tol_m`` (catches a wrong MANO file or PCA convention).

Inputs follow the HO-3D converter (:mod:`hoijax.data._ho3d`): no ground truth enters the
tracker's inputs unless ``oracle`` names the input (default: none). DexYCB's own ``joint_2d`` /
``seg`` are annotations, so without an oracle the caller gives:

- ``detections=<file.npz>``: one row per converted frame (``Converted.frame_ids``, the frame
  indices as ``%06d``): ``keypoints_px`` (N, 21, 2) float pixels, OpenPose order, NaN where
  missing; ``keypoints_conf`` (N, 21) in [0, 1]; optional ``detected`` (N,) bool; MANO
  ``betas`` (N, 10), ``hand_pose`` (N, 45) axis-angle or (N, 15, 3, 3) rotation matrices,
  ``global_orient`` (N, 3) or (N, 1, 3, 3), ``transl`` (N, 3) in the OpenCV camera frame,
  metres, for the sequence's hand side; optional scalar ``flat_hand_mean`` (default True;
  False adds ``hands_mean``, as a manopth / smplx ``flat_hand_mean=False`` estimate needs);
- ``masks=<file.npz>`` (``hand_mask`` / ``object_mask`` (N, H, W) bool or uint8) or
  ``masks=<folder>`` (``hand/%06d.png``, ``object/%06d.png``, nonzero = mask);
- ``init_pose=<file.txt|.npy>``: optional 4×4 object pose at ``init_frame``.

``oracle`` ``"keypoints"`` projects the ground-truth keypoints (smplx tips, confidence 1),
``"hand"`` takes ``hand_init`` from the ground-truth MANO, ``"masks"`` takes the ``seg`` masks
(or renders the ground truth when ``seg`` is absent or ``use_seg=False``), ``"pose"`` sets
``T_cam_obj_init`` to the ground-truth pose at ``init_frame``. The manifest's ``meta`` records
every source (``oracle``, ``keypoints``, ``hand_init``, ``masks``, ``init_pose``,
``init_frame``, ``undetected_frames``, ``warnings``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hoijax import mano
from hoijax.data._ho3d import (
    Converted,
    _array,
    _fail,
    _read_image,
    _read_rgb,
    assemble_sequence,
    check_input_sources,
    parse_oracle,
    read_inputs,
    read_obj,
)

YCB_CLASSES = {
    1: "002_master_chef_can", 2: "003_cracker_box", 3: "004_sugar_box",
    4: "005_tomato_soup_can", 5: "006_mustard_bottle", 6: "007_tuna_fish_can",
    7: "008_pudding_box", 8: "009_gelatin_box", 9: "010_potted_meat_can", 10: "011_banana",
    11: "019_pitcher_base", 12: "021_bleach_cleanser", 13: "024_bowl", 14: "025_mug",
    15: "035_power_drill", 16: "036_wood_block", 17: "037_scissors", 18: "040_large_marker",
    19: "051_large_clamp", 20: "052_extra_large_clamp", 21: "061_foam_brick",
}
"""DexYCB's YCB object ids → model folder names (toolkit ``_YCB_CLASSES``)."""

DEXYCB_DEPTH_SCALE_M = 1e-3
"""Metres per unit of the aligned depth PNGs (millimetres)."""

HAND_SEG_LABEL = 255
"""Value of hand pixels in ``labels_*.npz['seg']``."""


def _read_yaml(path: Path, field: str) -> dict:
    import yaml

    if not path.is_file():
        raise _fail(path, field, "file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise _fail(path, field, f"invalid YAML ({e})") from None
    if not isinstance(data, dict):
        raise _fail(path, field, "expected a mapping")
    return data


def _key(data: dict, key: str, path: Path):
    if key not in data:
        raise _fail(path, key, "missing key")
    return data[key]


def read_intrinsics(path: str | Path) -> np.ndarray:
    """``K`` (3×3) from a DexYCB intrinsics YAML (its ``color`` block: fx, fy, ppx, ppy)."""
    path = Path(path)
    color = _key(_read_yaml(path, "K"), "color", path)
    if not isinstance(color, dict):
        raise _fail(path, "color", "expected a mapping with fx, fy, ppx, ppy")
    fx, fy, cx, cy = (float(_array(_key(color, k, path), path, f"color.{k}", ()))
                      for k in ("fx", "fy", "ppx", "ppy"))
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def read_dexycb_label(path: str | Path, num_objects: int) -> dict[str, np.ndarray]:
    """One ``labels_%06d.npz``, validated (float64 arrays of the documented shapes)."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "labels", "label file not found")
    try:
        with np.load(path) as z:
            raw = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise _fail(path, "labels", f"unreadable npz ({e})") from None
    out = {}
    for key, shape in (("pose_m", (1, 51)), ("pose_y", (num_objects, 3, 4)),
                       ("joint_3d", (1, 21, 3))):
        if key not in raw:
            raise _fail(path, key, "missing key")
        out[key] = _array(raw[key], path, key, shape)
    if "seg" in raw:
        if np.ndim(raw["seg"]) != 2:
            raise _fail(path, "seg", f"expected (H, W), got {np.shape(raw['seg'])}")
        out["seg"] = np.asarray(raw["seg"])
    return out


def manopth_to_absolute(model: mano.ManoModel, pose_m: np.ndarray) -> dict[str, np.ndarray]:
    """``pose_m`` rows ``(N, 51)`` → absolute ``global_orient``, ``hand_pose``, ``transl``
    (float64): ``hand_pose = coeffs @ hands_components[:45] + hands_mean``."""
    pose_m = np.asarray(pose_m, np.float64)
    comps = np.asarray(model.hands_components, np.float64)[:45]
    mean = np.asarray(model.hands_mean, np.float64)
    return {"global_orient": pose_m[:, :3], "hand_pose": pose_m[:, 3:48] @ comps + mean,
            "transl": pose_m[:, 48:51]}


def _annotated(label_path, num_frames: int, num_objects: int) -> list[int]:
    return [f for f in range(num_frames)
            if np.any(read_dexycb_label(label_path(f), num_objects)["pose_m"] != 0)]


def dexycb_annotated_frames(root: str | Path, sequence: str, serial: str) -> list[int]:
    """Indices of the frames of ``<root>/<sequence>/<serial>`` that have a hand annotation
    (``pose_m`` not all zero): :func:`load_dexycb`'s default ``frames``."""
    seq_dir = Path(root) / sequence
    meta_path = seq_dir / "meta.yml"
    meta = _read_yaml(meta_path, "meta")
    num_objects = len(_key(meta, "ycb_ids", meta_path))
    num_frames = int(_key(meta, "num_frames", meta_path))
    return _annotated(lambda f: seq_dir / serial / f"labels_{f:06d}.npz", num_frames,
                      num_objects)


def load_dexycb(
    root: str | Path,
    sequence: str,
    serial: str,
    mano_dir: str | Path | None = None,
    *,
    mano_model: mano.ManoModel | None = None,
    frames: list[int] | None = None,
    load_rgb: bool = True,
    load_depth: bool = True,
    use_seg: bool = True,
    detections: str | Path | None = None,
    masks: str | Path | None = None,
    init_pose: str | Path | None = None,
    init_frame: int = 0,
    oracle: str | Iterable[str] | None = None,
    joint_check_tol_m: float | None = 0.005,
    image_size: tuple[int, int] = (480, 640),
) -> Converted:
    """Convert one DexYCB sequence as seen by camera ``serial``.

    Args:
        root: dataset root (``$DEX_YCB_DIR``).
        sequence: ``"<subject>/<sequence>"``, e.g. ``"20200709-weiy/20200709_141754"``.
        serial: camera serial, e.g. ``"836212060125"``.
        mano_dir: folder with ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (or give ``mano_model``
            of the sequence's side).
        frames: frame indices (default: every frame with a hand annotation).
        load_rgb / load_depth: read those when present.
        use_seg: under oracle ``"masks"``, take the masks from ``seg`` (without it they are
            rendered from the ground truth).
        detections: ``.npz`` of a hand detector's outputs, one row per converted frame
            (:func:`hoijax.data.read_detections`); required unless oracle has both
            ``"keypoints"`` and ``"hand"``.
        masks: a segmenter's masks (:func:`hoijax.data.read_masks`); required unless oracle
            has ``"masks"``.
        init_pose: optional 4×4 object pose at ``init_frame`` (:func:`hoijax.data.read_init_pose`).
        init_frame: index (into the converted frames) of the initial object pose.
        oracle: inputs taken from the ground truth (:func:`hoijax.data.parse_oracle`; default
            none).
        joint_check_tol_m: largest allowed gap between ``joint_3d`` and the recomputed
            keypoints (manopth tips), metres; None skips the check.
        image_size: ``(H, W)`` used only when no image is read.
    """
    root = Path(root)
    seq_dir = root / sequence
    oracle = parse_oracle(oracle)
    check_input_sources(seq_dir / serial, oracle, detections=detections, masks=masks,
                        init_pose=init_pose)
    meta_path = seq_dir / "meta.yml"
    meta = _read_yaml(meta_path, "meta")
    ycb_ids = [int(i) for i in _key(meta, "ycb_ids", meta_path)]
    grasp = int(_key(meta, "ycb_grasp_ind", meta_path))
    if not 0 <= grasp < len(ycb_ids):
        raise _fail(meta_path, "ycb_grasp_ind", f"{grasp} out of range for {len(ycb_ids)} objects")
    side = str(_key(meta, "mano_sides", meta_path)[0])
    if side not in ("right", "left"):
        raise _fail(meta_path, "mano_sides", f"unknown side {side!r}")
    calib = _key(meta, "mano_calib", meta_path)[0]
    num_frames = int(_key(meta, "num_frames", meta_path))
    mano_yml = root / "calibration" / f"mano_{calib}" / "mano.yml"
    betas = _array(_key(_read_yaml(mano_yml, "betas"), "betas", mano_yml), mano_yml, "betas",
                   (10,))
    K = read_intrinsics(root / "calibration" / "intrinsics" / f"{serial}_640x480.yml")
    if mano_model is None:
        if mano_dir is None:
            raise ValueError("give mano_dir or mano_model")
        mano_model = mano.load_mano(Path(mano_dir) / f"MANO_{side.upper()}.pkl")
    if mano_model.side != side:
        raise ValueError(f"{meta_path}: the sequence's hand is {side}, the model is "
                         f"{mano_model.side}")
    cam_dir = seq_dir / serial
    label_path = lambda f: cam_dir / f"labels_{f:06d}.npz"  # noqa: E731
    if frames is None:
        frames = _annotated(label_path, num_frames, len(ycb_ids))
    frames = [int(f) for f in frames]
    if not frames:
        raise _fail(cam_dir, "pose_m", "no frame with a hand annotation")
    if not 0 <= int(init_frame) < len(frames):
        raise ValueError(f"init_frame {init_frame} out of range for {len(frames)} frames")
    labels = [read_dexycb_label(label_path(f), len(ycb_ids)) for f in frames]
    for f, lab in zip(frames, labels):
        if not np.any(lab["pose_m"] != 0):
            raise _fail(label_path(f), "pose_m", "all zero: frame has no hand annotation")

    params = manopth_to_absolute(mano_model, np.concatenate([lab["pose_m"] for lab in labels]))
    params["betas"] = np.tile(betas, (len(frames), 1))
    if joint_check_tol_m is not None:
        out = jax.vmap(lambda g, h, b, t: mano.forward(mano_model, g, h, b, t,
                                                       flat_hand_mean=True))(
            *(jnp.asarray(params[k], jnp.float32)
              for k in ("global_orient", "hand_pose", "betas", "transl")))
        kp = np.asarray(out.keypoints(tips="manopth", order="openpose"))
        joint_3d = np.stack([lab["joint_3d"][0] for lab in labels])
        gap = np.linalg.norm(kp - joint_3d, axis=-1).max(-1)
        if np.any(gap > joint_check_tol_m):
            worst = int(np.argmax(gap))
            raise _fail(label_path(frames[worst]), "joint_3d",
                        f"recomputed keypoints differ by {gap[worst] * 1000:.1f} mm (> "
                        f"{joint_check_tol_m * 1000:.1f} mm): wrong MANO model or pose_m layout?")

    T = np.tile(np.eye(4), (len(frames), 1, 1))
    T[:, :3, :] = np.stack([lab["pose_y"][grasp] for lab in labels])
    obj_id = ycb_ids[grasp]
    if obj_id not in YCB_CLASSES:
        raise _fail(meta_path, "ycb_ids", f"unknown YCB id {obj_id}")
    obj_model = root / "models" / YCB_CLASSES[obj_id] / "textured_simple.obj"
    obj_verts, obj_faces = read_obj(obj_model)

    rgb = depth = None
    if load_rgb and (cam_dir / f"color_{frames[0]:06d}.jpg").is_file():
        rgb = np.stack([_read_rgb(p if p.is_file() else None, p) for p in
                        (cam_dir / f"color_{f:06d}.jpg" for f in frames)])
        image_size = rgb.shape[1:3]
    if load_depth and (cam_dir / f"aligned_depth_to_color_{frames[0]:06d}.png").is_file():
        depth = np.stack([_read_depth(cam_dir / f"aligned_depth_to_color_{f:06d}.png")
                          for f in frames])
        image_size = depth.shape[1:]
    image_size = tuple(int(s) for s in image_size)
    annotated = None
    if "masks" in oracle and use_seg and all("seg" in lab for lab in labels):
        for f, lab in zip(frames, labels):
            if lab["seg"].shape != image_size:
                raise _fail(label_path(f), "seg", f"size {lab['seg'].shape} != image {image_size}")
        annotated = (np.stack([lab["seg"] == HAND_SEG_LABEL for lab in labels]),
                     np.stack([lab["seg"] == obj_id for lab in labels]))
    frame_ids = [f"{f:06d}" for f in frames]
    inputs = read_inputs(cam_dir, mano_model, oracle, len(frames), image_size, frame_ids,
                         detections=detections, masks=masks, init_pose=init_pose)
    seq, sources = assemble_sequence(
        model=mano_model, K=K, image_size=image_size, gt_params=params, T_cam_obj=T,
        obj_verts=obj_verts, obj_faces=obj_faces, rgb=rgb, depth_m=depth, where=cam_dir,
        oracle=oracle, detections=inputs.get("detections"), masks=inputs.get("masks"),
        annotated_masks=annotated, init_pose=inputs.get("init_pose"), init_frame=init_frame,
        sources=inputs["sources"])
    info: dict[str, Any] = {
        "dataset": "DexYCB", "sequence": sequence, "serial": serial,
        "object": YCB_CLASSES[obj_id], "object_model": str(obj_model.resolve()),
        "frame_ids": frame_ids, **sources}
    return Converted(seq, frame_ids, info)


def _read_depth(path: Path) -> np.ndarray:
    img = _read_image(path, "depth_m")
    if img.ndim != 2:
        raise _fail(path, "depth_m", f"expected a 16-bit single-channel image, got {img.shape}")
    return img.astype(np.float64) * DEXYCB_DEPTH_SCALE_M


def convert_dexycb(root, sequence, serial, mano_dir, out_dir, **kwargs) -> Converted:
    """:func:`load_dexycb`, then write the sequence with ``save_sequence``."""
    from hoijax.data._format import save_sequence

    conv = load_dexycb(root, sequence, serial, mano_dir, **kwargs)
    save_sequence(conv.sequence, out_dir, meta=conv.meta)
    return conv
