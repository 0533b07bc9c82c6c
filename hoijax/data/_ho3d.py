"""HO-3D v3 → :class:`hoijax.data.Sequence`.

Public layout (github shreyashampali/ho3d, ``vis_HO3D.py`` and ``utils/vis_utils.py``)::

    <root>/<split>/<seq>/meta/<id>.pkl      per-frame annotations (pickle, latin1)
    <root>/<split>/<seq>/rgb/<id>.jpg       (v2: .png)
    <root>/<split>/<seq>/depth/<id>.png     depth = (R + 256·G) · 0.00012498664727900177 m
    <root>/<split>/<seq>/seg/<id>.png       optional masks: hand in blue, object in green
    <ycb>/models/<objName>/textured_simple.obj

Meta keys read: ``handPose`` (48: global orient 3 + articulation 45, *absolute*, i.e. the
toolkit's MANO runs with ``flat_hand_mean=True``), ``handBeta`` (10), ``handTrans`` (3),
``camMat`` (3×3), ``objRot`` (axis-angle, 3 or 3×1), ``objTrans`` (3), ``objName``. Unannotated
frames hold ``None``. Everything is in the OpenGL camera frame (y up, z backward: the toolkit
projects with ``coordChangeMat = diag(1, −1, −1)``).

Conversion to hoijax (OpenCV camera, absolute articulation, ``flat_hand_mean=True``):

- object: ``T_cam_obj = [C·R_o | C·t_o]`` with ``C = diag(1, −1, −1)``;
- hand: MANO rotates about the rest root joint ``J0(β)``, so ``global_orient' = C·R_h`` and
  ``transl' = C·(J0 + t) − J0`` (:func:`opengl_to_opencv_mano`); the articulation is unchanged
  and already absolute, as our format wants. A layer that adds ``hands_mean`` itself
  (smplx/manopth with ``flat_hand_mean=False``) would need ``handPose[3:] − hands_mean``;
- ground truth never enters the tracker's inputs unless ``oracle`` names the input
  (:func:`hoijax.data.parse_oracle`; default: none). Without it, HO-3D ships no detections, so
  the inputs come from files the caller gives (layouts in :mod:`hoijax.data._inputs`, in short):

  - ``detections=<file.npz>``: ``keypoints_px`` (N, 21, 2) float pixels, OpenPose order, NaN
    where missing; ``keypoints_conf`` (N, 21) in [0, 1]; optional ``detected`` (N,) bool; the
    MANO estimate ``betas`` (N, 10), ``hand_pose`` (N, 45) axis-angle or (N, 15, 3, 3)
    rotation matrices, ``global_orient`` (N, 3) or (N, 1, 3, 3), ``transl`` (N, 3), OpenCV
    camera frame, metres (e.g. WiLoR's); optional scalar ``flat_hand_mean`` (default True:
    ``hand_pose`` absolute; False: relative to MANO's mean, which is then added). Row ``n`` is
    the ``n``-th converted frame (``Converted.frame_ids``). Undetected frames (``detected``
    False or NaN MANO values) get confidence 0 and the nearest detected frame's MANO values;
  - ``masks=<file.npz>`` with ``hand_mask`` / ``object_mask`` (N, H, W) bool or uint8, or
    ``masks=<folder>`` with ``hand/<frame id>.png`` and ``object/<frame id>.png`` (nonzero =
    mask, SAM2-style);
  - ``init_pose=<file.txt|.npy>``: optional 4×4 ``T_cam_obj`` (FoundationPose-style, OpenCV,
    metres) at frame ``init_frame`` (an index into the converted frames); without it the
    tracker finds the object pose itself.

  ``oracle`` names (a comma-separated string or a list; ``"all"`` for all four):
  ``"keypoints"``: projected ground-truth keypoints (OpenPose order, smplx tips, confidence 1);
  ``"hand"``: ``hand_init`` is the ground-truth MANO; ``"masks"``: masks from ``seg/`` when
  present (hand = blue > 127, object = green > 127, upsampled by nearest neighbour when smaller
  than the image), otherwise rendered from the ground truth with :mod:`hoijax.render` (visible
  masks from the z-buffer) — both are annotations; ``"pose"``: ``T_cam_obj_init`` is the
  ground-truth object pose at ``init_frame``.

The converted manifest's ``meta`` records the sources: ``oracle`` (sorted list), ``keypoints``,
``hand_init``, ``masks``, ``init_pose``, ``init_frame``, ``undetected_frames`` and
``warnings`` (e.g. object masks empty in most frames).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hoijax import geometry, mano
from hoijax.data._inputs import (  # noqa: F401 - read_detections re-exported for compatibility
    MaskInputs,
    _fail,
    _read_image,
    check_input_sources,
    parse_oracle,
    read_detections,
    read_init_pose,
    read_masks,
)
from hoijax.data._sequence import GroundTruth, HandParams, ObjectMesh, Sequence

HO3D_DEPTH_SCALE_M = 0.00012498664727900177
"""Metres per unit of the 16-bit value ``R + 256·G`` of HO-3D depth PNGs."""

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
"""HO-3D's ``coordChangeMat``: OpenGL camera (y up, z backward) → OpenCV (y down, z forward)."""


class Converted(NamedTuple):
    """A converted sequence and where it came from."""

    sequence: Sequence
    frame_ids: list[str]
    """Source frame names (file stems), in order."""
    meta: dict[str, Any]
    """JSON-serialisable provenance (dataset, sequence, object, mask source, ...)."""


# ---------------------------------------------------------------- small readers (shared)


def _array(value, path, field, shape, dtype=np.float64) -> np.ndarray:
    """``value`` as an array of exactly ``shape`` (size-preserving reshapes like (3, 1) → (3,)
    are accepted), finite, or a :class:`SequenceFormatError` naming file and field."""
    if value is None:
        raise _fail(path, field, "is None (frame not annotated)")
    try:
        a = np.asarray(value, dtype)
    except (TypeError, ValueError) as e:
        raise _fail(path, field, f"not numeric ({e})") from None
    if a.shape != tuple(shape):
        if a.size == int(np.prod(shape)) and a.squeeze().shape == tuple(s for s in shape if s != 1):
            a = a.reshape(shape)
        else:
            raise _fail(path, field, f"expected shape {tuple(shape)}, got {a.shape}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise _fail(path, field, "contains NaN or inf")
    return a


def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(V, 3)`` and triangles ``(F, 3)`` of a Wavefront OBJ (``v``/``f`` lines only;
    polygons fan-triangulated; texture/normal indices ignored, so vertices are never split at
    UV seams, as in the HO-3D toolkit's ``read_obj``)."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "mesh", "object model file not found")
    verts, faces = [], []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(x) for x in parts[1:4]])
        elif parts[0] == "f":
            idx = [int(p.split("/")[0]) for p in parts[1:]]
            idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
            faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
    if not verts or not faces:
        raise _fail(path, "mesh", "no vertices or no faces")
    v, f = np.asarray(verts, np.float64), np.asarray(faces, np.int64)
    if f.min() < 0 or f.max() >= len(v):
        raise _fail(path, "mesh", "face index out of range")
    return v, f.astype(np.int32)


def _find(directory: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for s in suffixes:
        p = directory / f"{stem}{s}"
        if p.is_file():
            return p
    return None


def _upsample_nearest(mask: np.ndarray, hw: tuple[int, int], path: Path, field: str) -> np.ndarray:
    if mask.shape == hw:
        return mask
    h, w = hw
    if mask.shape[0] > h or mask.shape[1] > w:
        raise _fail(path, field, f"mask {mask.shape} larger than the image {hw}")
    rows = (np.arange(h) * mask.shape[0]) // h
    cols = (np.arange(w) * mask.shape[1]) // w
    return mask[rows][:, cols]


def render_masks(
    verts_hand_cam: np.ndarray, hand_faces: np.ndarray, verts_obj_cam: np.ndarray,
    obj_faces: np.ndarray, K: np.ndarray, image_size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Visible hand and object masks ``(N, H, W)`` rendered from posed meshes (z-buffer)."""
    from hoijax import render

    h, w = image_size
    settings = render.RasterSettings(height=h, width=w)
    hand_masks, obj_masks = [], []
    for vh, vo in zip(verts_hand_cam, verts_obj_cam):
        scene = render.Scene.from_meshes([vh, vo], [hand_faces, obj_faces])
        out, settings = render.rasterize_checked(
            scene.verts_cam, np.asarray(scene.faces), K, settings, num_meshes=2,
            face_mesh_id=scene.face_mesh_id)
        mesh_id = np.asarray(out.mesh_id)
        hand_masks.append(mesh_id == 0)
        obj_masks.append(mesh_id == 1)
    return np.stack(hand_masks), np.stack(obj_masks)


def mano_ground_truth(model: mano.ManoModel, params: dict[str, np.ndarray]):
    """Vertices and OpenPose-order keypoints (smplx tips) of per-frame absolute MANO params."""
    out = jax.vmap(lambda g, h, b, t: mano.forward(model, g, h, b, t, flat_hand_mean=True))(
        *(jnp.asarray(params[k], jnp.float32)
          for k in ("global_orient", "hand_pose", "betas", "transl")))
    return np.asarray(out.vertices), np.asarray(out.keypoints(tips="smplx", order="openpose"))


def assemble_sequence(
    *, model: mano.ManoModel, K: np.ndarray, image_size: tuple[int, int],
    gt_params: dict[str, np.ndarray], T_cam_obj: np.ndarray, obj_verts: np.ndarray,
    obj_faces: np.ndarray, rgb: np.ndarray | None, depth_m: np.ndarray | None,
    where: str | Path, oracle: Iterable[str] = frozenset(),
    detections: dict | None = None, masks: MaskInputs | None = None,
    annotated_masks: tuple[np.ndarray, np.ndarray] | None = None,
    init_pose: np.ndarray | None = None, init_frame: int = 0,
    sources: dict[str, str] | None = None,
) -> tuple[Sequence, dict[str, Any]]:
    """Build the :class:`Sequence` from converted arrays (OpenCV frame, absolute pose).

    Ground truth (``gt_params``, ``T_cam_obj``) enters the inputs only where ``oracle`` (see
    :func:`hoijax.data.parse_oracle`) names the input; otherwise keypoints and ``hand_init``
    come from ``detections`` (:func:`read_detections`), masks from ``masks``
    (:func:`read_masks`) and ``T_cam_obj_init`` from ``init_pose`` (a 4×4 at ``init_frame``,
    or none: the tracker initializes the object itself). ``annotated_masks`` (the dataset's
    ``(hand, object)`` segmentation) are used under oracle ``"masks"``; without them the masks
    are rendered from the ground truth. ``where`` (the sequence folder) is named in errors about
    a missing input; ``sources`` (``detections`` / ``masks`` / ``init_pose`` → file name) only
    labels the provenance.

    Returns the sequence and its input provenance: ``oracle`` (sorted list), ``keypoints``,
    ``hand_init``, ``masks``, ``init_pose`` (source descriptions), ``init_frame`` (or None),
    ``undetected_frames`` (count), ``warnings`` (list of strings).
    """
    oracle = frozenset(oracle)
    sources = dict(sources or {})
    n = T_cam_obj.shape[0]
    check_input_sources(where, oracle, detections=detections, masks=masks, init_pose=init_pose)
    if "hand" not in oracle and not all(k in detections for k in gt_params):
        raise _fail(sources.get("detections", where), "betas",
                    "detections have no MANO estimate (betas, hand_pose, global_orient, transl); "
                    "pass oracle='hand' to take the hand initialization from ground truth")
    if not 0 <= int(init_frame) < n:
        raise ValueError(f"init_frame {init_frame} out of range for {n} frames")
    verts_cam, joints_cam = mano_ground_truth(model, gt_params)
    det_name = "detections: " + sources.get("detections", "given")
    notes: list[str] = []

    if "masks" in oracle:
        if annotated_masks is not None:
            hand_mask, object_mask = annotated_masks
            mask_source = "dataset segmentation (oracle)"
        else:
            verts_obj_cam = obj_verts[None] @ T_cam_obj[:, :3, :3].transpose(0, 2, 1) \
                + T_cam_obj[:, None, :3, 3]
            hand_mask, object_mask = render_masks(verts_cam, np.asarray(model.faces),
                                                  verts_obj_cam, obj_faces, K, image_size)
            mask_source = "rendered from ground truth (oracle)"
    else:
        hand_mask, object_mask = masks.hand_mask, masks.object_mask
        mask_source = "masks: " + sources.get("masks", "given")
        notes.extend(masks.warnings)

    if "keypoints" in oracle:
        uv = np.asarray(jax.vmap(lambda p: geometry.project(jnp.asarray(K, jnp.float32), p))(
            jnp.asarray(joints_cam)))
        conf = (joints_cam[..., 2] > 0).astype(np.float32)
        kp_source = "projected ground truth (oracle)"
    else:
        uv, conf = detections["keypoints_px"], detections["keypoints_conf"]
        kp_source = det_name
    if "hand" in oracle:
        init, hand_source = dict(gt_params), "ground truth (oracle)"
    else:
        init, hand_source = {k: detections[k] for k in gt_params}, det_name
    undetected = 0 if detections is None else int(np.sum(~detections["detected"]))
    if undetected and ({"keypoints", "hand"} - oracle):
        notes.append(f"{undetected} of {n} frames without a detection (confidence 0, MANO held "
                     "from the nearest detected frame)")

    T_init = None
    if "pose" in oracle:
        T_init = T_cam_obj[int(init_frame)]
        pose_source = f"ground truth at frame {int(init_frame)} (oracle)"
    elif init_pose is not None:
        T_init = np.asarray(init_pose, np.float64)
        pose_source = "init_pose: " + sources.get("init_pose", "given") + \
            f" at frame {int(init_frame)}"
    else:
        pose_source = "none (the tracker initializes the object pose)"

    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    hand = lambda p: HandParams(**{k: f32(p[k]) for k in  # noqa: E731
                                   ("betas", "hand_pose", "global_orient", "transl")})
    seq = Sequence(
        K=f32(K),
        valid=jnp.ones((n,), bool),
        hand_mask=jnp.asarray(hand_mask, bool),
        object_mask=jnp.asarray(object_mask, bool),
        keypoints_px=f32(np.where(conf[..., None] > 0, uv, 0.0)),
        keypoints_conf=f32(conf),
        hand_init=hand(init),
        mesh=ObjectMesh(vertices=f32(obj_verts), faces=jnp.asarray(obj_faces, jnp.int32),
                        face_valid=jnp.ones((obj_faces.shape[0],), bool)),
        depth_m=None if depth_m is None else f32(depth_m),
        rgb=None if rgb is None else jnp.asarray(rgb, jnp.uint8),
        T_cam_obj_init=None if T_init is None else f32(T_init),
        init_frame=None if T_init is None else jnp.asarray(int(init_frame), jnp.int32),
        gt=GroundTruth(hand=hand(gt_params), joints_cam=f32(joints_cam), verts_cam=f32(verts_cam),
                       T_cam_obj=f32(T_cam_obj), obj_scale=jnp.ones((3,), jnp.float32)),
        side=model.side,
    )
    info = {"oracle": sorted(oracle), "keypoints": kp_source, "hand_init": hand_source,
            "masks": mask_source, "init_pose": pose_source,
            "init_frame": None if T_init is None else int(init_frame),
            "undetected_frames": undetected, "warnings": notes}
    return seq, info


def read_inputs(
    where: Path, model: mano.ManoModel, oracle: frozenset[str], num_frames: int,
    image_size: tuple[int, int], frame_ids: list[str], *, detections=None, masks=None,
    init_pose=None,
) -> dict[str, Any]:
    """Read the input files a converter was given (keyword arguments of
    :func:`assemble_sequence`): detections unless ``oracle`` covers keypoints and hand, masks
    unless it covers masks, the initial pose when given."""
    out: dict[str, Any] = {"sources": {}}
    if detections is not None:
        out["detections"] = read_detections(detections, num_frames,
                                            require_mano="hand" not in oracle, model=model)
        out["sources"]["detections"] = str(detections)
    if masks is not None:
        out["masks"] = read_masks(masks, num_frames, image_size, frame_ids)
        out["sources"]["masks"] = str(masks)
    if init_pose is not None:
        out["init_pose"] = read_init_pose(init_pose)
        out["sources"]["init_pose"] = str(init_pose)
    return out


# ---------------------------------------------------------------- HO-3D specifics


def read_ho3d_meta(path: str | Path) -> dict[str, Any]:
    """One ``meta/<id>.pkl``, validated: arrays of the documented shapes (float64), or a
    :class:`SequenceFormatError` naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "meta", "annotation file not found")
    try:
        with open(path, "rb") as f:
            raw = pickle.load(f, encoding="latin1")
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise _fail(path, "meta", f"unreadable pickle ({e})") from None
    if not isinstance(raw, dict):
        raise _fail(path, "meta", f"expected a dict, got {type(raw).__name__}")
    shapes = {"handPose": (48,), "handBeta": (10,), "handTrans": (3,), "camMat": (3, 3),
              "objRot": (3,), "objTrans": (3,)}
    out: dict[str, Any] = {}
    for key, shape in shapes.items():
        if key not in raw:
            raise _fail(path, key, "missing key")
        out[key] = _array(raw[key], path, key, shape)
    if "objName" not in raw or not isinstance(raw["objName"], str) or not raw["objName"]:
        raise _fail(path, "objName", "missing or not a non-empty string")
    out["objName"] = raw["objName"]
    return out


def _is_annotated(path: Path) -> bool:
    with open(path, "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    return isinstance(raw, dict) and all(raw.get(k) is not None for k in ("handPose", "objRot"))


def rest_root_joint(model: mano.ManoModel, betas: np.ndarray) -> np.ndarray:
    """``J0(β)``, the rest-pose wrist joint for each row of ``betas`` ``(N, S)``, float64."""
    b = np.atleast_2d(np.asarray(betas, np.float64))
    shapedirs = np.asarray(model.shapedirs, np.float64)[..., : b.shape[1]]
    v = np.asarray(model.v_template, np.float64)[None] + np.einsum("vcs,ns->nvc", shapedirs, b)
    return np.einsum("v,nvc->nc", np.asarray(model.J_regressor, np.float64)[0], v)


def opengl_to_opencv_mano(
    model: mano.ManoModel, global_orient: np.ndarray, transl: np.ndarray, betas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Re-express MANO ``(global_orient, transl)`` given in an OpenGL camera in OpenCV's.

    MANO posits ``x = R (x_local − J0) + J0 + t`` with ``J0`` the rest root joint of ``betas``,
    so ``C x = (C R)(x_local − J0) + J0 + [C (J0 + t) − J0]``. Per frame (arrays ``(N, ·)``),
    float64.
    """
    from scipy.spatial.transform import Rotation

    C = OPENGL_TO_OPENCV
    j0 = rest_root_joint(model, betas)
    R = Rotation.from_rotvec(np.atleast_2d(global_orient)).as_matrix()
    go = Rotation.from_matrix(C[None] @ R).as_rotvec()
    t = (np.atleast_2d(transl) + j0) @ C.T - j0
    return go, t


def ho3d_frame_ids(root: str | Path, sequence: str, split: str = "train",
                   annotated_only: bool = True) -> list[str]:
    """Sorted frame stems of a sequence (those with hand and object annotations by default)."""
    meta_dir = Path(root) / split / sequence / "meta"
    if not meta_dir.is_dir():
        raise _fail(meta_dir, "meta", "sequence meta directory not found")
    ids = sorted(p.stem for p in meta_dir.glob("*.pkl"))
    if annotated_only:
        ids = [i for i in ids if _is_annotated(meta_dir / f"{i}.pkl")]
    return ids


def load_ho3d(
    root: str | Path,
    sequence: str,
    ycb_dir: str | Path,
    mano_model: mano.ManoModel | str | Path,
    *,
    split: str = "train",
    frame_ids: list[str] | None = None,
    load_rgb: bool = True,
    load_depth: bool = True,
    use_seg: bool = True,
    detections: str | Path | None = None,
    masks: str | Path | None = None,
    init_pose: str | Path | None = None,
    init_frame: int = 0,
    oracle: str | Iterable[str] | None = None,
    image_size: tuple[int, int] = (480, 640),
) -> Converted:
    """Convert one HO-3D v3 sequence (see the module docstring for every convention).

    Args:
        root: dataset root (holding ``train/`` and ``evaluation/``).
        sequence: sequence name, e.g. ``"ABF10"``.
        ycb_dir: folder holding ``models/<objName>/textured_simple.obj``.
        mano_model: a right-hand :class:`hoijax.mano.ManoModel` or the path of ``MANO_RIGHT.pkl``.
        frame_ids: frame stems to convert (default: all annotated frames, sorted).
        load_rgb / load_depth: read those images when present.
        use_seg: under oracle ``"masks"``, take the masks from ``seg/`` when present (else
            they are rendered from the ground truth).
        detections: ``.npz`` of a hand detector's outputs, one row per converted frame
            (:func:`hoijax.data.read_detections`): keypoints and, unless oracle ``"hand"``,
            the MANO estimate. Required unless oracle has both ``"keypoints"`` and ``"hand"``.
        masks: a segmenter's masks, ``.npz`` or folder of PNGs named by frame id
            (:func:`hoijax.data.read_masks`). Required unless oracle has ``"masks"``.
        init_pose: optional 4×4 object pose at ``init_frame`` (``.txt`` / ``.npy``,
            :func:`hoijax.data.read_init_pose`); without it and without oracle ``"pose"`` the
            tracker initializes the object itself.
        init_frame: index (into the converted frames) of the initial object pose.
        oracle: inputs taken from the ground truth (:func:`hoijax.data.parse_oracle`):
            ``"keypoints"``, ``"hand"``, ``"masks"``, ``"pose"``, a comma-separated list,
            ``"all"`` or None (default: none — every input comes from the files given).
        image_size: ``(H, W)`` used only when no image is read (HO-3D is 480 × 640).

    Raises:
        SequenceFormatError: a file is missing or malformed (naming file, field and frame), or
            an input has neither a file nor its oracle name.
        ValueError: a file given for an input that ``oracle`` also names.
    """
    oracle = parse_oracle(oracle)
    check_input_sources(Path(root) / split / sequence, oracle, detections=detections,
                        masks=masks, init_pose=init_pose)
    model = mano_model if isinstance(mano_model, mano.ManoModel) else mano.load_mano(mano_model)
    seq_dir = Path(root) / split / sequence
    ids = ho3d_frame_ids(root, sequence, split) if frame_ids is None else list(frame_ids)
    if not ids:
        raise _fail(seq_dir / "meta", "meta", "no annotated frame")
    if not 0 <= int(init_frame) < len(ids):
        raise ValueError(f"init_frame {init_frame} out of range for {len(ids)} frames")
    metas = [read_ho3d_meta(seq_dir / "meta" / f"{i}.pkl") for i in ids]
    K = metas[0]["camMat"]
    for i, m in zip(ids, metas):
        if not np.allclose(m["camMat"], K):
            raise _fail(seq_dir / "meta" / f"{i}.pkl", "camMat", "differs from the first frame's")
        if m["objName"] != metas[0]["objName"]:
            raise _fail(seq_dir / "meta" / f"{i}.pkl", "objName",
                        f"{m['objName']!r} differs from the first frame's {metas[0]['objName']!r}")
    obj_name = metas[0]["objName"]
    obj_model = Path(ycb_dir) / "models" / obj_name / "textured_simple.obj"
    obj_verts, obj_faces = read_obj(obj_model)

    stack = lambda k: np.stack([m[k] for m in metas])  # noqa: E731
    betas = stack("handBeta")
    go, transl = opengl_to_opencv_mano(model, stack("handPose")[:, :3], stack("handTrans"), betas)
    gt_params = {"betas": betas, "hand_pose": stack("handPose")[:, 3:], "global_orient": go,
                 "transl": transl}
    from scipy.spatial.transform import Rotation

    C = OPENGL_TO_OPENCV
    T = np.tile(np.eye(4), (len(ids), 1, 1))
    T[:, :3, :3] = C[None] @ Rotation.from_rotvec(stack("objRot")).as_matrix()
    T[:, :3, 3] = stack("objTrans") @ C.T

    rgb = depth = None
    if load_rgb and _find(seq_dir / "rgb", ids[0], (".jpg", ".png")) is not None:
        rgb = np.stack([_read_rgb(_find(seq_dir / "rgb", i, (".jpg", ".png")), seq_dir / "rgb" / i)
                        for i in ids])
        image_size = rgb.shape[1:3]
    if load_depth and _find(seq_dir / "depth", ids[0], (".png",)) is not None:
        depth = np.stack([read_ho3d_depth(seq_dir / "depth" / f"{i}.png") for i in ids])
        if rgb is not None and depth.shape[1:] != tuple(image_size):
            raise _fail(seq_dir / "depth", "depth_m", f"size {depth.shape[1:]} != rgb {image_size}")
        image_size = depth.shape[1:]
    image_size = tuple(int(s) for s in image_size)
    annotated = None
    if "masks" in oracle and use_seg and _find(seq_dir / "seg", ids[0], (".png", ".jpg")):
        segs = [_read_ho3d_seg(_find(seq_dir / "seg", i, (".png", ".jpg")) or seq_dir / "seg" / i,
                               image_size) for i in ids]
        annotated = (np.stack([m[0] for m in segs]), np.stack([m[1] for m in segs]))
    inputs = read_inputs(seq_dir, model, oracle, len(ids), image_size, ids,
                         detections=detections, masks=masks, init_pose=init_pose)
    seq, info = assemble_sequence(
        model=model, K=K, image_size=image_size, gt_params=gt_params, T_cam_obj=T,
        obj_verts=obj_verts, obj_faces=obj_faces, rgb=rgb, depth_m=depth, where=seq_dir,
        oracle=oracle, detections=inputs.get("detections"), masks=inputs.get("masks"),
        annotated_masks=annotated, init_pose=inputs.get("init_pose"), init_frame=init_frame,
        sources=inputs["sources"])
    meta = {"dataset": "HO3D_v3", "split": split, "sequence": sequence, "object": obj_name,
            "object_model": str(obj_model.resolve()), "frame_ids": ids, **info}
    return Converted(seq, ids, meta)


def _read_rgb(path: Path | None, missing: Path) -> np.ndarray:
    if path is None:
        raise _fail(missing, "rgb", "frame image not found")
    img = _read_image(path, "rgb")
    if img.ndim != 3 or img.shape[2] < 3:
        raise _fail(path, "rgb", f"expected an RGB image, got shape {img.shape}")
    return img[..., :3].astype(np.uint8)


def read_ho3d_depth(path: str | Path) -> np.ndarray:
    """HO-3D depth PNG → metres: ``(R + 256·G) · HO3D_DEPTH_SCALE_M`` (toolkit's
    ``read_depth_img``, which reads BGR with OpenCV and uses channels 2 and 1)."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "depth_m", "depth image not found")
    img = _read_image(path, "depth_m")
    if img.ndim != 3 or img.shape[2] < 3:
        raise _fail(path, "depth_m", f"expected a 3-channel depth encoding, got {img.shape}")
    img = img.astype(np.float64)
    return (img[..., 0] + 256.0 * img[..., 1]) * HO3D_DEPTH_SCALE_M


def _read_ho3d_seg(path: Path, image_size) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise _fail(path, "hand_mask", "segmentation image not found")
    img = _read_image(path, "hand_mask")
    if img.ndim != 3 or img.shape[2] < 3:
        raise _fail(path, "hand_mask", f"expected a colour segmentation, got {img.shape}")
    hand = _upsample_nearest(img[..., 2] > 127, image_size, path, "hand_mask")
    obj = _upsample_nearest(img[..., 1] > 127, image_size, path, "object_mask")
    return hand, obj


def convert_ho3d(root, sequence, ycb_dir, mano_model, out_dir, **kwargs) -> Converted:
    """:func:`load_ho3d`, then write the sequence with ``save_sequence`` (provenance in the
    manifest's ``meta``)."""
    from hoijax.data._format import save_sequence

    conv = load_ho3d(root, sequence, ycb_dir, mano_model, **kwargs)
    save_sequence(conv.sequence, out_dir, meta=conv.meta)
    return conv
