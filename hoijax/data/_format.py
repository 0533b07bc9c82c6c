"""The on-disk sequence format: a directory with ``manifest.json``, one ``.npy`` per array and
the object mesh, read back with validation at the edge.

Layout of a sequence directory (format version 1)::

    manifest.json            what is there (see below)
    K.npy valid.npy ...      one .npy per array field, named after the dotted field
                             (``hand_init.betas.npy``, ``gt.T_cam_obj.npy``, ...)
    hand_mask.npy            masks: ``np.packbits`` along the image row (last axis), uint8
    object.ply               canonical object mesh (object frame, metres), any trimesh format
    object_features.npy      per-vertex features (V, C) in the mesh file's vertex order
    gt_object.ply            the ground truth's own object mesh (``gt.obj_mesh``), when given

``manifest.json`` keys:

- ``format``: ``"hoijax-sequence"``; ``format_version``: integer (this library reads 1).
- ``num_frames`` N, ``image_size`` [H, W], ``side`` ``"right"``/``"left"``.
- ``parts``: which optional parts exist: ``depth_m``, ``features``, ``rgb``,
  ``T_cam_obj_init`` (with ``init_frame``), ``gt``, ``gt.onset_frame``,
  ``gt.occlusion_ratio``, ``gt.obj_mesh``, ``mesh_features`` (booleans; a part missing from
  ``parts``, as in files written before it existed, is absent).
- ``mesh``: ``file`` (the mesh file name), ``features_file`` (or null), ``num_vertices``,
  ``num_faces``, ``feature_dim`` (or null).
- ``gt_mesh`` (only with ``gt.obj_mesh``): the same keys for the ground truth's mesh, stored
  as ``gt_<mesh file name>`` (and its features, if any, as ``gt_<stem>_features.npy``).
- ``arrays``: field → ``{"file", "shape", "dtype", "encoding"}``; ``shape``/``dtype`` are the
  in-memory ones; ``encoding`` is ``"raw"`` or ``"packbits"`` (bool masks, packed along the
  last axis, stored shape ``(..., ceil(W / 8))``).
- ``meta``: free-form JSON (e.g. the generator's config), ignored by the loader.

Conventions are those of :class:`hoijax.data.Sequence`. Missing keypoints are stored with
confidence 0 (their coordinates may be NaN on disk; the loader replaces them with 0).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from hoijax.data._errors import (
    EmptyMaskError,
    FrameCountError,
    GeometryError,
    ManifestError,
    MeshError,
    MissingFileError,
    NonFiniteError,
    NonWatertightMeshWarning,
    SequenceFormatError,
    ShapeError,
    VersionError,
)
from hoijax.data._sequence import (
    FORMAT_VERSION,
    GroundTruth,
    HandParams,
    ObjectMesh,
    Sequence,
)

MANIFEST = "manifest.json"
FORMAT_NAME = "hoijax-sequence"
SUPPORTED_VERSIONS = (1,)

# field → (shape template, dtype, part it belongs to or None if required, encoding).
# Symbols: N frames, H W image, Hf Wf C feature map.
_FIELDS: dict[str, tuple[tuple, str, str | None, str]] = {
    "K": ((3, 3), "float32", None, "raw"),
    "valid": (("N",), "bool", None, "raw"),
    "hand_mask": (("N", "H", "W"), "bool", None, "packbits"),
    "object_mask": (("N", "H", "W"), "bool", None, "packbits"),
    "keypoints_px": (("N", 21, 2), "float32", None, "raw"),
    "keypoints_conf": (("N", 21), "float32", None, "raw"),
    "hand_init.betas": (("N", 10), "float32", None, "raw"),
    "hand_init.hand_pose": (("N", 45), "float32", None, "raw"),
    "hand_init.global_orient": (("N", 3), "float32", None, "raw"),
    "hand_init.transl": (("N", 3), "float32", None, "raw"),
    "depth_m": (("N", "H", "W"), "float32", "depth_m", "raw"),
    "features": (("N", "Hf", "Wf", "C"), "float32", "features", "raw"),
    "rgb": (("N", "H", "W", 3), "uint8", "rgb", "raw"),
    "T_cam_obj_init": ((4, 4), "float32", "T_cam_obj_init", "raw"),
    "init_frame": ((), "int32", "T_cam_obj_init", "raw"),
    "gt.hand.betas": (("N", 10), "float32", "gt", "raw"),
    "gt.hand.hand_pose": (("N", 45), "float32", "gt", "raw"),
    "gt.hand.global_orient": (("N", 3), "float32", "gt", "raw"),
    "gt.hand.transl": (("N", 3), "float32", "gt", "raw"),
    "gt.joints_cam": (("N", 21, 3), "float32", "gt", "raw"),
    "gt.verts_cam": (("N", 778, 3), "float32", "gt", "raw"),
    "gt.T_cam_obj": (("N", 4, 4), "float32", "gt", "raw"),
    "gt.obj_scale": ((3,), "float32", "gt", "raw"),
    "gt.onset_frame": ((), "int32", "gt.onset_frame", "raw"),
    "gt.occlusion_ratio": (("N",), "float32", "gt.occlusion_ratio", "raw"),
}
_PARTS = ("depth_m", "features", "rgb", "T_cam_obj_init", "gt", "gt.onset_frame",
          "gt.occlusion_ratio", "gt.obj_mesh", "mesh_features")


def _get(seq: Sequence, field: str):
    obj: Any = seq
    for name in field.split("."):
        if obj is None:
            return None
        obj = getattr(obj, name)
    return obj


def _packed_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*shape[:-1], math.ceil(shape[-1] / 8))


def _write_mesh(directory: Path, mesh: ObjectMesh, mesh_file: str) -> dict:
    """Write a mesh (real faces only) and its per-vertex features; returns its manifest entry."""
    import trimesh

    face_valid = np.asarray(mesh.face_valid, bool)
    verts = np.asarray(mesh.vertices, np.float64)
    faces = np.asarray(mesh.faces, np.int64)[face_valid]
    suffix = Path(mesh_file).suffix.lower()
    tm = trimesh.Trimesh(verts, faces, process=False)
    # Text formats: enough decimals that float32 metres survive the round trip exactly.
    tm.export(directory / mesh_file, **({"digits": 12} if suffix == ".obj" else {}))
    features_file = None
    feature_dim = None
    if mesh.vertex_features is not None:
        features_file = f"{Path(mesh_file).stem}_features.npy"
        vf = np.asarray(mesh.vertex_features, np.float32)
        np.save(directory / features_file, vf, allow_pickle=False)
        feature_dim = int(vf.shape[-1])
    return {"file": mesh_file, "features_file": features_file,
            "num_vertices": int(verts.shape[0]), "num_faces": int(faces.shape[0]),
            "feature_dim": feature_dim}


# --------------------------------------------------------------------------------------- save


def save_sequence(seq: Sequence, directory: str | Path, *, mesh_file: str = "object.ply",
                  meta: dict | None = None) -> Path:
    """Write one (unbatched) sequence as a directory in the format above; returns its path.

    ``mesh_file`` is the object mesh's file name; its suffix picks the format (``.ply``,
    ``.obj``, ``.glb``, ... anything trimesh exports); the ground truth's own mesh
    (``gt.obj_mesh``), when given, goes to ``gt_<mesh_file>``. Padded faces (``face_valid``
    False) are not written. ``meta`` goes into the manifest unchanged (must be
    JSON-serialisable). Existing files of the same names are overwritten.
    """
    directory = Path(directory)
    if np.ndim(seq.valid) != 1:
        raise ValueError("save_sequence writes one sequence; got a batch (valid has shape "
                         f"{np.shape(seq.valid)}); save each element separately")
    directory.mkdir(parents=True, exist_ok=True)
    n = int(np.shape(seq.valid)[0])
    h, w = seq.image_size
    parts = {p: False for p in _PARTS}
    parts["depth_m"] = seq.depth_m is not None
    parts["features"] = seq.features is not None
    parts["rgb"] = seq.rgb is not None
    if (seq.T_cam_obj_init is None) != (seq.init_frame is None):
        raise ValueError("T_cam_obj_init and init_frame must be given together")
    parts["T_cam_obj_init"] = seq.T_cam_obj_init is not None
    parts["gt"] = seq.gt is not None
    parts["gt.onset_frame"] = seq.gt is not None and seq.gt.onset_frame is not None
    parts["gt.occlusion_ratio"] = seq.gt is not None and seq.gt.occlusion_ratio is not None
    parts["gt.obj_mesh"] = seq.gt is not None and seq.gt.obj_mesh is not None
    parts["mesh_features"] = seq.mesh.vertex_features is not None

    arrays = {}
    for field, (_, dtype, part, encoding) in _FIELDS.items():
        if part is not None and not parts[part]:
            continue
        value = np.asarray(_get(seq, field)).astype(dtype)
        stored = np.packbits(value, axis=-1) if encoding == "packbits" else value
        file = f"{field}.npy"
        np.save(directory / file, stored, allow_pickle=False)
        arrays[field] = {"file": file, "shape": list(value.shape), "dtype": dtype,
                         "encoding": encoding}

    if Path(mesh_file).suffix.lower() == ".stl":
        raise ValueError("STL stores no shared vertices (per-vertex features and "
                         "watertightness are lost); use .ply, .obj, .glb or .off")
    mesh_info = _write_mesh(directory, seq.mesh, mesh_file)
    gt_mesh_info = None
    if parts["gt.obj_mesh"]:
        gt_mesh_info = _write_mesh(directory, seq.gt.obj_mesh, f"gt_{Path(mesh_file).name}")

    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "num_frames": n,
        "image_size": [int(h), int(w)],
        "side": seq.side,
        "feature_size": (list(np.shape(seq.features)[1:]) if parts["features"] else None),
        "parts": parts,
        "mesh": mesh_info,
        **({"gt_mesh": gt_mesh_info} if gt_mesh_info is not None else {}),
        "arrays": arrays,
        "meta": meta or {},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return directory


# --------------------------------------------------------------------------------------- load


def read_manifest(directory: str | Path) -> dict:
    """The parsed and checked ``manifest.json`` of a sequence directory."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise MissingFileError(path, "manifest", "file not found (not a sequence directory?)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(path, "manifest", f"not valid JSON: {e}") from e
    if not isinstance(manifest, dict):
        raise ManifestError(path, "manifest", "top level must be a JSON object")
    if manifest.get("format") != FORMAT_NAME:
        raise ManifestError(path, "format", f"expected '{FORMAT_NAME}', got "
                            f"{manifest.get('format')!r}")
    version = manifest.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise VersionError(path, "format_version", f"unknown format version {version!r}; this "
                           f"hoijax reads {list(SUPPORTED_VERSIONS)}")
    for key, kind in (("num_frames", int), ("image_size", list), ("side", str),
                      ("parts", dict), ("mesh", dict), ("arrays", dict)):
        if not isinstance(manifest.get(key), kind):
            raise ManifestError(path, key, f"missing or not a {kind.__name__}")
    if manifest["side"] not in ("right", "left"):
        raise ManifestError(path, "side", f"must be 'right' or 'left', got {manifest['side']!r}")
    if manifest["num_frames"] < 1:
        raise ManifestError(path, "num_frames", "must be >= 1")
    if len(manifest["image_size"]) != 2:
        raise ManifestError(path, "image_size", "must be [H, W]")
    if not isinstance(manifest["mesh"].get("file"), str):
        raise ManifestError(path, "mesh.file", "missing or not a string")
    if manifest["parts"].get("gt.obj_mesh") and not (
            isinstance(manifest.get("gt_mesh"), dict)
            and isinstance(manifest["gt_mesh"].get("file"), str)):
        raise ManifestError(path, "gt_mesh.file", "parts says gt.obj_mesh is present but "
                            "'gt_mesh' has no file name")
    return manifest


def _expected_shape(template: tuple, sizes: dict[str, int]) -> tuple[int, ...]:
    return tuple(sizes[d] if isinstance(d, str) else d for d in template)


def _load_array(directory: Path, manifest: dict, field: str, sizes: dict[str, int]):
    template, dtype, _, encoding = _FIELDS[field]
    entry = manifest["arrays"].get(field)
    manifest_path = directory / MANIFEST
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise ManifestError(manifest_path, field, "listed as present by 'parts' but has no "
                            "entry in 'arrays'")
    path = directory / entry["file"]
    if not path.is_file():
        raise MissingFileError(path, field, "file not found")
    try:
        stored = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ShapeError(path, field, f"not a readable .npy file: {e}") from e
    if "Hf" in template and "Hf" not in sizes:
        fs = manifest.get("feature_size")
        if not (isinstance(fs, list) and len(fs) == 3):
            raise ManifestError(manifest_path, "feature_size", "must be [Hf, Wf, C] when "
                                "features are present")
        sizes = {**sizes, "Hf": fs[0], "Wf": fs[1], "C": fs[2]}
    expected = _expected_shape(template, sizes)
    if encoding == "packbits":
        expected_stored = _packed_shape(expected)
        if stored.dtype != np.uint8:
            raise ShapeError(path, field, f"packed mask must be uint8, got {stored.dtype}")
    else:
        expected_stored = expected
    shape = tuple(stored.shape)
    frame_axis = 0 if template and template[0] == "N" else None
    if len(shape) != len(expected_stored) or any(
            a != b for i, (a, b) in enumerate(zip(shape, expected_stored)) if i != frame_axis):
        what = "packed " if encoding == "packbits" else ""
        raise ShapeError(path, field, f"{what}shape {shape}, expected {expected_stored} "
                         f"(template {template}, sizes {sizes})")
    if frame_axis is not None and shape[0] != sizes["N"]:
        raise FrameCountError(path, field, f"has {shape[0]} frames but the manifest (and the "
                              f"other arrays) have num_frames = {sizes['N']}")
    if encoding == "packbits":
        value = np.unpackbits(stored, axis=-1, count=expected[-1]).astype(bool)
    else:
        kind = np.dtype(dtype).kind
        if kind == "f" and stored.dtype.kind not in "fiu":
            raise ShapeError(path, field, f"dtype {stored.dtype}, expected a float array")
        if kind in "iu" and stored.dtype.kind not in "iu":
            raise ShapeError(path, field, f"dtype {stored.dtype}, expected an integer array")
        if kind == "b" and stored.dtype.kind not in "bu":
            raise ShapeError(path, field, f"dtype {stored.dtype}, expected a bool array")
        value = stored.astype(dtype)
    if value.dtype.kind == "f" and field != "keypoints_px" and not np.all(np.isfinite(value)):
        bad = int(np.sum(~np.isfinite(value)))
        raise NonFiniteError(path, field, f"{bad} NaN/inf values")
    return value, path


def load_trimesh(path: str | Path):
    """A mesh file as one ``trimesh.Trimesh`` in the file's vertex order (no merging), with its
    visual (texture, material or colours). Raises :class:`MissingFileError` or
    :class:`MeshError` (unreadable, or no triangles), naming the file."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "mesh", "mesh file not found")
    try:
        with warnings.catch_warnings():  # trimesh's texture bookkeeping warns on NaN medians
            warnings.simplefilter("ignore", RuntimeWarning)
            mesh = trimesh.load(path, force="mesh", process=False, maintain_order=True)
    except Exception as e:  # trimesh raises many kinds for corrupt files
        raise MeshError(path, "mesh", f"unreadable mesh file: {type(e).__name__}: {e}") from e
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise MeshError(path, "mesh", "no triangles in the file")
    return mesh


def load_object_mesh(path: str | Path, features_path: str | Path | None = None, *,
                     require_watertight: bool = False) -> ObjectMesh:
    """Read a canonical object mesh (any trimesh-readable file) and its per-vertex features.

    Vertex order is the file's (no merging or reordering), so ``features_path`` (a ``.npy`` of
    shape (V, C)) lines up with it. Raises :class:`MeshError` for a missing, unreadable or
    empty mesh; a mesh that is not watertight gives a :class:`NonWatertightMeshWarning`, or a
    :class:`MeshError` with ``require_watertight=True`` (the SDF needs a closed surface).
    """
    path = Path(path)
    mesh = load_trimesh(path)
    verts = np.asarray(mesh.vertices, np.float32)
    faces = np.asarray(mesh.faces, np.int32)
    if not np.all(np.isfinite(verts)):
        raise MeshError(path, "mesh", "non-finite vertex coordinates")
    if not mesh.is_watertight:
        detail = "mesh is not watertight (its signed distance field is unreliable)"
        if require_watertight:
            raise MeshError(path, "mesh", detail)
        warnings.warn(f"{path}: {detail}", NonWatertightMeshWarning, stacklevel=2)
    features = None
    if features_path is not None:
        features_path = Path(features_path)
        if not features_path.is_file():
            raise MissingFileError(features_path, "mesh.vertex_features", "file not found")
        try:
            features = np.load(features_path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ShapeError(features_path, "mesh.vertex_features",
                             f"not a readable .npy file: {e}") from e
        if features.ndim != 2 or features.shape[0] != verts.shape[0]:
            raise ShapeError(features_path, "mesh.vertex_features",
                             f"shape {features.shape}, expected ({verts.shape[0]}, C) to match "
                             f"the {verts.shape[0]} vertices of {path.name}")
        features = features.astype(np.float32)
        if not np.all(np.isfinite(features)):
            raise NonFiniteError(features_path, "mesh.vertex_features", "NaN/inf values")
    return ObjectMesh(
        vertices=jnp.asarray(verts), faces=jnp.asarray(faces),
        face_valid=jnp.ones((faces.shape[0],), bool),
        vertex_features=None if features is None else jnp.asarray(features))


POSE_TOLERANCE = 1e-2
"""Largest ``|RᵀR − I|`` entry (and distance of the last row from ``0 0 0 1``) accepted in a
stored pose; float32 round trips of converted datasets sit near 1e-6."""


def _check_geometry(values: dict[str, np.ndarray], paths: dict[str, Path]) -> None:
    """Poses must be rigid transforms with proper rotations (det +1) and K a pinhole matrix;
    gt poses are checked on the real frames only (padding may hold anything)."""
    K = values["K"]
    if not (K[0, 0] > 0 and K[1, 1] > 0 and np.allclose(K[2], [0, 0, 1], atol=1e-6)):
        raise GeometryError(paths["K"], "K", "not a pinhole intrinsics matrix (need fx, fy > 0 "
                            f"and last row 0 0 1); got {np.round(K, 4).tolist()}")
    for field in ("T_cam_obj_init", "gt.T_cam_obj"):
        if field not in values:
            continue
        T = values[field].reshape(-1, 4, 4)
        frames = np.arange(len(T))
        if field.startswith("gt."):
            real = values["valid"].reshape(-1)
            T, frames = T[real], frames[real]
        R = T[:, :3, :3].astype(np.float64)
        ortho = np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(3)).max(axis=(-1, -2))
        bottom = np.abs(T[:, 3] - np.array([0, 0, 0, 1])).max(axis=-1)
        bad = (ortho > POSE_TOLERANCE) | (np.linalg.det(R) < 0) | (bottom > POSE_TOLERANCE)
        if np.any(bad):
            i = int(np.argmax(bad))
            where = f" (frame {frames[i]})" if values[field].ndim == 3 else ""
            raise GeometryError(paths[field], field, f"not a rigid transform{where}: rotation "
                                f"block off orthonormal by {ortho[i]:.3g}, det "
                                f"{np.linalg.det(R[i]):.3g}, last row {T[i, 3].tolist()} "
                                "(a mirrored or scaled pose? put the object scale in obj_scale)")


def load_sequence(directory: str | Path, *, require_watertight: bool = False,
                  check_masks: bool = True) -> Sequence:
    """Read and validate a sequence directory written by :func:`save_sequence` (or by a
    converter that follows the format).

    Checks, each raising a :class:`SequenceFormatError` subclass that names the file and the
    field: manifest present, valid and of a known ``format_version`` (:class:`MissingFileError`,
    :class:`ManifestError`, :class:`VersionError`); every listed file present
    (:class:`MissingFileError`); every shape as the format says given the manifest's sizes
    (:class:`ShapeError`) and every frame axis of length ``num_frames``
    (:class:`FrameCountError`); no NaN/inf in float arrays, except keypoints whose confidence
    is 0, which are "missing" and replaced by 0 (:class:`NonFiniteError`); ``K`` a pinhole
    matrix and every stored pose a rigid transform with a proper rotation (:class:`GeometryError`;
    ``gt.T_cam_obj`` on the real frames, within :data:`POSE_TOLERANCE`); the mesh readable
    (:class:`MeshError`; non-watertight: warning, or error with ``require_watertight``).

    Empty-mask rule (:class:`EmptyMaskError`, with ``check_masks``): over the real frames
    (``valid``), the object mask must be non-empty in at least one frame and so must the hand
    mask. Empty masks in *some* frames are legitimate (full occlusion, hand out of view).
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    n = manifest["num_frames"]
    h, w = manifest["image_size"]
    sizes = {"N": n, "H": h, "W": w}
    parts = manifest["parts"]

    def present(part):
        return part is None or bool(parts.get(part, False))

    values, paths = {}, {}
    for field, (_, _, part, _) in _FIELDS.items():
        if present(part):
            values[field], paths[field] = _load_array(directory, manifest, field, sizes)

    kp, conf = values["keypoints_px"], values["keypoints_conf"]
    finite = np.all(np.isfinite(kp), axis=-1)
    if not np.all(np.isfinite(conf)):
        raise NonFiniteError(paths["keypoints_conf"], "keypoints_conf", "NaN/inf confidences")
    if np.any(~finite & (conf > 0)):
        f, j = np.argwhere(~finite & (conf > 0))[0]
        raise NonFiniteError(paths["keypoints_px"], "keypoints_px",
                             f"NaN/inf keypoint with confidence > 0 (frame {f}, joint {j}); "
                             "mark missing keypoints with confidence 0")
    values["keypoints_px"] = np.where(finite[..., None], kp, 0.0).astype(np.float32)

    _check_geometry(values, paths)

    if check_masks:
        valid = values["valid"]
        for field in ("object_mask", "hand_mask"):
            if not np.any(values[field][valid]):
                raise EmptyMaskError(paths[field], field, "empty in every real frame (nothing "
                                     "to track)")

    mesh_info = manifest["mesh"]
    feat_file = mesh_info.get("features_file") if parts.get("mesh_features") else None
    mesh = load_object_mesh(directory / mesh_info["file"],
                            None if feat_file is None else directory / feat_file,
                            require_watertight=require_watertight)
    gt_mesh = None
    if present("gt") and parts.get("gt.obj_mesh"):
        gt_info = manifest["gt_mesh"]
        gt_feat = gt_info.get("features_file")
        with warnings.catch_warnings():  # only metrics use it: no SDF, no need to be closed
            warnings.simplefilter("ignore", NonWatertightMeshWarning)
            gt_mesh = load_object_mesh(directory / gt_info["file"],
                                       None if gt_feat is None else directory / gt_feat)

    j = {k: jnp.asarray(v) for k, v in values.items()}

    def hand(prefix):
        return HandParams(betas=j[f"{prefix}.betas"], hand_pose=j[f"{prefix}.hand_pose"],
                          global_orient=j[f"{prefix}.global_orient"],
                          transl=j[f"{prefix}.transl"])

    gt = None
    if present("gt"):
        gt = GroundTruth(hand=hand("gt.hand"), joints_cam=j["gt.joints_cam"],
                         verts_cam=j["gt.verts_cam"], T_cam_obj=j["gt.T_cam_obj"],
                         obj_scale=j["gt.obj_scale"], onset_frame=j.get("gt.onset_frame"),
                         occlusion_ratio=j.get("gt.occlusion_ratio"), obj_mesh=gt_mesh)
    return Sequence(
        K=j["K"], valid=j["valid"], hand_mask=j["hand_mask"], object_mask=j["object_mask"],
        keypoints_px=j["keypoints_px"], keypoints_conf=j["keypoints_conf"],
        hand_init=hand("hand_init"), mesh=mesh, depth_m=j.get("depth_m"),
        features=j.get("features"), rgb=j.get("rgb"), T_cam_obj_init=j.get("T_cam_obj_init"),
        init_frame=j.get("init_frame"), gt=gt, side=manifest["side"])


__all__ = ["SequenceFormatError", "load_object_mesh", "load_sequence", "read_manifest",
           "save_sequence"]
