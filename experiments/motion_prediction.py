"""Constant-velocity motion prediction of each frame's starting pose (``TrackConfig.
motion_prediction``) against AGILE's start from the previous pose, on fast motion (issue: "the
stride outran the tracker").

The benchmark's sequences at ``--speed`` times their usual motion are tracked at ``--stride``
with each factor (demo caps by default) and scored: rotation (plain and modulo symmetry),
translation, ADD-S, success. Tune on development seeds (``--seed`` 0), report on held-out ones
(``--seed 1000``), never the other way round.

    python experiments/motion_prediction.py [--sequences 4] [--frames 20] [--image-size 96]
        [--speed 3] [--stride 5] [--seed 0] [--factors 0 1]

Writes ``experiments/results/motion_prediction_seed<seed>_speed<speed>_<backend>.json`` after
every factor (a run cut short keeps what it finished).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np
from _common import package_versions

from hoijax import data, tracking

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("rot_err_deg_median", "rot_sym_err_deg_median", "trans_err_mm_median", "adds_mm_mean",
        "mssd_mm_median", "mpjpe_mm_mean", "success_rate")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequences", type=int, default=4)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--speed", type=float, default=3.0)
    ap.add_argument("--stride", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--factors", type=float, nargs="+", default=[0.0, 1.0])
    ap.add_argument("--object-iters", type=int, default=200)
    ap.add_argument("--hand-iters", type=int, default=100)
    ap.add_argument("--iof-iters", type=int, default=200)
    args = ap.parse_args()

    configs = [dataclasses.replace(c, speed=c.speed * args.speed)
               for c in data.tracking_benchmark_configs(args.sequences, args.frames,
                                                        args.image_size, seed=args.seed)]
    seqs = {f"seq_{c.seed:04d}_{c.object_kind}_{c.occlusion}": data.generate_sequence(c)
            for c in configs}
    out = {"args": vars(args), "backend": jax.default_backend(),
           "versions": package_versions("jax", "jaxlib"), "factors": {}}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / (f"motion_prediction_seed{args.seed}_speed{args.speed:g}_"
                      f"{jax.default_backend()}.json")
    for factor in args.factors:
        config = tracking.TrackConfig(object_iters=args.object_iters, hand_iters=args.hand_iters,
                                      iof_iters=args.iof_iters, stride=args.stride,
                                      motion_prediction=factor)
        t0 = time.perf_counter()
        run = tracking.track_sequences(seqs, tracking.ManoSource.synthetic(), config,
                                       tracking.TrackHyper(), tracking.RunOptions(),
                                       log=lambda m: print(m, flush=True))
        wall = time.perf_counter() - t0
        evals = tracking.evaluate_run(run, seqs)
        s = tracking.summarize(list(evals.values()))
        per_seq = {n: {**{k: e["mean"][k] for k in ("rot_err_deg", "rot_sym_err_deg",
                                                     "trans_err_mm", "adds_mm")},
                       "adds_interpolated": e["mean_interpolated"]["adds_mm"],
                       "failed": e["failed"], "symmetry": e["symmetry"]}
                   for n, e in evals.items()}
        out["factors"][f"{factor:g}"] = {"wall_s": wall, **{k: s[k] for k in KEYS},
                                         "adds_mm_interpolated_mean":
                                             s["adds_mm_interpolated_mean"],
                                         "per_sequence": per_seq, "errors": run.errors}
        m = out["factors"][f"{factor:g}"]
        print(f"factor {factor:g}: rot {m['rot_err_deg_median']:.2f}° (sym "
              f"{m['rot_sym_err_deg_median']:.2f}°) | trans {m['trans_err_mm_median']:.2f} mm | "
              f"ADD-S {m['adds_mm_mean']:.2f} mm (between {m['adds_mm_interpolated_mean']:.2f}) "
              f"| SR {100 * m['success_rate']:.0f}% | {wall:.0f} s", flush=True)
        for n, r in per_seq.items():
            print(f"  {n}: rot {r['rot_err_deg']:.2f} sym {r['rot_sym_err_deg']:.2f} trans "
                  f"{r['trans_err_mm']:.2f} ADD-S {r['adds_mm']:.2f} failed {r['failed']}",
                  flush=True)
        path.write_text(json.dumps(tracking.jsonable(out), indent=2))
    print(f"wrote {path}; medians over processed frames: "
          f"{ {f: round(float(np.asarray(v['trans_err_mm_median'])), 2) for f, v in out['factors'].items()} }")


if __name__ == "__main__":
    main()
