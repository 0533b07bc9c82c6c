"""How well Eq. 8 finds the interaction onset frame on saved sequences with a known onset.

AGILE's onset frame is the first frame whose motion ratio ``r_i`` (the change of the object's
mask outside the hand, relative to its area; ``tracking.motion_ratio``) exceeds τ. On clean masks
the ratio is zero while the object rests, so any τ > 0 works; with the per-frame mask damage of
benchmark v2 (erosion, dilation, holes, a wrong blob, occluders) it is not. This script reports,
per sequence and in total, the detected onset against ``gt.onset_frame`` for several τ, and the
two things that decide whether a threshold can work: the ratio's level while the object rests
(frames before the true onset: the noise) and once it moves (the three frames from the onset
on), beside the object's image motion in pixels per frame (its origin projected with the ground
truth, after the onset). Ground truth feeds only these measurements.

    python experiments/onset_accuracy.py DIR/seq_* [--tau 0.025 0.05 0.1 0.2]
        [--out experiments/results/onset_accuracy.json]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
from _common import package_versions

from hoijax import data
from hoijax.tracking import DEFAULT_ONSET_TAU, motion_ratio, onset_frame


def _project(K: np.ndarray, p: np.ndarray) -> np.ndarray:
    uvw = p @ K.T
    return uvw[..., :2] / uvw[..., 2:3]


def measure(directory: Path, taus: list[float]) -> dict:
    seq = data.load_sequence(directory)
    if seq.gt is None or seq.gt.onset_frame is None:
        raise SystemExit(f"{directory}: no gt.onset_frame to compare with")
    gt = int(np.asarray(seq.gt.onset_frame))
    valid = np.asarray(seq.valid)
    n = int(valid.sum())
    r = np.asarray(motion_ratio(seq.object_mask, seq.hand_mask))[:n - 1]
    detected = {}
    for tau in taus:
        f, found = onset_frame(seq.object_mask, seq.hand_mask, seq.valid, tau)
        detected[f"{tau:g}"] = {"frame": int(f), "found": bool(found)}
    centre = _project(np.asarray(seq.K, np.float64),
                      np.asarray(seq.gt.T_cam_obj, np.float64)[:n, :3, 3])
    px = np.linalg.norm(np.diff(centre, axis=0), axis=-1)
    return {
        "sequence": directory.name, "gt_onset": gt, "frames": n, "detected": detected,
        "ratio_at_rest_median": float(np.median(r[:gt])) if gt > 0 else None,
        "ratio_moving_median": float(np.median(r[gt:gt + 3])) if gt < n - 1 else None,
        "image_motion_px_per_frame": float(np.median(px[gt:gt + 3])) if gt < n - 1 else None,
    }


def summarize(rows: list[dict], taus: list[float]) -> dict:
    out = {}
    for tau in taus:
        err = np.array([r["detected"][f"{tau:g}"]["frame"] - r["gt_onset"] for r in rows])
        out[f"{tau:g}"] = {"exact": int(np.sum(err == 0)), "within_1": int(np.sum(abs(err) <= 1)),
                           "early_by_2_or_more": int(np.sum(err <= -2)),
                           "late_by_2_or_more": int(np.sum(err >= 2)),
                           "mean_abs_error_frames": float(np.mean(np.abs(err))),
                           "sequences": len(rows)}
    both = [r for r in rows if r["ratio_at_rest_median"] is not None
            and r["ratio_moving_median"] is not None]
    out["ratio_moving_above_rest"] = sum(r["ratio_moving_median"] > r["ratio_at_rest_median"]
                                         for r in both)
    out["ratio_compared"] = len(both)
    for key in ("ratio_at_rest_median", "ratio_moving_median", "image_motion_px_per_frame"):
        vals = [r[key] for r in rows if r[key] is not None]
        out[f"median_{key}"] = float(np.median(vals)) if vals else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sequences", nargs="+", type=Path)
    ap.add_argument("--tau", nargs="+", type=float,
                    default=[DEFAULT_ONSET_TAU, 0.05, 0.1, 0.2])
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent / "results" / "onset_accuracy.json")
    args = ap.parse_args()
    rows = [measure(d, args.tau) for d in args.sequences]
    summary = summarize(rows, args.tau)
    for tau in args.tau:
        s = summary[f"{tau:g}"]
        print(f"tau {tau:g}: exact {s['exact']}/{s['sequences']}, within one frame "
              f"{s['within_1']}, early by >= 2 {s['early_by_2_or_more']}, late by >= 2 "
              f"{s['late_by_2_or_more']}, mean |error| {s['mean_abs_error_frames']:.2f} frames")
    print(f"motion ratio at rest (median) {summary['median_ratio_at_rest_median']:.3f}, moving "
          f"{summary['median_ratio_moving_median']:.3f}; moving above rest in "
          f"{summary['ratio_moving_above_rest']}/{summary['ratio_compared']}; image motion "
          f"{summary['median_image_motion_px_per_frame']:.2f} px per frame")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "summary": summary, "sequences": rows,
        "command": "python experiments/onset_accuracy.py " + " ".join(
            str(d) for d in args.sequences) + " --tau " + " ".join(f"{t:g}" for t in args.tau),
        "machine": {"platform": platform.platform()},
        "versions": package_versions("jax", "jaxlib", "numpy"),
    }, indent=2))


if __name__ == "__main__":
    main()
