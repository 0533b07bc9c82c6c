"""DexYCB frames → TIGeR examples (:class:`~hoijax.tiger.TigerData`, the ``.npz`` layout).

TIGeR's DexYCB protocol (§IV): 640×480 colour images cropped to 256×256, centred on the target
object. One DexYCB sequence seen by one camera is read with :func:`hoijax.data.load_dexycb`
(its layout, hand convention and checks; the annotations are the ground truth here, which
training and scoring need), then per frame:

- the crop: a ``crop_px`` window centred on the projection of the object's centre
  ``C_o`` (the centroid of its surface points), zero-padded where it leaves the image; ``K``
  shifted by the window's corner (no resampling, so one crop pixel is one image pixel);
- ``points_obj``: ``num_points`` points sampled uniformly on the YCB model's surface (object
  frame, one draw for the whole sequence), posed by ``pose_y`` and centred on ``C_o``;
- ``visible_mask``: the dataset's segmentation (``seg == ycb id``) in the window;
- ``amodal_mask``: the posed model rasterised alone with the crop's ``K`` (the dataset has no
  amodal masks; occluders, the hand included, are ignored as the layout asks);
- ``hand_joints`` / ``hand_verts``: the MANO annotation (``pose_m`` with the subject's betas);
- ``prior_obj``: ``prior="sphere"`` (a sphere of ``sphere_radius_m``), or a file that trimesh or
  NumPy reads (a mesh is sampled, an ``.npy`` of ``(P, 3)`` points is taken as is), or a folder
  holding one such file per YCB model, named after it (``<folder>/006_mustard_bottle.ply``):
  a generated prior goes in here. Priors are centred on their centroid; their orientation is
  their own, as TIGeR's are.

Frames whose object is hidden in the segmentation are kept (TIGeR scores them in the last
occlusion bin) and counted; when they are the majority a warning names the sequence.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from hoijax import geometry, render
from hoijax.data import load_dexycb
from hoijax.data._errors import SequenceFormatError
from hoijax.tiger._data import (
    PRIOR_SOURCES,
    TigerData,
    concat_tiger_data,
    sample_mesh_surface,
    save_tiger_data,
    sphere_prior,
)

PRIOR_SUFFIXES = (".npy", ".ply", ".obj", ".off", ".stl", ".glb")
"""File types searched for in a prior folder, in this order."""


def crop_window(center_px: np.ndarray, crop_px: int) -> tuple[int, int]:
    """Top-left corner ``(x0, y0)`` of the ``crop_px`` window centred on ``center_px`` (u, v)."""
    u, v = (float(c) for c in center_px)
    return int(np.floor(u - crop_px / 2 + 0.5)), int(np.floor(v - crop_px / 2 + 0.5))


def crop_image(image: np.ndarray, x0: int, y0: int, crop_px: int) -> np.ndarray:
    """The ``crop_px²`` window of ``image`` (H, W, ...) at ``(x0, y0)``, zero where outside."""
    h, w = image.shape[:2]
    out = np.zeros((crop_px, crop_px) + image.shape[2:], image.dtype)
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + crop_px, w), min(y0 + crop_px, h)
    if xa < xb and ya < yb:
        out[ya - y0:yb - y0, xa - x0:xb - x0] = image[ya:yb, xa:xb]
    return out


def crop_intrinsics(K: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """``K`` of the window whose top-left pixel is image pixel ``(x0, y0)``."""
    K = np.array(K, np.float64)
    K[0, 2] -= x0
    K[1, 2] -= y0
    return K


def prior_file(prior: Path, *names: str) -> Path:
    """The prior file for an object: ``prior`` itself, or in a folder the first
    ``<name><suffix>`` that exists (``names`` in order, :data:`PRIOR_SUFFIXES`)."""
    if prior.is_dir():
        for name in names:
            for suffix in PRIOR_SUFFIXES:
                if (prior / f"{name}{suffix}").is_file():
                    return prior / f"{name}{suffix}"
        raise SequenceFormatError(prior, "prior_obj", f"no prior for {' / '.join(names)} "
                                  f"(looked for <name>{{{','.join(PRIOR_SUFFIXES)}}})")
    if not prior.is_file():
        raise SequenceFormatError(prior, "prior_obj", "prior file not found")
    return prior


def read_prior(path: str | Path, num_points: int, seed: int = 0) -> np.ndarray:
    """A prior point cloud ``(P, 3)`` float32, centred: ``.npy`` points as they are, anything
    else loaded by trimesh (a mesh is sampled on its surface, a point cloud subsampled)."""
    path = Path(path)
    if path.suffix == ".npy":
        try:
            pts = np.load(path)
        except (OSError, ValueError) as e:
            raise SequenceFormatError(path, "prior_obj", f"unreadable .npy ({e})") from None
    else:
        import trimesh

        try:
            geom = trimesh.load(path, force="mesh", process=False)
        except Exception as e:  # trimesh raises many kinds
            raise SequenceFormatError(path, "prior_obj", f"trimesh cannot read it ({e})") from None
        faces = np.asarray(getattr(geom, "faces", np.zeros((0, 3))), np.int32)
        verts = np.asarray(geom.vertices, np.float32)
        if len(faces):
            try:
                pts = sample_mesh_surface(verts, faces, num_points, seed)
            except ValueError as e:
                raise SequenceFormatError(path, "prior_obj", str(e)) from None
        else:
            pts = verts
    pts = np.asarray(pts, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 1:
        raise SequenceFormatError(path, "prior_obj", f"expected (P, 3) points, got {pts.shape}")
    if not np.isfinite(pts).all():
        raise SequenceFormatError(path, "prior_obj", "non-finite points")
    if len(pts) != num_points:  # subsample or repeat to P, deterministically
        pts = pts[np.random.default_rng(seed).choice(len(pts), num_points,
                                                     replace=len(pts) < num_points)]
    return (pts - pts.mean(0)).astype(np.float32)


def load_dexycb_tiger(
    root: str | Path,
    sequence: str,
    serial: str,
    mano_dir: str | Path | None = None,
    *,
    prior: str | Path = "sphere",
    sphere_radius_m: float = 0.05,
    crop_px: int = 256,
    num_points: int = 512,
    frames: list[int] | None = None,
    seed: int = 0,
    **load_kwargs,
) -> TigerData:
    """TIGeR examples of one DexYCB sequence and camera (module docstring).

    Args:
        root, sequence, serial, mano_dir: as :func:`hoijax.data.load_dexycb` (``mano_model=``
            may be passed instead of ``mano_dir`` through ``load_kwargs``).
        prior: ``"sphere"``, a prior file, or a folder of per-object prior files.
        sphere_radius_m: radius of the sphere prior.
        crop_px: crop side (TIGeR: 256).
        num_points: prior points P and ground-truth points Q.
        frames: frame indices (default: every frame with a hand annotation).
        seed: surface sampling seed.
        load_kwargs: passed on to :func:`hoijax.data.load_dexycb` (e.g. ``joint_check_tol_m``).
    """
    conv = load_dexycb(root, sequence, serial, mano_dir, frames=frames, load_depth=False,
                       oracle="keypoints,hand,masks,pose", **load_kwargs)
    seq, where = conv.sequence, Path(root) / sequence / serial
    if seq.rgb is None:
        raise SequenceFormatError(where / f"color_{conv.frame_ids[0]}.jpg", "rgb",
                                  "colour images not found (TIGeR needs the crops)")
    verts = np.asarray(seq.mesh.vertices, np.float32)
    faces = np.asarray(seq.mesh.faces, np.int32)
    canon = sample_mesh_surface(verts, faces[np.asarray(seq.mesh.face_valid)], num_points, seed)
    T = np.asarray(seq.gt.T_cam_obj, np.float64)
    posed = np.einsum("fij,pj->fpi", T[:, :3, :3], canon) + T[:, None, :3, 3]
    center = posed.mean(1)
    for n, c in enumerate(center):
        if c[2] <= 0.0:
            raise SequenceFormatError(where / f"labels_{conv.frame_ids[n]}.npz", "pose_y",
                                      f"object centre behind the camera (z = {c[2]:.3f} m)")
    K = np.asarray(seq.K, np.float64)
    uv = np.asarray(geometry.project(K, center), np.float64)
    rgb = np.asarray(seq.rgb)
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    visible_full = np.asarray(seq.object_mask).astype(bool)
    settings = render.RasterSettings(height=crop_px, width=crop_px)
    out = {k: [] for k in ("rgb", "K", "visible_mask", "amodal_mask")}
    for n in range(len(center)):
        x0, y0 = crop_window(uv[n], crop_px)
        Kc = crop_intrinsics(K, x0, y0)
        out["rgb"].append(crop_image(rgb[n], x0, y0, crop_px))
        out["visible_mask"].append(crop_image(visible_full[n], x0, y0, crop_px))
        out["K"].append(Kc)
        v_cam = verts @ T[n, :3, :3].T.astype(np.float32) + T[n, :3, 3].astype(np.float32)
        r, settings = render.rasterize_checked(v_cam, faces, Kc.astype(np.float32), settings)
        out["amodal_mask"].append(np.asarray(r.mask).astype(bool))
    if prior == "sphere":
        prior_pts, source = sphere_prior(num_points, sphere_radius_m), PRIOR_SOURCES.index("sphere")
    else:
        prior_pts = read_prior(prior_file(Path(prior), conv.meta["object"]), num_points, seed)
        source = -1
    nf = len(center)
    hidden = [conv.frame_ids[n] for n in range(nf) if not out["visible_mask"][n].any()]
    if 2 * len(hidden) > nf:
        warnings.warn(f"DexYCB {sequence} / {serial}: the object is hidden in {len(hidden)} of "
                      f"{nf} frames ({', '.join(hidden[:5])}{', ...' if len(hidden) > 5 else ''})",
                      stacklevel=2)
    data = TigerData(
        rgb=np.stack(out["rgb"]), K=np.stack(out["K"]).astype(np.float32),
        prior_obj=np.repeat(prior_pts[None], nf, 0),
        points_obj=(posed - center[:, None]).astype(np.float32),
        center_cam=center.astype(np.float32),
        hand_joints=np.asarray(seq.gt.joints_cam, np.float32),
        hand_verts=np.asarray(seq.gt.verts_cam, np.float32),
        amodal_mask=np.stack(out["amodal_mask"]), visible_mask=np.stack(out["visible_mask"]),
        prior_source=np.full(nf, source, np.int32))
    return data


def convert_dexycb_tiger(root, sequences: list[tuple[str, str]], out: str | Path,
                         mano_dir=None, **kwargs) -> TigerData:
    """:func:`load_dexycb_tiger` for several ``(sequence, serial)`` pairs, concatenated and
    written to ``out`` (``.npz``). A pair that fails is reported by name and skipped; the
    others are written. Raises only when none converts."""
    parts, failed = [], []
    for sequence, serial in sequences:
        try:
            parts.append(load_dexycb_tiger(root, sequence, serial, mano_dir, **kwargs))
        except (SequenceFormatError, ValueError) as e:
            warnings.warn(f"DexYCB {sequence} / {serial} skipped: {e}", stacklevel=2)
            failed.append((sequence, serial))
    if not parts:
        raise ValueError(f"no DexYCB sequence converted ({len(failed)} failed)")
    data = concat_tiger_data(*parts)
    save_tiger_data(out, data)
    return data


__all__ = ["convert_dexycb_tiger", "crop_image", "crop_intrinsics", "crop_window",
           "load_dexycb_tiger", "prior_file", "read_prior"]

