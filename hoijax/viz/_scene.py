"""What the viewer and the report show of one tracked sequence, as plain NumPy arrays.

A :class:`Scene` is computed once from a result, its sequence and the MANO model (hand and
object per frame, the object's signed distance at every hand vertex, errors against the ground
truth for every frame, the step-2 loss terms) and saved as ``scene.npz`` next to
``result.npz``, so ``hoijax view`` opens a 1 000-frame run without JAX, MANO or the sequence.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

SCENE_FILE = "scene.npz"
CONTACT_M = 0.005
"""A hand vertex within this distance of the object surface (outside it) is in contact."""
_IMAGE_BUDGET_BYTES = 48 * 2**20
"""Frames stored in scene.npz are downsampled to keep them under this size in memory."""


@dataclasses.dataclass
class Scene:
    """One tracked sequence, ready to draw. Camera frame (OpenCV), metres; ``N`` frames."""

    name: str
    K: np.ndarray
    """(3, 3) intrinsics of the full-size image, pixels."""
    image_size: tuple[int, int]
    """(H, W) of the full-size image."""
    processed: np.ndarray
    """(N,) frames the optimizer ran on."""
    anchor: int
    """Frame the tracking started from, both ways."""
    hand_verts: np.ndarray
    """(N, 778, 3) tracked hand vertices."""
    hand_faces: np.ndarray
    """(F_h, 3) MANO triangles."""
    hand_sdf_m: np.ndarray
    """(N, 778) signed distance of each tracked hand vertex to the tracked object, metres
    (negative: inside, i.e. penetrating)."""
    obj_verts: np.ndarray
    """(V, 3) canonical object mesh vertices (unscaled)."""
    obj_faces: np.ndarray
    """(F_o, 3) object triangles."""
    obj_scale: np.ndarray
    """(3,) tracked anisotropic object scale."""
    T_cam_obj: np.ndarray
    """(N, 4, 4) tracked object pose."""
    terms: np.ndarray
    """(N, T) step-2 loss terms at the end of each processed frame (0 elsewhere)."""
    term_names: tuple[str, ...]
    errors: dict[str, np.ndarray]
    """Per-frame errors against the ground truth on every frame (processed and interpolated):
    ``rot_err_deg``, ``trans_err_mm`` (object), ``hand_mm`` (mean vertex distance); empty
    without ground truth."""
    images: np.ndarray | None = None
    """(N, h, w, 3) uint8 frames (possibly downsampled), or None."""
    gt_hand_verts: np.ndarray | None = None
    """(N, 778, 3) true hand vertices, or None."""
    gt_T_cam_obj: np.ndarray | None = None
    """(N, 4, 4) true object pose, or None."""
    gt_obj_scale: np.ndarray | None = None
    """(3,) true object scale, or None."""

    @property
    def num_frames(self) -> int:
        return int(self.T_cam_obj.shape[0])

    def obj_verts_at(self, f: int, gt: bool = False) -> np.ndarray:
        """(V, 3) camera-frame object vertices in frame ``f`` (tracked, or true)."""
        T = (self.gt_T_cam_obj if gt else self.T_cam_obj)[f]
        s = self.gt_obj_scale if gt else self.obj_scale
        return (self.obj_verts * s) @ T[:3, :3].T + T[:3, 3]


def frame_labels(processed: np.ndarray) -> list[str]:
    """How each frame's pose came about: ``processed``, ``interpolated a–b`` (between the
    processed frames a and b), or ``held from k``: before the first (after the last) processed
    frame the tracker holds the nearest processed frame's object pose and its correction of the
    hand translation."""
    done = np.flatnonzero(np.asarray(processed))
    labels = []
    for f in range(len(processed)):
        if processed[f] or done.size == 0:
            labels.append("processed" if processed[f] else "not tracked")
            continue
        lo, hi = done[done < f], done[done > f]
        if lo.size and hi.size:
            labels.append(f"interpolated {lo[-1]}–{hi[0]}")
        else:
            labels.append(f"held from {hi[0] if hi.size else lo[-1]}")
    return labels


def rotation_error_deg(R_a: np.ndarray, R_b: np.ndarray) -> np.ndarray:
    """Geodesic angle between rotations (..., 3, 3), degrees."""
    c = (np.einsum("...ij,...ij->...", R_a, R_b) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def _frame_errors(T, gt_T, hand, gt_hand) -> dict[str, np.ndarray]:
    return {
        "rot_err_deg": rotation_error_deg(T[:, :3, :3], gt_T[:, :3, :3]),
        "trans_err_mm": 1000.0 * np.linalg.norm(T[:, :3, 3] - gt_T[:, :3, 3], axis=-1),
        "hand_mm": 1000.0 * np.linalg.norm(hand - gt_hand, axis=-1).mean(-1),
    }


def _hand_sdf(verts_obj, faces, obj_scale, T_cam_obj, hand_verts) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    from hoijax import sdf

    grid = sdf.sdf_grid_from_mesh(verts_obj, faces, resolution=32)

    def one(T, p):
        return sdf.query_sdf_scaled(grid, (p - T[:3, 3]) @ T[:3, :3], obj_scale)

    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(T_cam_obj, jnp.float32),
                                             jnp.asarray(hand_verts, jnp.float32)))


def _downsampled(images: np.ndarray) -> np.ndarray:
    step = int(np.ceil(np.sqrt(images.nbytes / _IMAGE_BUDGET_BYTES)))
    return np.ascontiguousarray(images[:, ::step, ::step]) if step > 1 else images


def scene_from(name: str, seq, result, model, images: np.ndarray | None = None) -> Scene:
    """The :class:`Scene` of ``result`` (one unbatched :class:`hoijax.tracking.TrackResult`)
    tracked on ``seq`` with the MANO ``model``; ``images``: (N, H, W, 3) uint8 frames to show
    (default: the sequence's RGB, if it has any)."""
    from hoijax.tracking import STEP_TERMS, hand_vertices

    n = int(np.sum(np.asarray(seq.valid)))
    keep = np.asarray(seq.mesh.face_valid)
    faces_o = np.asarray(seq.mesh.faces)[keep]
    used = np.unique(faces_o)
    remap = np.full(int(np.asarray(seq.mesh.vertices).shape[0]), -1)
    remap[used] = np.arange(used.size)
    verts_o = np.asarray(seq.mesh.vertices, np.float32)[used]
    faces_o = remap[faces_o].astype(np.int32)
    hand = np.asarray(hand_vertices(result, seq.hand_init, model), np.float32)[:n]
    T = np.asarray(result.T_cam_obj, np.float64)[:n]
    scale = np.asarray(result.obj_scale, np.float32)
    if images is None and seq.rgb is not None:
        images = np.asarray(seq.rgb)[:n]
    scene = Scene(
        name=name, K=np.asarray(seq.K, np.float64), image_size=tuple(seq.image_size),
        processed=np.asarray(result.processed)[:n].astype(bool), anchor=int(result.anchor),
        hand_verts=hand, hand_faces=np.asarray(model.faces, np.int32),
        hand_sdf_m=_hand_sdf(verts_o, faces_o, scale, T, hand).astype(np.float32),
        obj_verts=verts_o, obj_faces=faces_o, obj_scale=scale, T_cam_obj=T,
        terms=np.asarray(result.terms, np.float32)[:n], term_names=tuple(STEP_TERMS),
        errors={}, images=None if images is None else _downsampled(np.asarray(images)[:n]))
    if seq.gt is not None:
        scene.gt_hand_verts = np.asarray(seq.gt.verts_cam, np.float32)[:n]
        scene.gt_T_cam_obj = np.asarray(seq.gt.T_cam_obj, np.float64)[:n]
        scene.gt_obj_scale = np.asarray(seq.gt.obj_scale, np.float32)
        scene.errors = _frame_errors(T, scene.gt_T_cam_obj, hand, scene.gt_hand_verts)
    return scene


def save_scene(directory: str | Path, scene: Scene) -> Path:
    """Write ``scene.npz`` (uncompressed: loading speed matters more than disk here)."""
    path = Path(directory) / SCENE_FILE
    arrays = {}
    for f in dataclasses.fields(Scene):
        v = getattr(scene, f.name)
        if f.name == "errors":
            arrays.update({f"error__{k}": e for k, e in v.items()})
        elif f.name in ("name", "term_names", "image_size", "anchor"):
            continue
        elif v is not None:
            arrays[f.name] = v
    header = {"name": scene.name, "term_names": list(scene.term_names),
              "image_size": list(scene.image_size), "anchor": scene.anchor}
    np.savez(path, header=np.array(json.dumps(header)), **arrays)
    return path


def load_scene(directory: str | Path) -> Scene:
    """Read what :func:`save_scene` wrote."""
    path = Path(directory) / SCENE_FILE
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays.pop("header")))
    errors = {k.removeprefix("error__"): arrays.pop(k) for k in list(arrays)
              if k.startswith("error__")}
    return Scene(name=header["name"], term_names=tuple(header["term_names"]),
                 image_size=tuple(header["image_size"]), anchor=int(header["anchor"]),
                 errors=errors, **arrays)


def oracle_result(seq):
    """The :class:`hoijax.tracking.TrackResult` a perfect tracker would return on a sequence
    whose detector hand is the true one (a synthetic sequence's ``noiseless()`` config): the
    true object pose and scale, the true hand translation, every ``stride``-th frame processed
    from frame 0. For testing pictures and timing the viewer, not for scoring."""
    import jax.numpy as jnp

    from hoijax.tracking import STEP_TERMS, TrackResult

    n = int(np.asarray(seq.valid).shape[0])
    gt = seq.gt
    processed = np.zeros(n, bool)
    processed[::2] = True
    zeros = jnp.zeros(n, jnp.int32)
    return TrackResult(
        T_cam_obj=jnp.asarray(gt.T_cam_obj, jnp.float32),
        obj_scale=jnp.asarray(gt.obj_scale, jnp.float32),
        hand_scale=jnp.ones((), jnp.float32),
        hand_transl=jnp.asarray(gt.hand.transl, jnp.float32),
        processed=jnp.asarray(processed), onset=jnp.zeros((), jnp.int32),
        anchor=jnp.zeros((), jnp.int32), onset_found=jnp.ones((), bool),
        hand_iters=zeros, object_iters=zeros,
        terms=jnp.zeros((n, len(STEP_TERMS)), jnp.float32),
        step_frame=jnp.arange(n, dtype=jnp.int32), step_active=jnp.asarray(processed),
        object_trace=None, iof_trace=None, finite=jnp.ones((), bool))
