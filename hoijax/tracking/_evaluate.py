"""Scoring tracked sequences against ground truth, and the result file format.

Per frame (processed frames only: the optimizer's own output, not the interpolation):

- object: rotation error (deg), translation error (mm), ADD-S (mm, scale included: points are
  posed with each side's own scale);
- hand: root-relative MPJPE (mm, 21 joints; HOLD's ``mpjpe_ra_r``) and the camera-frame joint
  error (mm), which is what the tracker's hand translation and scale control;
- interaction: CD_h (cm², HOLD's ``cd_right``): the object's surface points relative to the hand
  root, prediction against ground truth, each with its own root;

per sequence: object scale error (%), and tracking failure (ADD-S above 10 % of the diameter on
more than 30 % of the processed frames, :func:`hoijax.metrics.tracking_failed`).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hoijax import geometry, mano, metrics
from hoijax.data import Sequence
from hoijax.tracking._track import STEP_TERMS, TrackResult, hand_keypoints

RESULT_FORMAT = "hoijax-track-result"
RESULT_FORMAT_VERSION = 1

PER_FRAME_METRICS = ("rot_err_deg", "trans_err_mm", "adds_mm", "mpjpe_mm", "hand_cam_mm",
                     "cd_h_cm2")
"""Per-frame metric names of :func:`evaluate_sequence`."""


def _scaled(T, s):
    return T.at[:3, :3].multiply(s[None, :])


def evaluate_sequence(result: TrackResult, seq: Sequence, model: mano.ManoModel, *,
                      num_points: int = 1000, seed: int = 0) -> dict:
    """Metrics of one unbatched sequence with ground truth: per-frame arrays (NaN where not
    processed), per-sequence means and scalars."""
    if seq.gt is None:
        raise ValueError("evaluate_sequence needs a sequence with ground truth (seq.gt)")
    gt = seq.gt
    pts = metrics.sample_surface(jax.random.PRNGKey(seed), seq.mesh.vertices, seq.mesh.faces,
                                 num_points, seq.mesh.face_valid)
    diameter = float(metrics.object_diameter_mm(pts * gt.obj_scale))
    T_p, T_g = result.T_cam_obj, gt.T_cam_obj
    rot = jax.vmap(metrics.rotation_error_deg)(T_p[:, :3, :3], T_g[:, :3, :3])
    trans = jax.vmap(metrics.translation_error_mm)(T_p[:, :3, 3], T_g[:, :3, 3])
    adds = jax.vmap(lambda a, b: metrics.adds_mm(_scaled(a, result.obj_scale),
                                                 _scaled(b, gt.obj_scale), pts))(T_p, T_g)
    kp = hand_keypoints(result, seq.hand_init, model)
    mpjpe = jax.vmap(metrics.mpjpe_mm)(kp, gt.joints_cam)
    cam = jnp.mean(jnp.linalg.norm(kp - gt.joints_cam, axis=-1), -1) * 1000.0
    pts_p = jax.vmap(lambda T: pts @ _scaled(T, result.obj_scale)[:3, :3].T + T[:3, 3])(T_p)
    pts_g = jax.vmap(lambda T: pts @ _scaled(T, gt.obj_scale)[:3, :3].T + T[:3, 3])(T_g)
    cd_h = jax.vmap(metrics.cd_h_cm2)(pts_p, kp[:, 0], pts_g, gt.joints_cam[:, 0])
    used = np.asarray(result.processed & seq.valid)
    per_frame = {name: np.where(used, np.asarray(v, np.float64), np.nan)
                 for name, v in zip(PER_FRAME_METRICS, (rot, trans, adds, mpjpe, cam, cd_h))}
    failed = bool(metrics.tracking_failed(np.nan_to_num(per_frame["adds_mm"], nan=np.inf),
                                          diameter, used))
    scale_err = float(np.max(np.abs(np.asarray(result.obj_scale) / np.asarray(gt.obj_scale)
                                    - 1)) * 100)
    means = {k: float(np.nanmean(v)) if used.any() else float("nan")
             for k, v in per_frame.items()}
    return {"per_frame": per_frame, "mean": means, "failed": failed, "diameter_mm": diameter,
            "obj_scale_err_pct": scale_err, "processed_frames": int(used.sum()),
            "onset": int(result.onset), "onset_gt": None if gt.onset_frame is None
            else int(gt.onset_frame), "finite": bool(result.finite)}


def summarize(evals: list[dict]) -> dict:
    """Across sequences: medians over all processed frames, means of sequence means, success."""
    out = {}
    for k in PER_FRAME_METRICS:
        allv = np.concatenate([e["per_frame"][k] for e in evals])
        allv = allv[np.isfinite(allv)]
        out[f"{k}_median"] = float(np.median(allv)) if allv.size else float("nan")
        out[f"{k}_mean"] = float(np.nanmean([e["mean"][k] for e in evals]))
    out["success_rate"] = float(np.mean([not e["failed"] for e in evals]))
    out["obj_scale_err_pct_mean"] = float(np.mean([e["obj_scale_err_pct"] for e in evals]))
    out["num_sequences"] = len(evals)
    return out


def rotation_errors_deg(T_pred, T_gt) -> np.ndarray:
    """Rotation error per frame, degrees (a NumPy convenience for plots)."""
    R = np.einsum("nji,njk->nik", np.asarray(T_pred)[:, :3, :3], np.asarray(T_gt)[:, :3, :3])
    return np.degrees(np.linalg.norm(np.asarray(jax.vmap(geometry.matrix_to_axis_angle)(
        jnp.asarray(R))), axis=-1))


# ------------------------------------------------------------------------------ result files


def save_result(result: TrackResult, directory: str | Path, *, meta: dict | None = None) -> Path:
    """Write one unbatched result: ``result.json`` (format, version, field list with shapes and
    dtypes, the step-term names, free-form ``meta``) and ``result.npz`` (one array per field;
    absent optional fields are simply not listed)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name in TrackResult.__dataclass_fields__:
        v = getattr(result, name)
        if v is not None:
            arrays[name] = np.asarray(v)
    np.savez_compressed(d / "result.npz", **arrays)
    manifest = {
        "format": RESULT_FORMAT, "format_version": RESULT_FORMAT_VERSION,
        "step_terms": list(STEP_TERMS),
        "fields": {k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in arrays.items()},
        "meta": meta or {},
    }
    (d / "result.json").write_text(json.dumps(manifest, indent=2))
    return d


class ResultFormatError(ValueError):
    """A result directory that is missing, corrupt or of another format; names the file."""


def load_result(directory: str | Path) -> tuple[TrackResult, dict]:
    """Read a result written by :func:`save_result`; returns it and its manifest."""
    d = Path(directory)
    mpath, apath = d / "result.json", d / "result.npz"
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ResultFormatError(f"{mpath}: cannot read the manifest ({e})") from e
    if manifest.get("format") != RESULT_FORMAT:
        raise ResultFormatError(f"{mpath}: field 'format' is {manifest.get('format')!r}, "
                                f"expected {RESULT_FORMAT!r}")
    if manifest.get("format_version") != RESULT_FORMAT_VERSION:
        raise ResultFormatError(f"{mpath}: field 'format_version' is "
                                f"{manifest.get('format_version')!r}, expected "
                                f"{RESULT_FORMAT_VERSION}")
    try:
        with np.load(apath) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ResultFormatError(f"{apath}: cannot read the arrays ({e})") from e
    fields = {}
    for name in TrackResult.__dataclass_fields__:
        spec = manifest["fields"].get(name)
        if spec is None:
            fields[name] = None
            continue
        if name not in arrays:
            raise ResultFormatError(f"{apath}: field '{name}' is listed in result.json but missing")
        a = arrays[name]
        if list(a.shape) != spec["shape"]:
            raise ResultFormatError(f"{apath}: field '{name}' has shape {list(a.shape)}, "
                                    f"result.json says {spec['shape']}")
        fields[name] = jnp.asarray(a)
    return TrackResult(**fields), manifest
