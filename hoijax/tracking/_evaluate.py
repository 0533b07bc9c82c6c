"""Scoring tracked sequences against ground truth, and the result file format.

The evaluation follows AGILE's tables (1, 5, 6 and the supplementary), which follow HOLD's
protocol for the hand and the object shape. Two object meshes are involved: the *tracked* mesh
(``seq.mesh``, scaled by the result's ``obj_scale``) and the *true* one (``seq.gt.obj_mesh``, or
``seq.mesh`` where that is None, scaled by ``gt.obj_scale``); both share the object frame.

Per frame, on every valid frame; the *processed* frames (the optimizer's own output, every
stride-th frame and the ends) are the ones AGILE scores and the headline numbers use, the
*interpolated* ones between them are reported apart (``mean_interpolated``), so a tracker that
is right only where it optimizes shows it:

- object: rotation error (deg), the same modulo the true object's symmetry group
  (``rot_sym_err_deg``; :func:`hoijax.metrics.detect_symmetries` on the true mesh at its
  scale, or the group passed as ``symmetry``), translation error (mm), BOP's MSSD (mm; the
  true model under both poses, as BOP scores a known model), ADD and ADD-S (mm), scale included:
  surface samples of the tracked mesh at the result's scale under the predicted pose against
  samples of the true mesh at the true scale under the true pose (ADD-S: each true point's
  nearest tracked point; ADD: sample for sample where the two meshes share their faces, so the
  samples correspond, otherwise BOP's ADD, the true model under both poses);
- hand: root-relative MPJPE (mm, 21 joints; HOLD's ``mpjpe_ra_r``) and the camera-frame joint
  error (mm), which is what the tracker's hand translation and scale control;
- interaction: CD_h (cm², HOLD's ``cd_right``): the object's surface points relative to the hand
  root, prediction (tracked mesh) against ground truth (true mesh), each with its own root;

per sequence:

- ``add_acc`` / ``adds_acc``: the fraction of processed frames whose ADD (resp. ADD-S) is at
  most :data:`ACCURACY_FRACTION` (10 %) of the true object's diameter (a non-finite value
  counts as a miss);
- ``obj_cd_cm2``, ``obj_f5``, ``obj_f10``: HOLD's object shape metrics ("cd_icp"): the tracked
  and the true mesh, each scaled and posed at the first processed frame, the same surface samples
  as ADD-S (1000 by default; HOLD uses the meshes' vertices), aligned by similarity ICP (multi-start,
  :func:`hoijax.metrics.object_shape_metrics`), Chamfer distance in cm² and F-scores at 5 and
  10 mm as *fractions* in [0, 1] (AGILE and HOLD print them × 100);
- ``obj_scale_err_pct``: the largest relative error of the object's size along its three axes
  (%): of the three scale factors when both meshes are the same, of the scaled meshes'
  bounding-box extents when the ground truth has its own mesh;
- tracking failure (ADD-S above 10 % of the diameter on more than 30 % of the processed frames,
  :func:`hoijax.metrics.tracking_failed`; so a sequence fails exactly when ``adds_acc`` < 0.7).
  The success rate SR is the fraction of sequences that did not fail.

:func:`summarize` gives medians over all processed frames of all sequences and means of the
sequence means for the per-frame metrics (and ``<name>_interpolated_mean``: the mean over
sequences of their interpolated frames' means), means over sequences of the per-sequence ones
(a sequence without a processed frame has NaN there and is left out), and SR.
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

PER_FRAME_METRICS = ("rot_err_deg", "rot_sym_err_deg", "trans_err_mm", "add_mm", "adds_mm",
                     "mssd_mm", "mpjpe_mm", "hand_cam_mm", "cd_h_cm2")
"""Per-frame metric names of :func:`evaluate_sequence`."""

PER_SEQUENCE_METRICS = ("add_acc", "adds_acc", "obj_cd_cm2", "obj_f5", "obj_f10",
                        "obj_scale_err_pct")
"""Per-sequence numbers of :func:`evaluate_sequence` (top-level keys) that :func:`summarize`
averages over sequences."""

ACCURACY_FRACTION = metrics.SUCCESS_ADDS_FRACTION
"""ADD / ADD-S accuracy threshold as a fraction of the object diameter: 0.1, the BOP/PoseCNN
0.1 d rule, the same threshold as the failure rule's lost frames."""

SHAPE_ICP_POINTS = 500
"""Of the surface samples, the points each of the 24 ICP starts of the object shape metrics
uses (HOLD: 1000). The CD / F-scores themselves use all of them."""


def _scaled(T, s):
    return T.at[:3, :3].multiply(s[None, :])


def _nanmean(values) -> float:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(np.mean(v)) if v.size else float("nan")


def _bucket(n: int) -> int:
    return 1 << max(int(n) - 1, 1).bit_length()


def _sample(key, mesh, num_points: int):
    """``metrics.sample_surface`` on the mesh padded with invalid faces to power-of-two sizes:
    the samples are unchanged (padding faces are never drawn) and meshes of similar sizes share
    one compiled sampler (each new size costs about a second of compilation)."""
    v = np.asarray(mesh.vertices)
    f = np.asarray(mesh.faces, np.int32)
    fv = np.asarray(mesh.face_valid, bool)
    nv, nf = _bucket(v.shape[0]), _bucket(f.shape[0])
    return metrics.sample_surface(key, np.pad(v, [(0, nv - v.shape[0]), (0, 0)]),
                                  np.pad(f, [(0, nf - f.shape[0]), (0, 0)]), num_points,
                                  np.pad(fv, (0, nf - fv.shape[0])))


def _surface_points(seq: Sequence, num_points: int, seed: int):
    """Surface samples of the tracked and the true mesh (object frame, unscaled), drawn with the
    same key: with ``gt.obj_mesh`` None they are the same points."""
    key = jax.random.PRNGKey(seed)
    pts = _sample(key, seq.mesh, num_points)
    if seq.gt.obj_mesh is None:
        return pts, pts
    return pts, _sample(key, seq.gt.obj_mesh, num_points)


def _same_topology(seq: Sequence) -> bool:
    """Whether the tracked and the true mesh share their faces (the same mesh, or a rescaled or
    deformed copy), so that same-key surface samples correspond point for point."""
    t = seq.gt.obj_mesh
    if t is None:
        return True
    a, b = np.asarray(seq.mesh.faces), np.asarray(t.faces)
    return a.shape == b.shape and bool(np.array_equal(a, b)) and bool(np.array_equal(
        np.asarray(seq.mesh.face_valid), np.asarray(t.face_valid)))


def _posed(pts, scale, T):
    return pts @ _scaled(T, scale)[:3, :3].T + T[:3, 3]


def object_shape_at(result: TrackResult, seq: Sequence, frame: int, *, num_points: int = 1000,
                    icp_points: int = SHAPE_ICP_POINTS, seed: int = 0) -> metrics.CloudComparison:
    """HOLD's object CD / F@5 / F@10 at one frame: ``num_points`` surface samples of the tracked
    mesh, scaled by the result's scale and posed by its pose, against the true mesh scaled and
    posed by the ground truth, aligned by multi-start similarity ICP
    (:func:`hoijax.metrics.object_shape_metrics`).

    Both meshes are sampled with the same key (the one :func:`evaluate_sequence` uses for ADD-S),
    so identical meshes with identical scales give identical points and a CD of 0.
    """
    pts, pts_true = _surface_points(seq, num_points, seed)
    return _shape_metrics(pts, pts_true, result, seq, frame, icp_points)


def _shape_metrics(pts, pts_true, result, seq, frame, icp_points):
    p = _posed(pts, result.obj_scale, result.T_cam_obj[frame])
    g = _posed(pts_true, seq.gt.obj_scale, seq.gt.T_cam_obj[frame])
    return metrics.object_shape_metrics(p, g, icp_points=min(icp_points, pts.shape[0]))


def true_symmetry(seq: Sequence) -> metrics.Symmetry:
    """The rotational symmetry group of the true object (its mesh at its true scale)."""
    mesh = seq.mesh if seq.gt.obj_mesh is None else seq.gt.obj_mesh
    keep = np.asarray(mesh.face_valid, bool)
    v = np.asarray(mesh.vertices, np.float64) * np.asarray(seq.gt.obj_scale, np.float64)
    return metrics.detect_symmetries(v, np.asarray(mesh.faces)[keep])


@jax.jit
def _symmetric_errors(T_p, T_g, points, transforms):
    """Per frame: the rotation error modulo the group and MSSD (one program per group size)."""
    R = transforms[:, :3, :3]
    rot = jax.vmap(lambda a, b: metrics.symmetric_rotation_error_deg(a, b, R))(
        T_p[:, :3, :3], T_g[:, :3, :3])
    mssd = jax.vmap(lambda a, b: metrics.mssd_transforms_mm(a, b, points, transforms))(T_p, T_g)
    return rot, mssd


def evaluate_sequence(result: TrackResult, seq: Sequence, model: mano.ManoModel, *,
                      num_points: int = 1000, seed: int = 0, shape: bool = True,
                      shape_icp_points: int = SHAPE_ICP_POINTS,
                      symmetry: metrics.Symmetry | None = None) -> dict:
    """Metrics of one unbatched sequence with ground truth (see the module docstring).

    Returns ``per_frame`` (arrays over all frames, NaN on padding), ``processed`` (bool per
    frame), ``mean`` (each per-frame metric's mean over the processed frames),
    ``mean_interpolated`` (over the valid frames between them), the :data:`PER_SEQUENCE_METRICS` and ``failed``,
    ``diameter_mm`` (of the true object), ``processed_frames``, ``interpolated_frames``,
    ``onset``, ``onset_gt``,
    ``finite``, ``symmetry`` (the group's description). ``symmetry``: the true object's group
    when known (declared); detected from the true mesh otherwise. ``num_points``: surface samples of each mesh, for ADD, ADD-S, the diameter,
    CD_h and the object shape metrics; ``shape=False`` skips the latter (NaN; they cost about
    a second per sequence on one CPU core, for the 24 ICP starts).
    """
    if seq.gt is None:
        raise ValueError("evaluate_sequence needs a sequence with ground truth (seq.gt)")
    gt = seq.gt
    pts, pts_true = _surface_points(seq, num_points, seed)
    diameter = float(metrics.object_diameter_mm(pts_true * gt.obj_scale))
    T_p, T_g = result.T_cam_obj, gt.T_cam_obj
    rot = jax.vmap(metrics.rotation_error_deg)(T_p[:, :3, :3], T_g[:, :3, :3])
    trans = jax.vmap(metrics.translation_error_mm)(T_p[:, :3, 3], T_g[:, :3, 3])
    kp = hand_keypoints(result, seq.hand_init, model)
    mpjpe = jax.vmap(metrics.mpjpe_mm)(kp, gt.joints_cam)
    cam = jnp.mean(jnp.linalg.norm(kp - gt.joints_cam, axis=-1), -1) * 1000.0
    # The tracked object (its mesh at its scale, predicted pose) and the true one.
    pts_p = jax.vmap(lambda T: _posed(pts, result.obj_scale, T))(T_p)
    pts_g = jax.vmap(lambda T: _posed(pts_true, gt.obj_scale, T))(T_g)
    if _same_topology(seq):  # sample i is the same surface point on both: pair them
        add = 1000.0 * jnp.mean(jnp.linalg.norm(pts_p - pts_g, axis=-1), -1)
    else:  # BOP's ADD: the true model under both poses
        pts_tp = jax.vmap(lambda T: _posed(pts_true, gt.obj_scale, T))(T_p)
        add = 1000.0 * jnp.mean(jnp.linalg.norm(pts_tp - pts_g, axis=-1), -1)
    adds = 1000.0 * jax.vmap(lambda g, p: jnp.mean(jnp.sqrt(metrics.nearest_sq_dist(g, p))))(
        pts_g, pts_p)
    cd_h = jax.vmap(metrics.cd_h_cm2)(pts_p, kp[:, 0], pts_g, gt.joints_cam[:, 0])
    sym = true_symmetry(seq) if symmetry is None else symmetry
    rot_sym, mssd = _symmetric_errors(T_p, T_g, pts_true * gt.obj_scale,
                                      jnp.asarray(sym.transforms, T_p.dtype))
    if sym.spherical:  # every rotation about the centre: no rotation error, the centre's shift
        rot_sym = jnp.zeros_like(rot_sym)
        mssd = jax.vmap(lambda a, b: metrics.mssd_mm(a, b, pts_true, sym))(T_p, T_g)
    valid = np.asarray(seq.valid, bool)
    used = np.asarray(result.processed, bool) & valid
    between = valid & ~used
    values = dict(rot_err_deg=rot, rot_sym_err_deg=rot_sym, trans_err_mm=trans, add_mm=add,
                  adds_mm=adds, mssd_mm=mssd, mpjpe_mm=mpjpe, hand_cam_mm=cam, cd_h_cm2=cd_h)
    per_frame = {name: np.where(valid, np.asarray(values[name], np.float64), np.nan)
                 for name in PER_FRAME_METRICS}
    failed = bool(metrics.tracking_failed(np.nan_to_num(per_frame["adds_mm"], nan=np.inf),
                                          diameter, used))
    ratio = np.asarray(result.obj_scale, np.float64) / np.asarray(gt.obj_scale, np.float64)
    if gt.obj_mesh is not None:  # sizes, not factors: the bounding boxes' extents per axis
        ext = lambda p: np.ptp(np.asarray(p, np.float64), axis=0)  # noqa: E731
        ext_p, ext_g = ext(pts), ext(pts_true)
        ratio = ratio * np.where(ext_g > 0, ext_p / np.where(ext_g > 0, ext_g, 1.0), 1.0)
    scale_err = float(np.max(np.abs(ratio - 1)) * 100)
    means = {k: float(np.nanmean(v[used])) if used.any() else float("nan")
             for k, v in per_frame.items()}
    means_between = {k: float(np.nanmean(v[between])) if between.any() else float("nan")
                     for k, v in per_frame.items()}
    threshold = ACCURACY_FRACTION * diameter
    # NaN <= x is False: a non-finite error is a miss, as in the failure rule.
    acc = {f"{k}_acc": float(np.mean(per_frame[f"{k}_mm"][used] <= threshold))
           if used.any() else float("nan") for k in ("add", "adds")}
    obj = {"obj_cd_cm2": float("nan"), "obj_f5": float("nan"), "obj_f10": float("nan")}
    if used.any() and shape:
        f0 = int(np.argmax(used))
        if np.all(np.isfinite(np.asarray(T_p[f0]))) and np.all(
                np.isfinite(np.asarray(result.obj_scale))):
            m = _shape_metrics(pts, pts_true, result, seq, f0, shape_icp_points)
            f5, f10 = (float(x) for x in np.asarray(m.fscore))
            obj = {"obj_cd_cm2": float(m.cd_cm2), "obj_f5": f5, "obj_f10": f10}
    return {"per_frame": per_frame, "processed": used, "mean": means,
            "mean_interpolated": means_between, **acc, **obj, "failed": failed,
            "diameter_mm": diameter, "obj_scale_err_pct": scale_err,
            "processed_frames": int(used.sum()), "interpolated_frames": int(between.sum()),
            "onset": int(result.onset),
            "carry_from": None if result.carry_from is None else int(result.carry_from),
            "carry_by_contact": (None if result.carry_by_contact is None
                                 else bool(result.carry_by_contact)),
            "onset_gt": None if gt.onset_frame is None else int(gt.onset_frame),
            "finite": bool(result.finite), "symmetry": sym.describe()}


def sequence_row(ev: dict) -> dict:
    """One sequence's line of a summary: each per-frame metric's mean over its processed
    frames, the :data:`PER_SEQUENCE_METRICS` and ``failed`` (NaN where an older evaluation
    lacks a metric)."""
    between = {f"{k}_interpolated": v for k, v in ev.get("mean_interpolated", {}).items()}
    return {**ev["mean"], **between, **{k: np.nan if ev.get(k) is None else ev[k]
                                        for k in PER_SEQUENCE_METRICS}, "failed": ev["failed"]}


def _processed_values(ev: dict, k: str) -> np.ndarray:
    v = np.asarray(ev["per_frame"][k], np.float64)
    if ev.get("processed") is None:  # an older metrics.json: NaN where not processed
        return v
    return v[np.asarray(ev["processed"], bool)]


def summarize(evals: list[dict]) -> dict:
    """Across sequences: for each per-frame metric its median over all processed frames
    (``<name>_median``) and the mean of the sequence means (``<name>_mean``); for each
    per-sequence one the mean over the sequences where it is finite (``<name>_mean``); the
    success rate SR (``success_rate``, a fraction) and ``num_sequences``. A metric missing from
    an evaluation (e.g. one read back from an older ``metrics.json``) counts as NaN."""
    out = {}
    for k in PER_FRAME_METRICS:
        frames = [_processed_values(e, k) for e in evals if k in e["per_frame"]]
        allv = np.concatenate(frames) if frames else np.zeros(0)
        allv = allv[np.isfinite(allv)]
        out[f"{k}_median"] = float(np.median(allv)) if allv.size else float("nan")
        out[f"{k}_mean"] = _nanmean([e["mean"].get(k, np.nan) for e in evals])
        out[f"{k}_interpolated_mean"] = _nanmean(
            [e.get("mean_interpolated", {}).get(k, np.nan) for e in evals])
    for k in PER_SEQUENCE_METRICS:
        out[f"{k}_mean"] = _nanmean([np.nan if e.get(k) is None else e[k] for e in evals])
    out["success_rate"] = float(np.mean([not e["failed"] for e in evals]))
    out["num_sequences"] = len(evals)
    return out


AGILE_COLUMNS = (
    ("MPJPE [mm] ↓", "mpjpe_mm", 1.0), ("CD [cm²] ↓", "obj_cd_cm2", 1.0),
    ("F@5 [%] ↑", "obj_f5", 100.0), ("F@10 [%] ↑", "obj_f10", 100.0),
    ("CD_h [cm²] ↓", "cd_h_cm2", 1.0), ("ADD [%] ↑", "add_acc", 100.0),
    ("ADD-S [%] ↑", "adds_acc", 100.0), ("SR [%] ↑", "success", 100.0))
"""The columns of :func:`agile_table`: header, metric, factor (fractions are printed × 100)."""


def agile_table(per_sequence: dict[str, dict], summary: dict) -> str:
    """A Markdown table laid out like AGILE's Table 1 (hand MPJPE; object CD, F@5, F@10;
    hand-object CD_h; plus ADD / ADD-S accuracy at 10 % of the diameter; success rate SR):
    one row per sequence (``per_sequence``: :func:`sequence_row`'s, as in ``summary.json``; its
    means over the processed frames; SR is 100 or 0) and a last row from ``summary``
    (:func:`summarize`'s): means over the sequences, as AGILE and HOLD average per-sequence
    numbers."""
    def cells(row: dict) -> list[str]:
        out = []
        for _, key, factor in AGILE_COLUMNS:
            v = row.get(key)
            ok = isinstance(v, (int, float)) and np.isfinite(float(v))
            out.append(f"{factor * float(v):.1f}" if ok else "—")
        return out

    head = "| sequence | " + " | ".join(h for h, _, _ in AGILE_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(AGILE_COLUMNS) + 1)]
    for name, row in per_sequence.items():
        lines.append("| " + " | ".join([name] + cells({**row, "success": not row["failed"]}))
                     + " |")
    if per_sequence:
        mean = {k: summary.get(f"{k}_mean") for _, k, _ in AGILE_COLUMNS}
        mean["success"] = summary.get("success_rate")
        lines.append("| **mean** | " + " | ".join(cells(mean)) + " |")
    return "\n".join(lines)


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
