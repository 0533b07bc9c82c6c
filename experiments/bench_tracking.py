"""Per-frame cost of the batched tracker (AGILE §3.3 at its default iteration caps).

For each batch size B: B synthetic sequences (copies of a few generated ones with their own
initial poses; cost does not depend on content beyond early stopping) are tracked by
``tracking.track_batch`` in one compiled program. Reports the first call (compilation included)
and the median of warm repeats, then seconds per *processed* frame (the frames the optimizer
runs on: every ``stride``-th frame from the anchor) for one sequence and amortized over the batch,
and the iterations the early stop actually used. These per-frame figures include each
sequence's initialization, hand refinement and anchor stages. Given two or more ``--frames``,
the steady cost of one more processed frame (steps 1 and 2 only) is also reported, as the
difference between the longest and shortest runs over the difference in processed frames.
The reference is AGILE's 30–50 s per frame on an RTX 4090 (their paper); the ratio is quoted
against that, since no PyTorch AGILE runs here.

``--solvers adam lm`` measures each solver in the same run (Adam at the caps above, or
Levenberg–Marquardt at ``--lm-iters``/``--lm-anchor-iters``) and reports the ratio of their steady
costs and of their warm batch times, with the accuracy of each run on the benchmark's ground
truth (rotation, translation, MPJPE, success), so a speed-up is never quoted without the
accuracy it came with. ``--batching vmap map`` does the same for ``TrackConfig.batching``
(sequences vectorised, or one after another in a loop), rows labelled ``adam``, ``adam/map``.

    python experiments/bench_tracking.py [--batches 1 8] [--frames 16 [31]] [--image-size 128]
        [--repeats 2] [--object-iters 400 --hand-iters 200 --iof-iters 300]
        [--solvers adam [lm]] [--batching vmap [map]] [--lm-iters 30 --lm-anchor-iters 60]
        [--lm-mask-levels 0 --lm-level-iters 15] [--no-hand-fit] [--out FILE]

``--no-hand-fit`` leaves out the hand refinement (``fit_hand``, Adam over every frame, not only
the processed ones), so the steady cost is that of the per-frame steps alone.

Writes ``experiments/results/bench_tracking_<backend>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np
from _common import package_versions

from hoijax import data, mano, tracking

RESULTS = Path(__file__).resolve().parent / "results"
AGILE_S_PER_FRAME = (30.0, 50.0)


def _accuracy(res, seqs, model, limit: int = 8) -> dict:
    """Median rotation/translation error, mean MPJPE and success over the batch's first
    ``limit`` sequences (a large batch repeats the same few sequences)."""
    evals = [tracking.evaluate_sequence(jax.tree.map(lambda x, i=i: x[i], res), seq, model)
             for i, seq in enumerate(seqs[:limit])]
    s = tracking.summarize(evals)
    return {k: s[k] for k in ("rot_err_deg_median", "trans_err_mm_median", "mpjpe_mm_mean",
                              "adds_mm_mean", "success_rate")}


def _variant(config) -> str:
    """A row's label: the solver, with ``/map`` for ``TrackConfig.batching="map"``."""
    return config.solver + ("/map" if config.batching == "map" else "")


def _bench(base, preps, model, config, B, frames, args) -> dict:
    idx = [i % len(base) for i in range(B)]
    batch = data.stack_sequences([base[i] for i in idx])
    prep = tracking.stack_prepared([preps[i] for i in idx])

    def run():
        return tracking.track_batch(batch, prep, model, tracking.TrackHyper(), config,
                                    jax.random.PRNGKey(0))

    t0 = time.perf_counter()
    res = jax.block_until_ready(run())
    first = time.perf_counter() - t0
    warm = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = jax.block_until_ready(run())
        warm.append(time.perf_counter() - t0)
    med = statistics.median(warm)
    processed = int(np.sum(np.asarray(res.processed)))
    oi = np.asarray(res.object_iters)[np.asarray(res.processed)]
    hi = np.asarray(res.hand_iters)[np.asarray(res.processed)]
    row = {
        "variant": _variant(config), "solver": config.solver, "batching": config.batching,
        "batch": B, "frames_per_sequence": frames, "processed_frames": processed,
        "first_call_s": first, "compile_s_estimate": first - med, "warm_median_s": med,
        "warm_s": warm, "s_per_processed_frame_amortized": med / processed,
        "s_per_processed_frame_one_sequence": med / (processed / B),
        "object_iters_mean": float(oi.mean()), "hand_iters_mean": float(hi.mean()),
        "speedup_vs_agile_30s": 30.0 / (med / processed),
        "accuracy": _accuracy(res, [base[i] for i in idx], model),
    }
    print(f"{_variant(config):8s} B={B:3d}, {frames} frames: first call {first:6.1f} s, "
          f"warm {med:6.1f} s, "
          f"{row['s_per_processed_frame_amortized']:.3f} s/frame amortized "
          f"({processed} frames; step-2 iterations used {row['object_iters_mean']:.0f} of "
          f"{args.object_iters}) → {row['speedup_vs_agile_30s']:.0f}× AGILE's 30 s")
    return row


def _marginal(rows: list[dict], batches: list[int], variant: str) -> list[dict]:
    """Per batch size: (longest − shortest run) / (difference in processed frames)."""
    out = []
    for B in batches:
        mine = sorted((r for r in rows if r["batch"] == B and r["variant"] == variant),
                      key=lambda r: r["processed_frames"])
        if len(mine) < 2 or mine[-1]["processed_frames"] <= mine[0]["processed_frames"]:
            continue
        dt = mine[-1]["warm_median_s"] - mine[0]["warm_median_s"]
        per = dt / (mine[-1]["processed_frames"] - mine[0]["processed_frames"])
        out.append({"variant": variant, "batch": B, "frames": [mine[0]["frames_per_sequence"],
                                           mine[-1]["frames_per_sequence"]],
                    "s_per_extra_processed_frame_amortized": per,
                    "speedup_vs_agile_30s": 30.0 / per})
        print(f"{variant:8s} B={B:3d}: one more processed frame costs {per:.3f} s amortized "
              f"→ {30.0 / per:.0f}× AGILE's 30 s")
    return out


def _ratios(rows: list[dict], marginal: list[dict], variants: list[str]) -> list[dict]:
    """Each variant's cost against the first one's, at the same batch (and frames)."""
    out = []
    ref = variants[0]
    for other in variants[1:]:
        for m in (m for m in marginal if m["variant"] == other):
            r = next((x for x in marginal if x["variant"] == ref and x["batch"] == m["batch"]),
                     None)
            if r:
                k = "s_per_extra_processed_frame_amortized"
                out.append({"variant": other, "reference": ref, "batch": m["batch"],
                            "steady_speedup": r[k] / m[k]})
        for row in (x for x in rows if x["variant"] == other):
            r = next(x for x in rows if x["variant"] == ref and x["batch"] == row["batch"]
                     and x["frames_per_sequence"] == row["frames_per_sequence"])
            out.append({"variant": other, "reference": ref, "batch": row["batch"],
                        "frames": row["frames_per_sequence"],
                        "warm_batch_speedup": r["warm_median_s"] / row["warm_median_s"],
                        "first_call_ratio": r["first_call_s"] / row["first_call_s"]})
    for o in out:
        print(o)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--frames", type=int, nargs="+", default=[16])
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--object-iters", type=int, default=400)
    ap.add_argument("--hand-iters", type=int, default=200)
    ap.add_argument("--iof-iters", type=int, default=300)
    ap.add_argument("--stride", type=int, default=5)
    ap.add_argument("--distinct", type=int, default=2, help="distinct sequences generated")
    ap.add_argument("--solvers", nargs="+", choices=("adam", "lm"), default=["adam"])
    ap.add_argument("--no-hand-fit", action="store_true",
                    help="leave out the hand refinement (its cost grows with every frame)")
    ap.add_argument("--batching", nargs="+", choices=("vmap", "map"), default=["vmap"],
                    help="TrackConfig.batching: each is measured with each solver")
    ap.add_argument("--lm-iters", type=int, default=30)
    ap.add_argument("--lm-anchor-iters", type=int, default=60)
    ap.add_argument("--lm-mask-levels", type=float, nargs="*", default=[],
                    help="TrackConfig.lm_mask_levels: LM first with L_mask's weight scaled by "
                    "these (default: none)")
    ap.add_argument("--lm-level-iters", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    configs = [tracking.TrackConfig(stride=args.stride, hand_iters=args.hand_iters,
                                    object_iters=args.object_iters, iof_iters=args.iof_iters,
                                    solver=solver, lm_iters=args.lm_iters,
                                    hand_fit=tracking.HandFitConfig(enabled=not args.no_hand_fit),
                                    lm_anchor_iters=args.lm_anchor_iters, batching=batching,
                                    lm_mask_levels=tuple(args.lm_mask_levels) or None,
                                    lm_level_iters=args.lm_level_iters)
               for solver in args.solvers for batching in args.batching]
    model = mano.synthetic_mano("right")
    rows = []
    for frames in args.frames:
        base = [data.generate_sequence(c)
                for c in data.tracking_benchmark_configs(args.distinct, frames, args.image_size)]
        preps = [tracking.prepare(s, configs[0]) for s in base]
        for B in args.batches:
            for config in configs:  # interleaved, so every variant sees the same machine load
                rows.append(_bench(base, preps, model, config, B, frames, args))
    variants = [_variant(c) for c in configs]
    marginal = [m for v in variants for m in _marginal(rows, args.batches, v)]
    ratios = _ratios(rows, marginal, variants)
    out = args.out or RESULTS / f"bench_tracking_{jax.default_backend()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "backend": jax.default_backend(),
                    "devices": [str(d) for d in jax.devices()]},
        "versions": package_versions("jax", "jaxlib", "equinox", "optax"),
        "settings": {**vars(args), "out": str(out)},
        "reference": {"agile_s_per_frame_rtx4090": AGILE_S_PER_FRAME},
        "rows": rows,
        "marginal": marginal,
        "ratios_vs_first_variant": ratios,
    }, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
