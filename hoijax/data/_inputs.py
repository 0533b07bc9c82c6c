"""The tracker's inputs from external models, and the ``oracle`` switch for ground truth.

A tracker must be run on what a real system would see: 2D keypoints and a MANO estimate from a
hand detector (OpenPose, WiLoR, HaMeR, ...), hand and object masks from a segmenter (SAM2, ...)
and optionally an object pose from a pose estimator (FoundationPose, ...). The dataset converters
(:func:`hoijax.data.load_ho3d`, :func:`hoijax.data.load_dexycb`) read those files with the
functions here and never put ground truth into the inputs unless ``oracle`` names the input:

- ``"keypoints"``: ``keypoints_px`` are the projected ground-truth keypoints (confidence 1);
- ``"hand"``: ``hand_init`` is the ground-truth MANO;
- ``"masks"``: masks are the dataset's annotation (or rendered from the ground truth);
- ``"pose"``: ``T_cam_obj_init`` is the ground-truth object pose at ``init_frame``.

File layouts (``N`` = number of converted frames, in the converter's frame order; OpenCV camera
frame: x right, y down, z forward; metres; pixel ``(r, c)`` has its centre at ``(u, v) = (c, r)``):

**Detections** (:func:`read_detections`), one ``.npz``:

- ``keypoints_px`` (N, 21, 2) float, pixels, OpenPose order (wrist, thumb 1-4, index 1-4, middle,
  ring, little; tips last in each finger). NaN marks a missing joint (its confidence becomes 0);
- ``keypoints_conf`` (N, 21) float in [0, 1]; 0 marks a missing joint (NaN counts as 0);
- ``detected`` (N,) bool, optional (default all True): False marks a frame without a detection;
- MANO estimate (all four or none; required unless ``oracle`` has ``"hand"``):
  ``betas`` (N, 10); ``hand_pose`` (N, 45) axis-angle or (N, 15, 3, 3) rotation matrices (as
  WiLoR / HaMeR write them); ``global_orient`` (N, 3) axis-angle or (N, 1, 3, 3) / (N, 3, 3)
  rotation matrix; ``transl`` (N, 3) metres — all in the OpenCV camera frame, for the model's
  hand side, with MANO's convention ``x = R (x_rest − J0) + J0 + transl``. A frame with NaN in
  any of its MANO values is undetected;
- ``flat_hand_mean`` scalar bool, optional (default True): True means ``hand_pose`` is the
  absolute articulation; False means it is relative to MANO's mean pose (smplx/manopth with
  ``flat_hand_mean=False``) and ``hands_mean`` is added on reading.

An undetected frame has all confidences 0 and holds the MANO values of the nearest detected frame
(the earlier one on a tie).

**Masks** (:func:`read_masks`): either one ``.npz`` with ``hand_mask`` and ``object_mask``
(N, H, W) bool or integer (nonzero = mask), or a folder with ``hand/<stem>.png`` and
``object/<stem>.png`` per frame (SAM2-style; any nonzero pixel is mask; gray, palette or RGB),
``<stem>`` being the converter's frame id. Masks must have the image's size.

**Initial object pose** (:func:`read_init_pose`): FoundationPose-style ``T_cam_obj`` 4×4 (object
model frame → OpenCV camera, metres) in a ``.txt`` (``np.loadtxt``: 4 rows of 4 numbers) or a
``.npy``, for frame ``init_frame``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hoijax.data._errors import SequenceFormatError

ORACLE_INPUTS = ("keypoints", "hand", "masks", "pose")
"""Inputs that ``oracle`` may take from the ground truth (see the module docstring)."""

MANO_KEYS = ("betas", "hand_pose", "global_orient", "transl")
"""The MANO estimate's keys in a detections file."""


class SparseMaskWarning(UserWarning):
    """Object masks are empty in more than half of the frames: the segmenter probably lost the
    object, and tracking will lean on the hand and the motion prior."""


class MaskInputs(NamedTuple):
    """Masks read by :func:`read_masks`."""

    hand_mask: np.ndarray
    """(N, H, W) bool."""
    object_mask: np.ndarray
    """(N, H, W) bool."""
    warnings: list[str]
    """Problems worth recording (e.g. sparse object masks); empty when none."""

    @property
    def sparse_object_mask(self) -> bool:
        return any(w.startswith("sparse object masks") for w in self.warnings)


def parse_oracle(spec: str | Iterable[str] | None) -> frozenset[str]:
    """``oracle`` as a set of :data:`ORACLE_INPUTS`: None, ``""`` or ``"none"`` → empty;
    ``"all"`` → all four; a comma-separated string (``"keypoints,hand"``) or an iterable of
    names. An unknown name is a ValueError."""
    if spec is None:
        return frozenset()
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out = set()
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"oracle names must be strings, got {name!r}")
        name = name.strip().lower()
        if name in ("", "none"):
            continue
        if name == "all":
            out.update(ORACLE_INPUTS)
        elif name in ORACLE_INPUTS:
            out.add(name)
        else:
            raise ValueError(f"unknown oracle input {name!r}; valid: {', '.join(ORACLE_INPUTS)}, "
                             "'all' or 'none'")
    return frozenset(out)


# ---------------------------------------------------------------- small helpers


def _fail(path, field, detail) -> SequenceFormatError:
    return SequenceFormatError(path, field, detail)


def _read_image(path: Path, field: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except (OSError, ValueError) as e:
        raise _fail(path, field, f"unreadable image ({e})") from None


def _load_npz(path: Path, field: str, what: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise _fail(path, field, f"{what} file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise _fail(path, field, f"unreadable npz ({e})") from None


def _float(data, path, key, shapes) -> np.ndarray:
    """``data[key]`` as float64 with one of ``shapes`` (NaN allowed), else an error naming the
    file, the key and the shapes."""
    try:
        a = np.asarray(data[key], np.float64)
    except (TypeError, ValueError) as e:
        raise _fail(path, key, f"not numeric ({e})") from None
    if a.shape not in [tuple(s) for s in shapes]:
        want = " or ".join(str(tuple(s)) for s in shapes)
        raise _fail(path, key, f"expected shape {want}, got {a.shape}")
    return a


def _matrices_to_rotvec(m: np.ndarray, ok: np.ndarray, path, key) -> np.ndarray:
    """Rotation matrices ``(N, J, 3, 3)`` → axis-angle ``(N, J, 3)`` for frames ``ok`` (NaN
    elsewhere); a non-rotation in a frame of ``ok`` is an error naming the frame."""
    from scipy.spatial.transform import Rotation

    out = np.full(m.shape[:2] + (3,), np.nan)
    for n in np.flatnonzero(ok):
        gap = np.abs(np.swapaxes(m[n], -1, -2) @ m[n] - np.eye(3)).max()
        if gap > 1e-3 or np.any(np.linalg.det(m[n]) < 0):
            raise _fail(path, key, f"frame {n}: not a rotation matrix "
                                   f"(|RᵀR − I| = {gap:.2g} or det < 0)")
        out[n] = Rotation.from_matrix(m[n]).as_rotvec()
    return out


def _hold_nearest(values: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Rows of undetected frames replaced by the nearest detected frame's (earlier on a tie)."""
    idx = np.flatnonzero(detected)
    frames = np.arange(len(detected))
    nearest = idx[np.argmin(np.abs(frames[:, None] - idx[None]), axis=1)]
    return values[nearest]


# ---------------------------------------------------------------- detections


def read_detections(path: str | Path, num_frames: int, *, require_mano: bool = False,
                    model=None) -> dict[str, np.ndarray]:
    """A hand detector's per-frame output (see the module docstring for the ``.npz`` layout).

    Returns float64 ``keypoints_px`` (N, 21, 2; 0 where missing), ``keypoints_conf`` (N, 21;
    0 where missing and in undetected frames), ``detected`` (N,) bool and, when the file has
    them, the absolute MANO estimate ``betas`` (N, 10), ``hand_pose`` (N, 45),
    ``global_orient`` (N, 3), ``transl`` (N, 3) with undetected frames holding the nearest
    detected frame's values.

    Args:
        require_mano: the MANO keys must be present (the hand initialization comes from them).
        model: the :class:`hoijax.mano.ManoModel`, needed when the file says
            ``flat_hand_mean=False`` (its ``hands_mean`` is added).

    Raises:
        SequenceFormatError: naming the file, the key and (where it applies) the frame.
    """
    path = Path(path)
    n = int(num_frames)
    data = _load_npz(path, "keypoints_px", "detections")
    for key in ("keypoints_px", "keypoints_conf"):
        if key not in data:
            raise _fail(path, key, "missing key")
    kp = _float(data, path, "keypoints_px", [(n, 21, 2)])
    conf = _float(data, path, "keypoints_conf", [(n, 21)])
    conf = np.where(np.isfinite(conf), conf, 0.0)
    bad = np.argwhere((conf < 0) | (conf > 1))
    if len(bad):
        f, j = bad[0]
        raise _fail(path, "keypoints_conf", f"frame {f}, joint {j}: {conf[f, j]} not in [0, 1]")
    conf = np.where(np.all(np.isfinite(kp), -1), conf, 0.0)

    detected = np.ones(n, bool)
    if "detected" in data:
        d = np.asarray(data["detected"])
        if d.shape != (n,):
            raise _fail(path, "detected", f"expected shape ({n},), got {d.shape}")
        if d.dtype.kind not in "biu":
            raise _fail(path, "detected", f"expected bool, got {d.dtype}")
        detected &= d.astype(bool)

    present = [k for k in MANO_KEYS if k in data]
    mano = None
    if present or require_mano:
        missing = [k for k in MANO_KEYS if k not in data]
        if missing:
            detail = "missing key (the MANO estimate needs " + ", ".join(MANO_KEYS) + ")"
            if require_mano:
                detail += "; pass oracle='hand' to take the hand initialization from ground truth"
            raise _fail(path, missing[0], detail)
        betas = _float(data, path, "betas", [(n, 10)])
        hand_pose = _float(data, path, "hand_pose", [(n, 45), (n, 15, 3, 3)])
        global_orient = _float(data, path, "global_orient", [(n, 3), (n, 1, 3, 3), (n, 3, 3)])
        transl = _float(data, path, "transl", [(n, 3)])
        finite = lambda a: np.all(np.isfinite(a.reshape(n, -1)), axis=1)  # noqa: E731
        detected &= finite(betas) & finite(hand_pose) & finite(global_orient) & finite(transl)
        if hand_pose.ndim == 4:
            hand_pose = _matrices_to_rotvec(hand_pose, detected, path, "hand_pose").reshape(n, 45)
        if global_orient.ndim == 3:
            global_orient = global_orient[:, None]
        if global_orient.ndim == 4:
            global_orient = _matrices_to_rotvec(global_orient, detected, path,
                                                "global_orient")[:, 0]
        flat = True
        if "flat_hand_mean" in data:
            v = np.asarray(data["flat_hand_mean"])
            if v.shape not in ((), (1,)) or v.dtype.kind not in "biu":
                raise _fail(path, "flat_hand_mean", f"expected a scalar bool, got {v.dtype} "
                                                    f"{v.shape}")
            flat = bool(v.reshape(()))
        if not flat:
            if model is None:
                raise ValueError(f"{path}: flat_hand_mean=False needs the MANO model "
                                 "(pass model=) to add its hands_mean")
            hand_pose = hand_pose + np.asarray(model.hands_mean, np.float64)
        mano = {"betas": betas, "hand_pose": hand_pose, "global_orient": global_orient,
                "transl": transl}

    if not detected.any():
        raise _fail(path, "detected", f"no frame of {n} has a detection (detected False or NaN "
                                      "in the MANO values everywhere)")
    conf = np.where(detected[:, None], conf, 0.0)
    out = {"keypoints_px": np.where(conf[..., None] > 0, kp, 0.0), "keypoints_conf": conf,
           "detected": detected}
    if mano is not None:
        out.update({k: _hold_nearest(v, detected) for k, v in mano.items()})
    return out


# ---------------------------------------------------------------- masks


def _mask_array(a: np.ndarray, path, field) -> np.ndarray:
    if a.dtype.kind == "b":
        return a
    if a.dtype.kind in "iu":
        return a != 0
    raise _fail(path, field, f"expected bool or integer masks, got {a.dtype}")


def _png_mask(path: Path, field: str, frame: int, hw: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        raise _fail(path, field, f"frame {frame}: mask image not found")
    img = _read_image(path, field)
    if img.ndim == 3:
        if img.shape[2] in (2, 4):  # drop the alpha channel
            img = img[..., :-1]
        img = img.any(-1)
    if img.shape != hw:
        raise _fail(path, field, f"frame {frame}: mask size {img.shape} != image {hw}")
    return _mask_array(np.asarray(img), path, field)


def read_masks(path: str | Path, num_frames: int, image_size: tuple[int, int],
               frame_ids: list[str] | None = None) -> MaskInputs:
    """Hand and object masks from a segmenter (see the module docstring for both layouts).

    ``frame_ids`` (the file stems) is needed for a folder. Object masks empty in more than half
    of the frames give a :class:`SparseMaskWarning` (and an entry in ``warnings``).

    Raises:
        SequenceFormatError: naming the file, the field and (where it applies) the frame.
    """
    path = Path(path)
    n, hw = int(num_frames), tuple(int(s) for s in image_size)
    if path.is_dir():
        if frame_ids is None:
            raise ValueError("read_masks on a folder needs frame_ids (the file stems)")
        if len(frame_ids) != n:
            raise ValueError(f"{len(frame_ids)} frame_ids for {n} frames")
        masks = {}
        for field, sub in (("hand_mask", "hand"), ("object_mask", "object")):
            if not (path / sub).is_dir():
                raise _fail(path / sub, field, "mask folder not found")
            masks[field] = np.stack([_png_mask(path / sub / f"{stem}.png", field, i, hw)
                                     for i, stem in enumerate(frame_ids)])
    else:
        data = _load_npz(path, "hand_mask", "masks")
        masks = {}
        for field in ("hand_mask", "object_mask"):
            if field not in data:
                raise _fail(path, field, "missing key")
            a = np.asarray(data[field])
            if a.shape != (n, *hw):
                raise _fail(path, field, f"expected shape {(n, *hw)} (frames, H, W), got "
                                         f"{a.shape}")
            masks[field] = _mask_array(a, path, field)
    notes = []
    empty = ~masks["object_mask"].reshape(n, -1).any(1)
    if empty.sum() * 2 > n:
        msg = (f"sparse object masks: {path}: object_mask is empty in {int(empty.sum())} of {n} "
               f"frames (first: frame {int(np.argmax(empty))})")
        warnings.warn(msg, SparseMaskWarning, stacklevel=2)
        notes.append(msg)
    return MaskInputs(masks["hand_mask"], masks["object_mask"], notes)


# ---------------------------------------------------------------- initial pose


def read_init_pose(path: str | Path) -> np.ndarray:
    """A FoundationPose-style object pose ``T_cam_obj`` (4×4, float64) from ``.txt`` or
    ``.npy``: finite, rotation block orthonormal (within 1e-3) with determinant +1, last row
    ``0 0 0 1``. Errors name the file."""
    path = Path(path)
    field = "T_cam_obj_init"
    if not path.is_file():
        raise _fail(path, field, "initial pose file not found")
    try:
        if path.suffix == ".npy":
            T = np.load(path, allow_pickle=False)
        elif path.suffix == ".txt":
            T = np.loadtxt(path, ndmin=2)
        else:
            raise _fail(path, field, f"unknown suffix {path.suffix!r} (expected .txt or .npy)")
        T = np.asarray(T, np.float64)
    except (OSError, ValueError) as e:
        if isinstance(e, SequenceFormatError):
            raise
        raise _fail(path, field, f"unreadable ({e})") from None
    if T.shape != (4, 4):
        raise _fail(path, field, f"expected a 4×4 matrix, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise _fail(path, field, "contains NaN or inf")
    R = T[:3, :3]
    gap = np.abs(R.T @ R - np.eye(3)).max()
    if gap > 1e-3:
        raise _fail(path, field, f"rotation block not orthonormal (|RᵀR − I| = {gap:.2g})")
    if abs(np.linalg.det(R) - 1.0) > 1e-3:
        raise _fail(path, field, f"rotation block has determinant {np.linalg.det(R):.4g}, not +1")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise _fail(path, field, f"last row {T[3].tolist()} is not [0, 0, 0, 1]")
    return T


# ---------------------------------------------------------------- source checks


def check_input_sources(where: str | Path, oracle: frozenset[str], *, detections=None,
                        masks=None, init_pose=None) -> None:
    """Fail early, before a converter reads any image, when an input has no source: each of
    keypoints, hand initialization and masks needs a file or its ``oracle`` name. Giving a file
    for an input that ``oracle`` also names is a ValueError (which one would win is unclear)."""
    if detections is not None and {"keypoints", "hand"} <= oracle:
        raise ValueError("detections= given but oracle takes both keypoints and hand from the "
                         "ground truth: drop one")
    if masks is not None and "masks" in oracle:
        raise ValueError("masks= given and oracle includes 'masks': drop one")
    if init_pose is not None and "pose" in oracle:
        raise ValueError("init_pose= given and oracle includes 'pose': drop one")
    missing = []
    if detections is None and "keypoints" not in oracle:
        missing.append(("keypoints_px", "no 2D keypoint detections: pass detections=<file.npz> "
                        "(keypoints_px, keypoints_conf) or oracle=\"keypoints\" to use the "
                        "projected ground truth"))
    if detections is None and "hand" not in oracle:
        missing.append(("hand_init", "no MANO estimate: pass detections=<file.npz> with betas, "
                        "hand_pose, global_orient, transl (e.g. WiLoR's) or oracle=\"hand\" to "
                        "use the ground-truth MANO"))
    if masks is None and "masks" not in oracle:
        missing.append(("masks", "no hand/object masks: pass masks=<file.npz or folder> (e.g. "
                        "SAM2's) or oracle=\"masks\" to use the dataset's annotation"))
    if missing:
        field, detail = missing[0]
        if len(missing) > 1:
            detail += " (also missing: " + ", ".join(f for f, _ in missing[1:]) + ")"
        raise _fail(where, field, detail)
