"""Egocentric annotations into :class:`hoijax.icl.IclData`: ARCTIC-style and EgoExo4D-style.

Both converters read a dataset's ground truth in its released layout, express it in the
egocentric camera's frame (metres) and pair it, frame by frame, with the inputs the user
computes with their own models (:class:`EgocentricInputs`): the detector's coarse MANO
estimates (e.g. WiLoR's, already in hoijax.icl's 61-vector layout and the same camera frame),
image features (any ViT's patch tokens, or :func:`hoijax.icl.vit_image_tokens`) and one text
embedding per frame (any text encoder's output, stored per frame; or descriptions embedded by the
built-in hashed embedder, :func:`hoijax.icl.embed_texts`).

ARCTIC (``arctic_to_icl``), files under the data root as the dataset ships them::

    raw_seqs/<subject>/<sequence>.mano.npy         np.save'd dict: {"right"|"left": {"rot" (T, 3),
                                                   "pose" (T, 45), "trans" (T, 3), "shape" (10,),
                                                   "fitting_err" (T,)}}, world frame, metres;
                                                   "pose" relative to MANO's mean pose
                                                   (smplx flat_hand_mean=False), axis-angle
    raw_seqs/<subject>/<sequence>.egocam.dist.npy  np.save'd dict: "R_k_cam_np" (T, 3, 3),
                                                   "T_k_cam_np" (T, 3, 1) world → egocentric
                                                   camera (metres), "intrinsics" (3, 3), "dist8",
                                                   "R0", "T0", "ego_markers.ref", ...
    meta/misc.json                                 {subject: {"ioi_offset": int, ...}}: image
                                                   ``k`` of view 0 is annotation row
                                                   ``k - ioi_offset``

MANO parameters move to the camera frame exactly: MANO rotates about the wrist joint ``j0(β)``,
so with ``x_cam = R x_world + T``: ``orient_cam = R · orient``, ``transl_cam = R (j0 + transl) +
T − j0``; the articulation gets MANO's mean pose added (hoijax.icl stores absolute articulation).
Every ARCTIC frame has both hands.

EgoExo4D (``egoexo4d_to_icl``), files of the ego-pose hand annotations::

    annotations/ego_pose/<split>/hand/annotation/<take_uid>.json
        {"<frame>": [{"annotation3D": {"right_wrist": {"x", "y", "z", ...}, "right_thumb_1": ...,
                                         "left_pinky_4": ...}, "annotation2D": {...}}]}
        world frame, metres; a joint not annotated is absent
    annotations/ego_pose/<split>/camera_pose/<take_uid>.json
        {"<cam>": {"camera_intrinsics": 3×3, "camera_extrinsics": {"<frame>": 3×4}}, ...}
        the egocentric camera ("aria…") has per-frame world → camera extrinsics ``[R | t]``

Joints are named ``<side>_wrist`` and ``<side>_<finger>_<1..4>`` (finger: thumb, index, middle,
ring, pinky, base to tip): OpenPose order, hoijax.icl's keypoint order. EgoExo4D has no MANO
ground truth: ``has_mano_gt`` is False, ``gt`` zeros, ``keypoints_valid`` marks the annotated
joints, and a hand is present when at least ``min_joints`` of its joints are annotated.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hoijax import mano
from hoijax.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from hoijax.icl._data import IclData, IclDataError, all_joints_valid, validate_icl_data
from hoijax.icl._params import NUM_HAND_PARAMS, TWO_HANDS, hand_models, hands_forward_batch
from hoijax.icl._text import DEFAULT_TEXT_DIM, embed_texts

EGOEXO4D_FINGERS = ("thumb", "index", "middle", "ring", "pinky")
EGOEXO4D_JOINTS = ("wrist",) + tuple(f"{f}_{i}" for f in EGOEXO4D_FINGERS for i in range(1, 5))
"""EgoExo4D's 21 hand joint names (without the ``right_`` / ``left_`` prefix), OpenPose order."""


@dataclasses.dataclass(frozen=True)
class EgocentricInputs:
    """The model inputs of ``F`` annotated frames, computed by the user's own models.

    ``frame_index[i]`` names the annotation frame of row ``i`` (ARCTIC: the row of the
    ``.mano.npy`` arrays; EgoExo4D: the frame number key of the annotation JSON)."""

    frame_index: np.ndarray
    """``(F,)`` int annotation frames."""
    coarse: np.ndarray
    """``(F, H, 61)`` coarse MANO (hoijax.icl layout, egocentric camera frame, metres)."""
    image_features: np.ndarray
    """``(F, P, C)`` image patch features."""
    text_embedding: np.ndarray
    """``(F, D)`` one text embedding per frame (any encoder)."""


def load_egocentric_inputs(path: str | Path, texts: Sequence[str] | None = None,
                           text_dim: int = DEFAULT_TEXT_DIM) -> EgocentricInputs:
    """Read an ``.npz`` with ``frame_index``, ``coarse``, ``image_features`` and
    ``text_embedding`` (precomputed by any text encoder, one row per frame). Without
    ``text_embedding``, ``texts`` (one description per frame) are embedded by the built-in
    hashed embedder."""
    path = Path(path)
    with np.load(path) as z:
        need = ("frame_index", "coarse", "image_features")
        missing = [k for k in need if k not in z.files]
        if missing:
            raise IclDataError(f"{path}: missing field(s) {missing}")
        arrays = {k: z[k] for k in z.files}
    if "text_embedding" not in arrays:
        if texts is None:
            raise IclDataError(f"{path}: no 'text_embedding' and no texts to embed")
        arrays["text_embedding"] = embed_texts(texts, text_dim)
    f = len(arrays["frame_index"])
    for k in ("coarse", "image_features", "text_embedding"):
        if len(arrays[k]) != f:
            raise IclDataError(f"{path}: field {k!r} has {len(arrays[k])} rows, "
                               f"'frame_index' {f}")
    return EgocentricInputs(frame_index=np.asarray(arrays["frame_index"], np.int64),
                            coarse=np.asarray(arrays["coarse"], np.float32),
                            image_features=np.asarray(arrays["image_features"], np.float32),
                            text_embedding=np.asarray(arrays["text_embedding"], np.float32))


def _load_dict_npy(path: Path) -> dict:
    if not path.exists():
        raise IclDataError(f"{path}: file not found")
    obj = np.load(path, allow_pickle=True)
    return obj.item() if isinstance(obj, np.ndarray) and obj.dtype == object else obj


def world_mano_to_camera(
    model: mano.ManoModel,
    params_world: np.ndarray,
    R_world_to_cam: np.ndarray,
    t_world_to_cam: np.ndarray,
) -> np.ndarray:
    """``(T, 61)`` MANO parameters (absolute articulation) from the world frame to a camera
    frame ``x_cam = R x_world + t`` (``R`` (T, 3, 3), ``t`` (T, 3)): the same posed hand."""
    p = jnp.asarray(params_world, jnp.float32)
    R = jnp.asarray(R_world_to_cam, jnp.float32)
    t = jnp.asarray(t_world_to_cam, jnp.float32).reshape(-1, 3)
    j0 = jax.vmap(lambda b: mano.with_shape(model, b).joints_rest[0])(p[:, 48:58])
    orient = jax.vmap(lambda r, o: matrix_to_axis_angle(r @ axis_angle_to_matrix(o)))(R, p[:, 0:3])
    transl = jnp.einsum("tij,tj->ti", R, j0 + p[:, 58:61]) + t - j0
    return np.asarray(jnp.concatenate([orient, p[:, 3:58], transl], axis=-1))


def read_arctic_sequence(
    root: str | Path, subject: str, sequence: str,
    models: Sequence[mano.ManoModel] | None = None,
) -> dict:
    """ARCTIC ground truth of one sequence in the egocentric camera frame.

    Returns ``gt`` (T, 2, 61) in the :data:`TWO_HANDS` slots (right, left), ``keypoints``
    (T, 2, 21, 3), ``intrinsics`` (3, 3) and ``ioi_offset`` (or None without meta/misc.json).
    ``models``: the right and left MANO models (the official ones for real data)."""
    root = Path(root)
    models = hand_models(TWO_HANDS) if models is None else tuple(models)
    base = root / "raw_seqs" / subject
    mano_p = _load_dict_npy(base / f"{sequence}.mano.npy")
    cam = _load_dict_npy(base / f"{sequence}.egocam.dist.npy")
    for key in ("R_k_cam_np", "T_k_cam_np", "intrinsics"):
        if key not in cam:
            raise IclDataError(f"{base / (sequence + '.egocam.dist.npy')}: missing key {key!r}")
    R = np.asarray(cam["R_k_cam_np"], np.float64)
    T = np.asarray(cam["T_k_cam_np"], np.float64).reshape(len(R), 3)
    gt = []
    for side, model in zip(TWO_HANDS, models):
        if side not in mano_p:
            raise IclDataError(f"{base / (sequence + '.mano.npy')}: missing hand {side!r}")
        h = mano_p[side]
        for key in ("rot", "pose", "trans", "shape"):
            if key not in h:
                raise IclDataError(f"{base / (sequence + '.mano.npy')}: {side} lacks {key!r}")
        n = len(h["rot"])
        if n != len(R):
            raise IclDataError(f"{base}: {sequence} has {n} MANO frames but {len(R)} "
                               "egocentric camera poses")
        shape = np.broadcast_to(np.asarray(h["shape"], np.float64).reshape(-1, 10)[-1:], (n, 10))
        pose_abs = np.asarray(h["pose"], np.float64) + np.asarray(model.hands_mean)[None]
        world = np.concatenate([np.asarray(h["rot"]), pose_abs, shape,
                                np.asarray(h["trans"])], axis=1)
        gt.append(world_mano_to_camera(model, world, R, T))
    gt = np.stack(gt, axis=1).astype(np.float32)
    _, kp = hands_forward_batch(models, gt)
    misc = root / "meta" / "misc.json"
    ioi = int(json.loads(misc.read_text())[subject]["ioi_offset"]) if misc.exists() else None
    return {"gt": gt, "keypoints": np.asarray(kp, np.float32),
            "intrinsics": np.asarray(cam["intrinsics"], np.float32), "ioi_offset": ioi}


def _assemble(inputs: EgocentricInputs, gt, kp, valid, presence, has_mano) -> IclData:
    h = len(TWO_HANDS)
    if inputs.coarse.shape[1:] != (h, NUM_HAND_PARAMS):
        raise IclDataError(f"coarse has shape {inputs.coarse.shape}, expected (F, {h}, 61)")
    data = IclData(
        image_features=inputs.image_features, text_embedding=inputs.text_embedding,
        coarse=inputs.coarse, gt=np.asarray(gt, np.float32), presence=np.asarray(presence, bool),
        keypoints_gt=np.asarray(kp, np.float32) * np.asarray(presence, bool)[..., None, None],
        has_mano_gt=np.full(len(inputs.coarse), has_mano, bool),
        keypoints_valid=np.asarray(valid, bool))
    return validate_icl_data(data, TWO_HANDS, "converted data")


def arctic_to_icl(
    root: str | Path, subject: str, sequence: str, inputs: EgocentricInputs,
    models: Sequence[mano.ManoModel] | None = None,
) -> IclData:
    """ARCTIC frames ``inputs.frame_index`` of one sequence as :class:`IclData` (MANO ground
    truth in the egocentric camera frame, both hands present)."""
    seq = read_arctic_sequence(root, subject, sequence, models)
    idx = np.asarray(inputs.frame_index)
    if idx.min(initial=0) < 0 or idx.max(initial=0) >= len(seq["gt"]):
        raise IclDataError(f"frame_index outside the {len(seq['gt'])} frames of {sequence}")
    presence = np.ones((len(idx), 2), bool)
    return _assemble(inputs, seq["gt"][idx], seq["keypoints"][idx], all_joints_valid(presence),
                     presence, True)


def _ego_camera(cams: dict, name: str | None, path: Path) -> str:
    if name is not None:
        if name not in cams:
            raise IclDataError(f"{path}: no camera {name!r} (have {sorted(cams)})")
        return name
    ego = sorted(k for k in cams if k.lower().startswith("aria"))
    if not ego:
        raise IclDataError(f"{path}: no egocentric ('aria…') camera among {sorted(cams)}")
    return ego[0]


def read_egoexo4d_take(
    annotation_path: str | Path, camera_pose_path: str | Path,
    ego_camera: str | None = None, min_joints: int = 1,
) -> dict:
    """EgoExo4D hand keypoints of one take in the egocentric camera frame.

    Returns ``frames`` (F,) the annotated frame numbers (sorted) that have egocentric
    extrinsics, ``keypoints`` (F, 2, 21, 3) metres (zeros where not annotated), ``valid``
    (F, 2, 21), ``presence`` (F, 2) (≥ ``min_joints`` annotated joints), slots (right, left)."""
    annotation_path, camera_pose_path = Path(annotation_path), Path(camera_pose_path)
    ann = json.loads(annotation_path.read_text())
    cams = json.loads(camera_pose_path.read_text())
    cam = cams[_ego_camera(cams, ego_camera, camera_pose_path)]
    extr = cam.get("camera_extrinsics")
    if not isinstance(extr, dict):
        raise IclDataError(f"{camera_pose_path}: egocentric camera lacks per-frame "
                           "'camera_extrinsics'")
    frames = sorted(int(k) for k in ann if k in extr)
    kp = np.zeros((len(frames), 2, 21, 3))
    valid = np.zeros((len(frames), 2, 21), bool)
    for i, f in enumerate(frames):
        entry = ann[str(f)]
        entry = entry[0] if isinstance(entry, list) and entry else entry
        a3d = (entry or {}).get("annotation3D", {}) or {}
        e = np.asarray(extr[str(f)], np.float64).reshape(3, 4)
        for s, side in enumerate(TWO_HANDS):
            for j, name in enumerate(EGOEXO4D_JOINTS):
                p = a3d.get(f"{side}_{name}")
                if p is None or any(p.get(c) is None for c in "xyz"):
                    continue
                xyz = np.array([p["x"], p["y"], p["z"]], np.float64)
                kp[i, s, j] = e[:, :3] @ xyz + e[:, 3]
                valid[i, s, j] = True
    presence = valid.sum(-1) >= max(int(min_joints), 1)
    valid &= presence[..., None]
    return {"frames": np.asarray(frames, np.int64), "keypoints": kp.astype(np.float32),
            "valid": valid, "presence": presence}


def egoexo4d_to_icl(
    annotation_path: str | Path, camera_pose_path: str | Path, inputs: EgocentricInputs,
    ego_camera: str | None = None, min_joints: int = 1,
) -> IclData:
    """EgoExo4D frames ``inputs.frame_index`` of one take as :class:`IclData` (keypoint
    supervision only: ``has_mano_gt`` False)."""
    take = read_egoexo4d_take(annotation_path, camera_pose_path, ego_camera, min_joints)
    row = {int(f): i for i, f in enumerate(take["frames"])}
    missing = [int(f) for f in inputs.frame_index if int(f) not in row]
    if missing:
        raise IclDataError(f"{annotation_path}: frames {missing[:5]} have no hand annotation "
                           "or no egocentric camera pose")
    idx = np.array([row[int(f)] for f in inputs.frame_index], np.int64)
    gt = np.zeros((len(idx), 2, NUM_HAND_PARAMS), np.float32)
    return _assemble(inputs, gt, take["keypoints"][idx], take["valid"][idx],
                     take["presence"][idx], False)
