"""Hand refinement on the synthetic benchmark: ``init_hand`` (AGILE §3.2) then ``fit_hand``.

Generates ``benchmark_configs(n, frames, image_size)`` sequences, runs the metric hand
initialization per sequence, then the MANO refinement vmapped over all sequences in one jitted
program, and reports per sequence and median: root-relative MPJPE (mm, root = joint 0, no
alignment), camera-frame mean joint error (mm) and the hand scale, before and after, plus the
wall time of the refinement (compilation reported apart). Ground truth is used for the metrics
only. As a reference, the "betas floor" is the root-relative MPJPE of the *true* articulation and
wrist rotation with the detector's (kept) betas at the best scale: what a perfect fit of the
refined parameters could reach.

    python experiments/hand_fit_check.py [--n 8] [--frames 30] [--image-size 128] [--seed 0]
        [--iters 200] [--keypoint-iters 100] [--align-iters 100] [--fine-iters 100]
        [--num-points 128] [--fit-betas] [--no-depth] [--cache DIR] [--out FILE]
        [--sequences DIR ...] [--icp-bounds LO HI] [--hyper FIELD=VALUE ...] [--repeats 2]
        [--solver adam|lm] [--lm-iters 40]

``--sequences`` reads saved sequences (e.g. ``hoijax generate --benchmark v2``; all of one
shape) instead of generating v1 ones. ``--icp-bounds 0.8 1.25`` replaces an ICP hand scale
outside the bounds by 1, as the tracker does with its refinement on (``HandFitHyper.icp_scale_min``
/ ``icp_scale_max``); without it the ICP scale is kept (AGILE's). Each row says whether it fell
back. Writes ``experiments/results/hand_fit_check.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _common import package_versions

from hoijax import data, mano, tracking
from hoijax.tracking.stages import HandObs, fit_hand, hand_in_mano_frame, init_hand

RESULTS = Path(__file__).resolve().parent / "results"


def _sequences(args) -> tuple[list[str], list[data.Sequence]]:
    """(occlusion label per sequence, the sequences)."""
    if args.sequences:
        meta = [json.loads((d / "manifest.json").read_text()).get("meta", {})
                for d in args.sequences]
        return ([m.get("config", {}).get("occlusion", "?") for m in meta],
                [data.load_sequence(d) for d in args.sequences])
    cfgs = data.tracking_benchmark_configs(args.n, args.frames, args.image_size, seed=args.seed)
    if args.cache is None:
        return [c.occlusion for c in cfgs], [data.generate_sequence(c) for c in cfgs]
    seqs = []
    for i, c in enumerate(cfgs):
        d = args.cache / f"seq_{args.seed}_{args.frames}_{args.image_size}_{i:03d}"
        if not (d / "manifest.json").exists():
            data.save_sequence(data.generate_sequence(c), d)
        seqs.append(data.load_sequence(d))
    return [c.occlusion for c in cfgs], seqs


def _errors(joints_cam, gt) -> tuple[float, float]:
    """(root-relative MPJPE, camera-frame mean joint error), mm, over all frames."""
    rel = (joints_cam - joints_cam[:, :1]) - (gt - gt[:, :1])
    return (float(np.linalg.norm(rel, axis=-1).mean() * 1e3),
            float(np.linalg.norm(joints_cam - gt, axis=-1).mean() * 1e3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--keypoint-iters", type=int, default=100)
    ap.add_argument("--align-iters", type=int, default=100)
    ap.add_argument("--fine-iters", type=int, default=100)
    ap.add_argument("--num-points", type=int, default=128)
    ap.add_argument("--fit-betas", action="store_true", help="also fit a per-sequence shape")
    ap.add_argument("--no-depth", action="store_true", help="keypoints only")
    ap.add_argument("--cache", type=Path, default=None, help="save/load generated sequences")
    ap.add_argument("--out", type=Path, default=RESULTS / "hand_fit_check.json")
    ap.add_argument("--sequences", type=Path, nargs="+", default=None,
                    help="saved sequence directories instead of generated v1 ones")
    ap.add_argument("--icp-bounds", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="replace an ICP hand scale outside [LO, HI] by 1 (the tracker: 0.8 1.25)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs (median reported)")
    ap.add_argument("--solver", default="adam", choices=["adam", "lm"],
                    help="HandFitConfig.solver")
    ap.add_argument("--lm-iters", type=int, default=40)
    ap.add_argument("--hyper", nargs="+", default=[], metavar="FIELD=VALUE",
                    help="HandFitHyper fields, e.g. keypoint_sigma_px=3")
    args = ap.parse_args()
    hyper = tracking.HandFitHyper(**{k: float(v) for k, v in
                                     (a.split("=", 1) for a in args.hyper)})

    labels, seqs = _sequences(args)
    model = mano.synthetic_mano("right")
    key = jax.random.PRNGKey(0)
    bounds = None if args.icp_bounds is None else tuple(args.icp_bounds)
    init_fn = jax.jit(lambda s: init_hand(model, HandObs.of(s), key, scale_bounds=bounds))
    inits = [init_fn(s) for s in seqs]
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    batch = stack([(s.K, s.hand_init, s.keypoints_px, s.keypoints_conf, s.valid, s.hand_mask,
                    s.depth_m) for s in seqs])
    scale0 = jnp.stack([h.scale for h in inits])
    transl0 = jnp.stack([h.transl for h in inits])
    keys = jax.random.split(key, len(seqs))

    def fit_one(K, hand, kp, conf, valid, mask, depth, scale, transl, k):
        if args.no_depth:
            mask = depth = None
        return fit_hand(model, HandObs(K, hand, kp, conf, valid, mask, depth), scale, transl, k,
                        config=tracking.HandFitConfig(
                            iters=args.iters, keypoint_iters=args.keypoint_iters,
                            align_iters=args.align_iters, fine_iters=args.fine_iters,
                            num_points=args.num_points, fit_betas=args.fit_betas,
                            solver=args.solver, lm_iters=args.lm_iters),
                        hyper=hyper)

    fit = jax.jit(jax.vmap(fit_one))
    inputs = (*batch, scale0, transl0, keys)
    t0 = time.perf_counter()
    compiled = fit.lower(*inputs).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = jax.block_until_ready(compiled(*inputs))
        times.append(time.perf_counter() - t0)

    kps_fn = jax.jit(jax.vmap(lambda p: hand_in_mano_frame(model, p)[1]))
    rows = []
    for i, s in enumerate(seqs):
        gt = np.asarray(s.gt.joints_cam, np.float64)
        kp0 = np.asarray(kps_fn(s.hand_init), np.float64)
        before = np.asarray(inits[i].scale) * kp0 + np.asarray(inits[i].transl)[:, None]
        r = jax.tree.map(lambda x, i=i: x[i], res)
        kp1 = np.asarray(kps_fn(r.hand), np.float64)
        after = float(r.scale) * kp1 + np.asarray(r.transl)[:, None]
        oracle = data.HandParams(betas=s.hand_init.betas, hand_pose=s.gt.hand.hand_pose,
                                 global_orient=s.gt.hand.global_orient,
                                 transl=s.hand_init.transl)
        ko = np.asarray(kps_fn(oracle), np.float64)
        a, b = ko - ko[:, :1], gt - gt[:, :1]
        floor = np.linalg.norm((a * b).sum() / (a * a).sum() * a - b, axis=-1).mean() * 1e3
        rr0, cam0 = _errors(before, gt)
        rr1, cam1 = _errors(after, gt)
        rows.append({"seq": i, "occlusion": labels[i],
                     "scale_fallback": bool(inits[i].scale_fallback),
                     "rr_mpjpe_mm": [rr0, rr1], "cam_err_mm": [cam0, cam1],
                     "scale": [float(inits[i].scale), float(r.scale)],
                     "betas_floor_rr_mm": float(floor), "iters": int(r.num_iters),
                     "finite": bool(r.finite)})
        print(f"seq {i} ({rows[-1]['occlusion']:6s}) rr-MPJPE {rr0:5.1f} -> {rr1:5.1f} mm | "
              f"cam {cam0:6.1f} -> {cam1:5.1f} mm | scale {float(inits[i].scale):.3f} -> "
              f"{float(r.scale):.3f} | floor {floor:.1f} | iters {int(r.num_iters)} "
              f"finite {bool(r.finite)}")
    med = lambda k, j: float(np.median([row[k][j] for row in rows]))  # noqa: E731
    summary = {"rr_mpjpe_mm": [med("rr_mpjpe_mm", 0), med("rr_mpjpe_mm", 1)],
               "rr_mpjpe_mm_mean_after": float(np.mean([r["rr_mpjpe_mm"][1] for r in rows])),
               "rr_mpjpe_mm_worst_after": float(np.max([r["rr_mpjpe_mm"][1] for r in rows])),
               "scale_fallbacks": int(sum(r["scale_fallback"] for r in rows)),
               "cam_err_mm": [med("cam_err_mm", 0), med("cam_err_mm", 1)],
               "betas_floor_rr_mm": float(np.median([r["betas_floor_rr_mm"] for r in rows])),
               "compile_s": compile_s, "run_s": float(np.median(times))}
    print(f"median rr-MPJPE {summary['rr_mpjpe_mm'][0]:.1f} -> {summary['rr_mpjpe_mm'][1]:.1f}"
          f" mm | cam {summary['cam_err_mm'][0]:.1f} -> {summary['cam_err_mm'][1]:.1f} mm | "
          f"betas floor {summary['betas_floor_rr_mm']:.1f} mm | compile {compile_s:.1f} s, "
          f"run {summary['run_s']:.1f} s for {len(seqs)} sequences")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "args": {k: ([str(x) for x in v] if isinstance(v, list) else
                     str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"platform": platform.platform(), "backend": jax.default_backend(),
                    "cpus": jax.device_count()},
        "versions": package_versions("jax", "jaxlib", "equinox", "optax"),
        "summary": summary, "sequences": rows}, indent=1))


if __name__ == "__main__":
    main()
