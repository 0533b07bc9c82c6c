"""Batches of sequences: padding to a common frame count and mesh size, and loading many
directories where a bad one costs only itself."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from hoijax.data._errors import SequenceFormatError
from hoijax.data._format import load_sequence
from hoijax.data._sequence import GroundTruth, HandParams, ObjectMesh, Sequence

_OPTIONAL = ("depth_m", "features", "rgb", "T_cam_obj_init", "init_frame", "gt",
             "gt.onset_frame", "gt.occlusion_ratio", "mesh.vertex_features")


def _pad_frames(x, n: int, mode: Literal["zero", "edge"]):
    x = np.asarray(x)
    pad = [(0, n - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
    if mode == "edge" and x.shape[0] > 0:
        return jnp.asarray(np.pad(x, pad, mode="edge"))
    return jnp.asarray(np.pad(x, pad))


def _has(seq: Sequence, part: str) -> bool:
    obj = seq
    for name in part.split("."):
        if obj is None:
            return False
        obj = getattr(obj, name)
    return obj is not None


def _pad_hand(h: HandParams, n: int) -> HandParams:
    # Edge padding keeps padded frames valid MANO inputs (no zero-size hand, no NaN).
    return HandParams(*(_pad_frames(getattr(h, f), n, "edge")
                        for f in ("betas", "hand_pose", "global_orient", "transl")))


def _pad_mesh(m: ObjectMesh, v: int, f: int, features: bool) -> ObjectMesh:
    mv, mf = np.shape(m.vertices)[0], np.shape(m.faces)[0]
    vf = None
    if features:
        vf = jnp.asarray(np.pad(np.asarray(m.vertex_features), [(0, v - mv), (0, 0)]))
    return ObjectMesh(
        vertices=jnp.asarray(np.pad(np.asarray(m.vertices), [(0, v - mv), (0, 0)])),
        faces=jnp.asarray(np.pad(np.asarray(m.faces, np.int32), [(0, f - mf), (0, 0)])),
        face_valid=jnp.asarray(np.pad(np.asarray(m.face_valid, bool), (0, f - mf))),
        vertex_features=vf)


def _gt_mesh(seq: Sequence) -> ObjectMesh:
    """The ground truth's object mesh (``gt.obj_mesh``, or ``mesh`` where that is None)."""
    return seq.mesh if seq.gt.obj_mesh is None else seq.gt.obj_mesh


def _pad_one(seq: Sequence, n: int, v: int, f: int, keep: set[str],
             gt_vf: tuple[int, int] | None) -> Sequence:
    mesh = _pad_mesh(seq.mesh, v, f, "mesh.vertex_features" in keep)
    gt = None
    if "gt" in keep:
        g = seq.gt
        gt = GroundTruth(
            hand=_pad_hand(g.hand, n), joints_cam=_pad_frames(g.joints_cam, n, "edge"),
            verts_cam=_pad_frames(g.verts_cam, n, "edge"),
            T_cam_obj=_pad_frames(g.T_cam_obj, n, "edge"), obj_scale=jnp.asarray(g.obj_scale),
            onset_frame=(jnp.asarray(g.onset_frame, jnp.int32) if "gt.onset_frame" in keep
                         else None),
            occlusion_ratio=(_pad_frames(g.occlusion_ratio, n, "zero")
                             if "gt.occlusion_ratio" in keep else None),
            obj_mesh=None if gt_vf is None else _pad_mesh(_gt_mesh(seq), *gt_vf, False))
    with_init = "T_cam_obj_init" in keep and "init_frame" in keep
    return Sequence(
        K=jnp.asarray(seq.K), valid=_pad_frames(np.asarray(seq.valid, bool), n, "zero"),
        hand_mask=_pad_frames(seq.hand_mask, n, "zero"),
        object_mask=_pad_frames(seq.object_mask, n, "zero"),
        keypoints_px=_pad_frames(seq.keypoints_px, n, "zero"),
        keypoints_conf=_pad_frames(seq.keypoints_conf, n, "zero"),
        hand_init=_pad_hand(seq.hand_init, n), mesh=mesh,
        depth_m=_pad_frames(seq.depth_m, n, "zero") if "depth_m" in keep else None,
        features=_pad_frames(seq.features, n, "zero") if "features" in keep else None,
        rgb=_pad_frames(seq.rgb, n, "zero") if "rgb" in keep else None,
        T_cam_obj_init=jnp.asarray(seq.T_cam_obj_init) if with_init else None,
        init_frame=jnp.asarray(seq.init_frame, jnp.int32) if with_init else None,
        gt=gt, side=seq.side)


def _incompatibility(s: Sequence, ref: Sequence) -> str | None:
    """Why ``s`` cannot join a batch with ``ref`` (None if it can)."""
    if s.image_size != ref.image_size:
        return f"image size {s.image_size} vs {ref.image_size} (a batch needs one image size)"
    if s.side != ref.side:
        return (f"{s.side} hand vs {ref.side} hand (a batch holds one side: flip left hands or "
                "batch them apart)")
    if s.features is not None and ref.features is not None and (
            np.shape(s.features)[1:] != np.shape(ref.features)[1:]):
        return f"feature maps {np.shape(s.features)[1:]} vs {np.shape(ref.features)[1:]}"
    a, b = s.mesh.vertex_features, ref.mesh.vertex_features
    if a is not None and b is not None and np.shape(a)[-1] != np.shape(b)[-1]:
        return f"mesh feature channels {np.shape(a)[-1]} vs {np.shape(b)[-1]}"
    return None


def stack_sequences(seqs: list[Sequence], *,
                    optional: Literal["error", "drop"] = "error",
                    num_frames: int | None = None,
                    mesh_size: tuple[int, int] | None = None) -> Sequence:
    """Stack unbatched sequences into one with a leading batch axis ``B``.

    Frames are padded to the longest sequence (or ``num_frames``): ``valid`` is False there,
    meshes to the largest (or ``mesh_size`` = (vertices, faces)),
    masks/keypoints/confidences/depth/features/rgb are 0, MANO parameters and poses repeat the
    last real frame (so padded frames stay valid inputs). Meshes are padded to the largest
    vertex and face counts: padded vertices at the origin (features 0), padded faces
    ``(0, 0, 0)`` with ``face_valid`` False, which the rasterizer culls (repeated indices).

    All sequences must share the image size, the feature-map size and the hand side
    (``ValueError`` otherwise). An optional part present in some sequences but not others is
    an error, or with ``optional="drop"`` is dropped from all of them (with a warning).
    The exception is the ground truth's own mesh ``gt.obj_mesh``: None means "the same as
    ``mesh``", so when some sequences have one, the others get their ``mesh`` in its place;
    it is padded like ``mesh`` (to its own largest sizes) and loses its vertex features (no
    metric uses them).
    """
    if not seqs:
        raise ValueError("stack_sequences needs at least one sequence")
    for i, s in enumerate(seqs):
        if np.ndim(s.valid) != 1:
            raise ValueError(f"sequence {i} is already batched (valid has shape "
                             f"{np.shape(s.valid)})")
    ref = seqs[0]
    for i, s in enumerate(seqs[1:], 1):
        reason = _incompatibility(s, ref)
        if reason is not None:
            raise ValueError(f"sequence {i} does not fit sequence 0: {reason}")
    keep = set()
    for part in _OPTIONAL:
        have = [_has(s, part) for s in seqs]
        if all(have):
            keep.add(part)
        elif any(have):
            missing = [i for i, h in enumerate(have) if not h]
            if optional == "error":
                raise ValueError(f"optional part '{part}' is missing from sequences {missing} "
                                 "but present in others (use optional='drop' to drop it)")
            warnings.warn(f"dropping optional part '{part}' from the batch: missing from "
                          f"sequences {missing}", stacklevel=2)
    n = max(int(np.shape(s.valid)[0]) for s in seqs)
    if num_frames is not None:
        if num_frames < n:
            raise ValueError(f"num_frames={num_frames} is shorter than the longest sequence "
                             f"({n} frames)")
        n = num_frames
    v = max(int(np.shape(s.mesh.vertices)[0]) for s in seqs)
    f = max(int(np.shape(s.mesh.faces)[0]) for s in seqs)
    if mesh_size is not None:
        if mesh_size[0] < v or mesh_size[1] < f:
            raise ValueError(f"mesh_size={tuple(mesh_size)} is smaller than the largest mesh "
                             f"({v} vertices, {f} faces)")
        v, f = int(mesh_size[0]), int(mesh_size[1])
    gt_vf = None
    if "gt" in keep and any(s.gt.obj_mesh is not None for s in seqs):
        gt_vf = (max(int(np.shape(_gt_mesh(s).vertices)[0]) for s in seqs),
                 max(int(np.shape(_gt_mesh(s).faces)[0]) for s in seqs))
    padded = [_pad_one(s, n, v, f, keep, gt_vf) for s in seqs]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *padded)


def load_batch(dirs: Iterable[str | Path], *, optional: Literal["error", "drop"] = "drop",
               **load_kwargs) -> tuple[Sequence | None, list[str], list[tuple[str, Exception]]]:
    """Load and stack many sequence directories; bad input loses nothing else.

    Returns ``(batch, names, errors)``: the stacked good sequences (None if none loaded),
    their names (directory names, in batch order) and ``(name, exception)`` for each directory
    that failed, whether it failed to load (:class:`SequenceFormatError`) or did not fit the
    batch (image size, side or feature sizes different from the first good sequence's).
    """
    seqs, names, errors = [], [], []
    for d in dirs:
        d = Path(d)
        try:
            s = load_sequence(d, **load_kwargs)
        except SequenceFormatError as e:
            errors.append((d.name, e))
            continue
        reason = _incompatibility(s, seqs[0]) if seqs else None
        if reason is not None:
            errors.append((d.name, ValueError(f"{d}: does not fit the batch: {reason}")))
            continue
        seqs.append(s)
        names.append(d.name)
    if not seqs:
        return None, names, errors
    return stack_sequences(seqs, optional=optional), names, errors


__all__ = ["load_batch", "stack_sequences"]
