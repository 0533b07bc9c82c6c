"""L_dino's support rule at DINO's native resolution: strict vs adaptive (issue: "L_dino switched
itself off").

The benchmark's feature maps are generated at ``--feature-stride`` pixels per cell (16, DINOv3's
patch: 8 × 8 maps on 128² frames; the default benchmark uses 4). For each rule, the same
sequences are tracked (demo caps by default) and scored: the fraction of processed frames with
L_dino active, rotation / translation / ADD-S, success. Tune on development seeds (``--seed``
0), report on held-out ones (``--seed 1000``), never the other way round.

    python experiments/dino_support.py [--sequences 8] [--frames 20] [--image-size 128]
        [--feature-stride 16] [--seed 0] [--modes strict adaptive]

Writes ``experiments/results/dino_support_seed<seed>_<modes>_<backend>.json``.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--feature-stride", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", nargs="+", default=["strict", "adaptive"])
    ap.add_argument("--object-iters", type=int, default=200)
    ap.add_argument("--hand-iters", type=int, default=100)
    ap.add_argument("--iof-iters", type=int, default=200)
    args = ap.parse_args()

    configs = [dataclasses.replace(c, feature_stride=args.feature_stride)
               for c in data.tracking_benchmark_configs(args.sequences, args.frames,
                                                        args.image_size, seed=args.seed)]
    seqs = {f"seq_{c.seed:04d}_{c.object_kind}_{c.occlusion}": data.generate_sequence(c)
            for c in configs}
    fmap = next(iter(seqs.values())).features.shape[1:3]
    out = {"args": vars(args), "feature_map": list(fmap), "backend": jax.default_backend(),
           "versions": package_versions("jax", "jaxlib"), "modes": {}}
    for mode in args.modes:
        config = tracking.TrackConfig(object_iters=args.object_iters, hand_iters=args.hand_iters,
                                      iof_iters=args.iof_iters, dino_support=mode)
        t0 = time.perf_counter()
        run = tracking.track_sequences(seqs, tracking.ManoSource.synthetic(), config,
                                       tracking.TrackHyper(), tracking.RunOptions(),
                                       log=lambda m: print(m, flush=True))
        wall = time.perf_counter() - t0
        evals = tracking.evaluate_run(run, seqs)
        s = tracking.summarize(list(evals.values()))
        active = {n: tracking.term_activity(r)["dino"] for n, r in run.results.items()}
        per_seq = {n: {"dino_active": active[n], **{k: e["mean"][k] for k in
                                                      ("rot_err_deg", "trans_err_mm", "adds_mm")},
                       "failed": e["failed"]} for n, e in evals.items()}
        out["modes"][mode] = {
            "wall_s": wall, "dino_active_mean": float(np.mean(list(active.values()))),
            **{k: s[k] for k in ("rot_err_deg_median", "trans_err_mm_median", "adds_mm_mean",
                                 "mpjpe_mm_mean", "success_rate")},
            "per_sequence": per_seq, "errors": run.errors}
        m = out["modes"][mode]
        print(f"{mode}: dino active {m['dino_active_mean']:.2f} | rot {m['rot_err_deg_median']:.2f}° "
              f"| trans {m['trans_err_mm_median']:.2f} mm | ADD-S {m['adds_mm_mean']:.2f} mm | "
              f"SR {100 * m['success_rate']:.0f}% | {wall:.0f} s", flush=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / (f"dino_support_seed{args.seed}_{'_'.join(args.modes)}_"
                      f"{jax.default_backend()}.json")
    path.write_text(json.dumps(tracking.jsonable(out), indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
