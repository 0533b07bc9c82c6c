"""EgoHandICL inference over a dataset and its evaluation with :mod:`hoijax.metrics`.

Metrics per present hand (ARCTIC / HO-3D conventions, as the paper reports them): P-MPJPE on
the 21 keypoints and P-MPVPE on the 778 vertices (mm, after Procrustes alignment), F@5 and F@15
(fractions) of the aligned vertices; per two-hand frame: MRRPE (mm, right-to-left wrist vector)
and the two-hand P-MPVPE (mean of the frame's two hands). Averages are over present hands
(resp. two-hand frames), via :func:`hoijax.metrics.aggregate`.

EgoExo4D's joint metrics (:mod:`hoijax.icl._metrics`) are computed against the frames'
annotated 3D keypoints (``keypoints_gt`` where ``keypoints_valid``), on every frame, so they also
cover frames without MANO ground truth: MPJPE (EgoExo4D's, wrist-aligned), the joints' P-MPJPE
and joint F@10 / F@15.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from hoijax import mano, metrics
from hoijax.icl._data import IclData, gather_examples
from hoijax.icl._metrics import egoexo_mpjpe_mm, joint_fscores, joints_pa_mpjpe_mm
from hoijax.icl._model import IclConfig, refine
from hoijax.icl._params import hands_forward_batch


@functools.partial(jax.jit, static_argnames=("config",))
def _refine_batch(params, config, q_idx, t_idx, queries, database, use_template):
    ex = gather_examples(queries, database, q_idx, t_idx, hide_query_gt=True)
    return jax.vmap(lambda e: refine(params, config, e, use_template))(ex)


def predict_icl(
    params: dict,
    config: IclConfig,
    queries: IclData,
    database: IclData,
    template_index: np.ndarray,
    *,
    use_template: bool = True,
    batch_size: int = 256,
) -> Float[np.ndarray, "N H 61"]:
    """Refined parameters of every query (query ground truth hidden, query target masked).

    Fixed-size batches (the last one padded), so one compilation serves any ``N`` and both
    ``use_template`` settings."""
    q_dev, db_dev = queries.to_device(), database.to_device()
    n = queries.num_frames
    template_index = np.asarray(template_index, np.int32)
    use = jnp.asarray(use_template, bool)
    out = []
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        pad = np.concatenate([idx, np.full(batch_size - len(idx), idx[-1])]).astype(np.int32)
        pred = _refine_batch(params, config, jnp.asarray(pad), jnp.asarray(template_index[pad]),
                             q_dev, db_dev, use)
        out.append(np.asarray(pred)[:len(idx)])
    return np.concatenate(out) if out else np.zeros((0, config.num_hands, 61), np.float32)


def _per_hand(kp_pred, kp_gt, v_pred, v_gt):
    f = metrics.hand_fscores(v_pred, v_gt)
    return (metrics.pa_mpjpe_mm(kp_pred, kp_gt), metrics.pa_mpvpe_mm(v_pred, v_gt), f[0], f[1])


_per_hand_batch = jax.jit(jax.vmap(_per_hand))


def _over_rows(fn, flat: list, rows: np.ndarray, total: int, chunk: int) -> list[np.ndarray]:
    """``fn`` (four per-row outputs) on the ``rows`` of the ``flat`` arrays, in fixed chunks of
    ``chunk`` rows (the last padded with its final row: one compiled shape); NaN elsewhere."""
    res = [np.full(total, np.nan) for _ in range(4)]
    for s in range(0, len(rows), chunk):
        sel = rows[s:s + chunk]
        pad = np.concatenate([sel, np.full(chunk - len(sel), sel[-1])])
        vals = fn(*(x[pad] for x in flat))
        for r, v in zip(res, vals):
            r[sel] = np.asarray(v)[:len(sel)]
    return res


def hand_metrics_arrays(
    pred: Float[np.ndarray, "N H 61"],
    gt: Float[np.ndarray, "N H 61"],
    presence: np.ndarray,
    models: Sequence[mano.ManoModel],
    sides: Sequence[mano.Side],
    chunk: int = 128,
) -> dict[str, np.ndarray]:
    """Per-hand ``(N, H)`` arrays (NaN where absent) of ``pa_mpjpe_mm``, ``pa_mpvpe_mm``,
    ``f5``, ``f15``, and per-frame ``(N,)`` ``mrrpe_mm`` / ``two_hand_pa_mpvpe_mm`` (NaN unless
    both hands are present). Only present hands are evaluated, in padded chunks of ``chunk``."""
    present = np.asarray(presence, bool)
    n, h = present.shape
    vp, kp = hands_forward_batch(models, np.asarray(pred, np.float32))
    vg, kg = hands_forward_batch(models, np.asarray(gt, np.float32))
    rows = np.flatnonzero(present.ravel())
    flat = [np.asarray(x).reshape(n * h, *x.shape[2:]) for x in (kp, kg, vp, vg)]
    res = _over_rows(_per_hand_batch, flat, rows, n * h, chunk)
    out = {name: r.reshape(n, h) for name, r in zip(("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15"),
                                                    res)}
    nan = np.full(n, np.nan)
    if h == 2 and set(sides) == {"right", "left"}:
        r_i, l_i = list(sides).index("right"), list(sides).index("left")
        both = present[:, r_i] & present[:, l_i]
        mrrpe = jax.vmap(metrics.mrrpe_mm)(kp[:, r_i, 0], kp[:, l_i, 0], kg[:, r_i, 0],
                                           kg[:, l_i, 0])
        out["mrrpe_mm"] = np.where(both, np.asarray(mrrpe), np.nan)
        out["two_hand_pa_mpvpe_mm"] = np.where(both, out["pa_mpvpe_mm"].mean(axis=1), np.nan)
    else:
        out["mrrpe_mm"] = nan
        out["two_hand_pa_mpvpe_mm"] = nan
    return out


def _per_hand_joints(kp_pred, kp_gt, valid):
    f = joint_fscores(kp_pred, kp_gt, valid)
    return (egoexo_mpjpe_mm(kp_pred, kp_gt, valid), joints_pa_mpjpe_mm(kp_pred, kp_gt, valid),
            f[0], f[1])


_per_hand_joints_batch = jax.jit(jax.vmap(_per_hand_joints))


def keypoint_metrics_arrays(
    pred: Float[np.ndarray, "N H 61"],
    keypoints_gt: Float[np.ndarray, "N H 21 3"],
    keypoints_valid: np.ndarray,
    presence: np.ndarray,
    models: Sequence[mano.ManoModel],
    chunk: int = 128,
) -> dict[str, np.ndarray]:
    """Per-hand ``(N, H)`` arrays (NaN where the hand is absent or has no annotated joint) of
    EgoExo4D's ``mpjpe_mm`` (wrist-aligned), ``joints_pa_mpjpe_mm``, ``joint_f10`` and
    ``joint_f15``, against annotated 3D keypoints (metres, OpenPose order)."""
    valid = np.asarray(keypoints_valid, bool) & np.asarray(presence, bool)[..., None]
    n, h = valid.shape[:2]
    _, kp = hands_forward_batch(models, np.asarray(pred, np.float32))
    rows = np.flatnonzero(valid.any(-1).ravel())
    flat = [np.asarray(kp).reshape(n * h, 21, 3),
            np.asarray(keypoints_gt, np.float32).reshape(n * h, 21, 3), valid.reshape(n * h, 21)]
    res = _over_rows(_per_hand_joints_batch, flat, rows, n * h, chunk)
    return {name: r.reshape(n, h) for name, r in zip(
        ("mpjpe_mm", "joints_pa_mpjpe_mm", "joint_f10", "joint_f15"), res)}


_SUMMARY_NAMES = {
    "pa_mpjpe_mm": "P-MPJPE_mm", "pa_mpvpe_mm": "P-MPVPE_mm", "f5": "F@5", "f15": "F@15",
    "two_hand_pa_mpvpe_mm": "two_hand_P-MPVPE_mm", "mrrpe_mm": "MRRPE_mm",
    "mpjpe_mm": "MPJPE_mm", "joints_pa_mpjpe_mm": "joints_P-MPJPE_mm", "joint_f10": "joint_F@10",
    "joint_f15": "joint_F@15",
}


def summarize_metrics(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over present hands / two-hand frames (NaN-free entries only), paper's names
    (NaN for the metrics ``arrays`` lacks, e.g. mesh metrics without MANO ground truth)."""
    out = {}
    for key, label in _SUMMARY_NAMES.items():
        if key not in arrays:
            out[label] = float("nan")
            continue
        v = np.asarray(arrays[key], np.float64).ravel()
        out[label] = metrics.aggregate(v[np.isfinite(v)]) if np.isfinite(v).any() else float("nan")
    count = lambda k: int(np.isfinite(np.asarray(arrays[k])).sum()) if k in arrays else 0  # noqa: E731
    out["num_hands"] = count("pa_mpvpe_mm")
    out["num_two_hand_frames"] = count("mrrpe_mm")
    if "mpjpe_mm" in arrays:
        out["num_keypoint_hands"] = count("mpjpe_mm")
    return out


def evaluate_icl(
    params: dict,
    config: IclConfig,
    queries: IclData,
    database: IclData,
    template_index: np.ndarray,
    models: Sequence[mano.ManoModel] | None = None,
    *,
    variants: Sequence[str] = ("coarse", "icl", "icl_no_template"),
) -> dict[str, dict[str, float]]:
    """Metrics of the coarse input and of the model's refinements (with its retrieved template,
    and with the template tokens removed). Mesh metrics (P-MPJPE, P-MPVPE, F@5/15, MRRPE) on the
    queries that have MANO ground truth; EgoExo4D's joint metrics (MPJPE, joints' P-MPJPE,
    joint F@10/15) on every query with annotated keypoints."""
    from hoijax.icl._params import hand_models

    models = hand_models(config.sides) if models is None else models
    has_mano = np.asarray(queries.has_mano_gt, bool)
    t_idx = np.asarray(template_index)
    preds = {}
    for v in variants:
        if v == "coarse":
            preds[v] = np.asarray(queries.coarse)
        elif v == "icl":
            preds[v] = predict_icl(params, config, queries, database, t_idx, use_template=True)
        elif v == "icl_no_template":
            preds[v] = predict_icl(params, config, queries, database, t_idx, use_template=False)
        else:
            raise ValueError(f"unknown variant {v!r}")
    out = {}
    for v, p in preds.items():
        arrays = keypoint_metrics_arrays(p, queries.keypoints_gt, queries.keypoints_valid,
                                         queries.presence, models)
        if has_mano.any():
            q = queries.take(np.flatnonzero(has_mano))
            arrays.update(hand_metrics_arrays(p[has_mano], q.gt, q.presence, models,
                                              config.sides))
        out[v] = summarize_metrics(arrays)
    return out
