"""One's own RGB-D (or RGB + monocular depth) recording → :class:`hoijax.data.Sequence`.

Layout of a recording folder (``<stem>``: the frame's file stem; frames are the sorted stems of
``rgb/``)::

    rgb/<stem>.jpg | .png          the frames (RGB; all the same size)
    K.txt                          3×3 pinhole intrinsics, pixels (np.loadtxt), OpenCV camera
    object.<ext>                   the object mesh, any trimesh-readable file (.obj with its
                                   texture, .ply, .glb, ...), metres, in the frame the initial
                                   pose refers to
    detections.npz                 the hand detector's output (hoijax.data.read_detections)
    masks.npz | masks/             hand and object masks (hoijax.data.read_masks)
    depth/<stem>.png | .npy        optional: 16-bit PNG in millimetres (``depth_scale``), or
                                   float metres (.npy), e.g. a sensor's or MoGe's; 0 / NaN = none
    init_pose.txt | .npy           optional: the object pose at ``init_frame``
                                   (hoijax.data.read_init_pose)

``hoijax import-recording DIR --out SEQ_DIR`` writes it in the sequence format; then
``hoijax features SEQ_DIR --weights FILE`` adds DINO features and ``hoijax track SEQ_DIR``
tracks it. There is no ground truth: nothing is scored, and nothing in the inputs is oracle.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from hoijax import mano
from hoijax.data._errors import SequenceFormatError
from hoijax.data._inputs import _read_image, read_detections, read_init_pose, read_masks
from hoijax.data._sequence import HandParams, Sequence

MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf", ".off", ".stl")


def _one(directory: Path, stem: str, suffixes: tuple[str, ...], field: str,
         required: bool = True) -> Path | None:
    found = [directory / f"{stem}{s}" for s in suffixes if (directory / f"{stem}{s}").exists()]
    if len(found) > 1:
        raise SequenceFormatError(directory, field, f"several candidates {[p.name for p in found]}"
                                  "; keep one")
    if not found and required:
        raise SequenceFormatError(directory / f"{stem}{suffixes[0]}", field,
                                  f"not found (looked for {stem} with {', '.join(suffixes)})")
    return found[0] if found else None


def read_intrinsics_txt(path: str | Path) -> np.ndarray:
    """A 3×3 pinhole ``K`` from a text file: finite, positive focal lengths, last row 0 0 1."""
    path = Path(path)
    try:
        K = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as e:
        raise SequenceFormatError(path, "K", f"unreadable ({e})") from e
    if K.shape != (3, 3) or not np.all(np.isfinite(K)):
        raise SequenceFormatError(path, "K", f"expected 3 rows of 3 finite numbers, got {K.shape}")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]):
        raise SequenceFormatError(path, "K", "need fx, fy > 0 and last row 0 0 1")
    return K


def _read_depth(path: Path, depth_scale: float, hw: tuple[int, int], frame: int) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            d = np.load(path, allow_pickle=False).astype(np.float64)
        except (OSError, ValueError) as e:
            raise SequenceFormatError(path, "depth_m", f"frame {frame}: unreadable ({e})") from e
    else:
        img = _read_image(path, "depth_m")
        if img.ndim != 2:
            raise SequenceFormatError(path, "depth_m", f"frame {frame}: expected a one-channel "
                                      f"16-bit depth PNG, got shape {img.shape}")
        d = img.astype(np.float64) * depth_scale
    if d.shape != hw:
        raise SequenceFormatError(path, "depth_m", f"frame {frame}: size {d.shape} differs "
                                  f"from the frames' {hw}")
    return np.where(np.isfinite(d) & (d > 0), d, 0.0)


def load_recording(directory: str | Path, *, side: str = "right",
                   mano_model: mano.ManoModel | None = None, depth_scale: float = 0.001,
                   init_frame: int = 0, require_watertight: bool = False,
                   ) -> tuple[Sequence, list[str], dict[str, Any]]:
    """Read a recording folder (layout above); returns the sequence (no ground truth), the frame
    stems and the provenance ``meta`` (``oracle`` empty, input files, warnings).

    ``mano_model`` is needed only when the detections have ``flat_hand_mean`` False. Errors
    (:class:`SequenceFormatError`) name the file, the field and, where it applies, the frame.
    """
    from hoijax.data._format import load_object_mesh

    d = Path(directory)
    if not (d / "rgb").is_dir():
        raise SequenceFormatError(d / "rgb", "rgb", "frame folder not found")
    stems = sorted(p.stem for p in (d / "rgb").iterdir()
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not stems:
        raise SequenceFormatError(d / "rgb", "rgb", "no .jpg or .png frame")
    frames = []
    for i, stem in enumerate(stems):
        path = _one(d / "rgb", stem, (".jpg", ".jpeg", ".png"), "rgb")
        img = _read_image(path, "rgb")
        if img.ndim != 3 or img.shape[2] < 3:
            raise SequenceFormatError(path, "rgb", f"frame {i}: expected RGB, got {img.shape}")
        if frames and img.shape[:2] != frames[0].shape[:2]:
            raise SequenceFormatError(path, "rgb", f"frame {i}: size {img.shape[:2]} differs "
                                      f"from frame 0's {frames[0].shape[:2]}")
        frames.append(img[..., :3].astype(np.uint8))
    rgb = np.stack(frames)
    n, hw = len(stems), tuple(int(s) for s in rgb.shape[1:3])
    K = read_intrinsics_txt(d / "K.txt")
    mesh_path = _one(d, "object", MESH_SUFFIXES, "mesh")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mesh = load_object_mesh(mesh_path, require_watertight=require_watertight)
    notes = [str(w.message) for w in caught]
    for w in caught:  # shown to the user, and recorded
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    det_path = _one(d, "detections", (".npz",), "keypoints_px")
    det = read_detections(det_path, n, require_mano=True, model=mano_model)
    masks_path = _one(d, "masks", (".npz", ""), "hand_mask")
    masks = read_masks(masks_path, n, hw, frame_ids=stems)
    notes.extend(masks.warnings)
    depth = None
    if (d / "depth").is_dir():
        depth = np.stack([_read_depth(_one(d / "depth", s, (".png", ".npy"), "depth_m"),
                                      depth_scale, hw, i) for i, s in enumerate(stems)])
        empty = float(np.mean(~np.any(depth > 0, axis=(1, 2))))
        if empty > 0.5:
            notes.append(f"depth is empty in {100 * empty:.0f} % of the frames")
            warnings.warn(f"{d / 'depth'}: depth is empty in {100 * empty:.0f} % of the frames",
                          stacklevel=2)
    pose_path = _one(d, "init_pose", (".txt", ".npy"), "T_cam_obj_init", required=False)
    if not 0 <= init_frame < n:
        raise ValueError(f"init_frame {init_frame} out of range for {n} frames")
    undetected = int(np.sum(~det["detected"]))
    if undetected:
        notes.append(f"{undetected} of {n} frames without a detection (confidence 0, MANO held "
                     "from the nearest detected frame)")
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    seq = Sequence(
        K=f32(K), valid=jnp.ones((n,), bool),
        hand_mask=jnp.asarray(masks.hand_mask, bool),
        object_mask=jnp.asarray(masks.object_mask, bool),
        keypoints_px=f32(det["keypoints_px"]), keypoints_conf=f32(det["keypoints_conf"]),
        hand_init=HandParams(**{k: f32(det[k]) for k in
                                ("betas", "hand_pose", "global_orient", "transl")}),
        mesh=mesh, depth_m=None if depth is None else f32(depth), rgb=jnp.asarray(rgb),
        T_cam_obj_init=None if pose_path is None else f32(read_init_pose(pose_path)),
        init_frame=None if pose_path is None else jnp.asarray(init_frame, jnp.int32),
        side=side)
    meta = {"dataset": "recording", "source": str(d.resolve()), "frame_ids": stems,
            "oracle": [], "keypoints": f"detections: {det_path.name}",
            "hand_init": f"detections: {det_path.name}", "masks": f"masks: {masks_path.name}",
            "init_pose": ("none: the tracker initializes the object" if pose_path is None
                          else f"{pose_path.name} at frame {init_frame}"),
            "depth": "none" if depth is None else f"depth/ (scale {depth_scale} m per unit)",
            "mesh": mesh_path.name, "undetected_frames": undetected, "warnings": notes}
    return seq, stems, meta
