"""TIGeR's evaluation as the paper reports it (§IV, Tables I–III, Fig. 5).

Per example: the object as predicted (``Ṽ + C̃_o``, camera frame) against ``V + C_o`` —
CD_o (cm², HOLD's sum of the two directional means of squared distances,
:func:`hoijax.metrics.compare_clouds`), FS_o@5 mm and FS_o@10 mm; the *centred* variant of
Table II (both clouds moved to their centroids); the hand (MANO fitted to the predicted
keypoints) against the ground-truth vertices — CD_h (cm²), FS_h@1 mm, FS_h@5 mm. The unrefined
prior is scored the same way, placed at the predicted centre (camera frame) or centred.
Summaries: median CD, mean F-score. Occlusion: ``R_occ = 1 − (A_vis + 1) / (A_amodal + 1)``,
examples sorted by it and split into ``num_bins`` equal-count bins (Fig. 5).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hoijax import mano, metrics
from hoijax.tiger._data import TigerData, occlusion_rate
from hoijax.tiger._hand import fit_mano_to_keypoints
from hoijax.tiger._model import TigerConfig, apply_tiger, downsample_image

OBJECT_THRESHOLDS_M = (0.005, 0.010)
"""FS_o@5 mm and FS_o@10 mm."""
HAND_THRESHOLDS_M = (0.001, 0.005)
"""FS_h@1 mm and FS_h@5 mm."""


@functools.partial(jax.jit, static_argnames=("config", "crop_px"))
def _predict_batch(params, config, rgb, K, prior, crop_px):
    def one(r, k, p):
        out = apply_tiger(params, config, downsample_image(r.astype(jnp.float32),
                                                           config.image_size), k, p, crop_px)
        return out.points_obj, out.obj_center_cam, out.hand_joints_cam
    return jax.vmap(one)(rgb, K, prior)


def predict_tiger(params: dict, config: TigerConfig, data: TigerData,
                  batch_size: int = 32) -> dict[str, np.ndarray]:
    """``points_obj`` (N, P, 3), ``center_cam`` (N, 3), ``hand_joints`` (N, 21, 3) predicted
    for every example, in fixed-size batches (the last one padded: one compilation)."""
    n = data.num_examples
    outs = []
    for s in range(0, n, batch_size):
        idx = np.r_[np.arange(s, min(s + batch_size, n)),
                    np.full(max(0, s + batch_size - n), n - 1)]
        o = _predict_batch(params, config, jnp.asarray(data.rgb[idx]), jnp.asarray(data.K[idx]),
                           jnp.asarray(data.prior_obj[idx]), data.crop_px)
        outs.append([np.asarray(x)[:min(batch_size, n - s)] for x in o])
    keys = ("points_obj", "center_cam", "hand_joints")
    return {k: np.concatenate([o[i] for o in outs]) for i, k in enumerate(keys)}


def _cloud(pred, gt, th):
    m = metrics.compare_clouds(pred, gt, jnp.asarray(th, pred.dtype))
    return m.cd_cm2, m.fscore


@jax.jit
def _object_scores(pred_obj, pred_center, gt_obj, gt_center):
    cam = _cloud(pred_obj + pred_center, gt_obj + gt_center, OBJECT_THRESHOLDS_M)
    centred = _cloud(pred_obj - pred_obj.mean(0), gt_obj - gt_obj.mean(0), OBJECT_THRESHOLDS_M)
    return cam, centred


_object_scores_batch = jax.jit(jax.vmap(_object_scores))


@jax.jit
def _hand_scores(model, kp_pred, verts_gt):
    verts, _ = fit_mano_to_keypoints(model, kp_pred)
    return _cloud(verts, verts_gt, HAND_THRESHOLDS_M)


def _chunked(fn, arrays, chunk=64):
    n = arrays[0].shape[0]
    res = []
    for s in range(0, n, chunk):
        idx = np.r_[np.arange(s, min(s + chunk, n)), np.full(max(0, s + chunk - n), n - 1)]
        out = fn(*(jnp.asarray(a[idx]) for a in arrays))
        keep = min(chunk, n - s)
        res.append(jax.tree.map(lambda x, keep=keep: np.asarray(x)[:keep], out))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *res)


def score_objects(points_obj: np.ndarray, center_cam: np.ndarray,
                  data: TigerData) -> dict[str, np.ndarray]:
    """Per-example object metrics of predicted (centred) points placed at ``center_cam``."""
    (cd, fs), (cd_c, fs_c) = _chunked(_object_scores_batch,
                                      (points_obj, center_cam, data.points_obj, data.center_cam))
    return {"cd_o": cd, "fs_o5": fs[:, 0], "fs_o10": fs[:, 1],
            "cd_o_centred": cd_c, "fs_o5_centred": fs_c[:, 0], "fs_o10_centred": fs_c[:, 1]}


def score_hands(hand_joints: np.ndarray, data: TigerData,
                model: mano.ManoModel | None = None) -> dict[str, np.ndarray]:
    """Per-example CD_h, FS_h@1, FS_h@5 of MANO fitted to the predicted keypoints."""
    model = mano.synthetic_mano("right") if model is None else model
    fn = jax.vmap(lambda k, v: _hand_scores(model, k, v))
    cd, fs = _chunked(fn, (hand_joints, data.hand_verts))
    return {"cd_h": cd, "fs_h1": fs[:, 0], "fs_h5": fs[:, 1]}


def evaluate_tiger(params: dict, config: TigerConfig, data: TigerData, *,
                   with_hands: bool = True, model: mano.ManoModel | None = None
                   ) -> dict[str, dict[str, np.ndarray]]:
    """Per-example arrays for the refined object (``"refined"``, with the hand metrics when
    ``with_hands``) and the unrefined prior at the predicted centre (``"prior"``); both also
    carry ``r_occ``."""
    pred = predict_tiger(params, config, data)
    r_occ = occlusion_rate(data)
    refined = score_objects(pred["points_obj"], pred["center_cam"], data)
    if with_hands:
        refined.update(score_hands(pred["hand_joints"], data, model))
    prior = score_objects(data.prior_obj, pred["center_cam"], data)
    refined["r_occ"] = prior["r_occ"] = r_occ
    return {"refined": refined, "prior": prior}


def summarize(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Median of every CD, mean of every F-score (the paper's reductions)."""
    out = {}
    for k, v in arrays.items():
        if k.startswith("cd"):
            out[k] = float(np.median(v))
        elif k.startswith("fs"):
            out[k] = float(np.mean(v))
    return out


def occlusion_bins(r_occ: np.ndarray, num_bins: int = 10) -> list[np.ndarray]:
    """Indices of ``num_bins`` equal-count groups of examples sorted by occlusion rate (ties
    broken by index; the first ``N mod num_bins`` groups hold one more)."""
    order = np.argsort(r_occ, kind="stable")
    return [np.asarray(b) for b in np.array_split(order, num_bins)]


def binned(arrays: dict[str, np.ndarray], bins: list[np.ndarray]) -> dict[str, list[float]]:
    """Per bin: occlusion range, median CD and mean F-score of every metric."""
    out: dict[str, list[float]] = {"r_occ_min": [], "r_occ_max": [], "count": []}
    for b in bins:
        out["r_occ_min"].append(float(arrays["r_occ"][b].min()))
        out["r_occ_max"].append(float(arrays["r_occ"][b].max()))
        out["count"].append(int(len(b)))
        for k, v in summarize({k: v[b] for k, v in arrays.items()}).items():
            out.setdefault(k, []).append(v)
    return out


def plot_occlusion_bins(path, curves: dict[str, dict[str, list[float]]],
                        metric: str = "cd_o_centred", ylabel: str | None = None) -> None:
    """Fig. 5-style plot: the median ``metric`` per occlusion bin for each named curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=120)
    for name, b in curves.items():
        x = np.arange(1, len(b[metric]) + 1)
        style = "-o" if name.startswith("refined") else "--s"
        ax.plot(x, b[metric], style, ms=3.5, lw=1.2, label=name)
    first = next(iter(curves.values()))
    ax.set_xticks(np.arange(1, len(first[metric]) + 1))
    ax.set_xticklabels([f"{lo:.2f}–{hi:.2f}" for lo, hi in zip(first["r_occ_min"],
                                                                first["r_occ_max"])],
                       rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("occlusion rate R_occ (10 equal-count bins)")
    ax.set_ylabel(ylabel or metric)
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
