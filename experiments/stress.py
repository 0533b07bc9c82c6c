"""Stress report: tracking success and median errors against occlusion, speed and observation
damage, one axis at a time around a benchmark-v2 base (issue 17).

Each level of each axis gets the same ``--seeds`` sequences (seeds from ``--seed``, sequence
``j`` the ``j``-th of ``ALL_OBJECT_KINDS``), so the levels differ only in that axis; every
other setting is the base's: contact grasp, 0.5 m,
medium occlusion, 30°/s and 0.1 m/s peaks, moderate damage (level 0.3). All sequences are
tracked in one ``track_sequences`` call (batched by shape) with the given caps, then scored
(symmetry-aware rotation, translation, ADD-S, MPJPE: medians over the processed frames of a
level's sequences; success by AGILE's rule).

    python experiments/stress.py [--seeds 2] [--frames 20] [--image-size 128] [--seed 1000]
        [--axes occlusion speed damage]

Writes ``experiments/results/stress_seed<seed>_<backend>.json``, ``.md`` (the table) and
``.png`` (one panel per axis). Tune on development seeds (1000...), report on held-out ones
(9000...).
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

AXES = {
    "occlusion": [("light", dict(occlusion="light")), ("medium", dict(occlusion="medium")),
                  ("heavy", dict(occlusion="heavy")),
                  ("medium+occluder 0.5", dict(occlusion="medium", occluder=0.5))],
    "speed": [(f"{r}°/s", dict(motion_rot_deg_per_s=float(r), motion_trans_m_per_s=r / 180.0,
                               speed=max(0.5, r / 45.0))) for r in (15, 45, 90)],
    "damage": [(f"{x:g}", None) for x in (0.0, 0.5, 1.0)],
}


def damage(level: float) -> dict:
    """Observation damage at ``level`` in [0, 1] (keypoints, masks, depth, features)."""
    return dict(keypoint_noise_px=1.0 + 3.0 * level, keypoint_dropout=0.2 * level,
                keypoint_outliers=0.1 * level, mask_damage=level, depth_model="sensor",
                depth_noise_m=0.001 + 0.002 * level, depth_holes=0.15 * level,
                feature_correlation=1.0 - 0.4 * level, feature_noise=0.03 + 0.07 * level)


def base_config(seed: int, kind: str, frames: int, size: int) -> data.SyntheticConfig:
    return data.SyntheticConfig(
        seed=seed, num_frames=frames, image_size=(size, size), object_kind=kind,
        grasp="contact", distance_m=0.5, focal_factor=2.2, feature_stride=8,
        occlusion="medium", motion_rot_deg_per_s=30.0, motion_trans_m_per_s=0.1,
        object_init_rot_deg=15.0 / np.sqrt(3), object_init_trans_m=0.02, **damage(0.3))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=data.DEV_SEED)
    ap.add_argument("--axes", nargs="+", default=list(AXES), choices=list(AXES))
    ap.add_argument("--stride", type=int, default=5)
    ap.add_argument("--object-iters", type=int, default=400)
    ap.add_argument("--hand-iters", type=int, default=200)
    ap.add_argument("--iof-iters", type=int, default=300)
    args = ap.parse_args()

    seqs, level_of = {}, {}
    t0 = time.perf_counter()
    for axis in args.axes:
        for label, change in AXES[axis]:
            for j in range(args.seeds):
                seed = args.seed + j
                kind = data.ALL_OBJECT_KINDS[j % len(data.ALL_OBJECT_KINDS)]
                cfg = base_config(seed, kind, args.frames, args.image_size)
                cfg = dataclasses.replace(cfg, **(damage(float(label)) if change is None
                                                  else change))
                name = f"{axis}_{label.replace(' ', '_').replace('/', '_')}_{seed}_{kind}"
                seqs[name] = data.generate_sequence(cfg)
                level_of[name] = (axis, label)
    gen_s = time.perf_counter() - t0
    config = tracking.TrackConfig(object_iters=args.object_iters, hand_iters=args.hand_iters,
                                  iof_iters=args.iof_iters, stride=args.stride)
    t0 = time.perf_counter()
    run = tracking.track_sequences(seqs, tracking.ManoSource.synthetic(), config,
                                   tracking.TrackHyper(), tracking.RunOptions(),
                                   log=lambda m: print(m, flush=True))
    track_s = time.perf_counter() - t0
    evals = tracking.evaluate_run(run, seqs)

    rows = []
    for axis in args.axes:
        for label, _ in AXES[axis]:
            es = [e for n, e in evals.items() if level_of[n] == (axis, label)]
            if not es:
                continue
            sm = tracking.summarize(es)
            rows.append({"axis": axis, "level": label, "sequences": len(es),
                         "success_rate": sm["success_rate"],
                         **{f"{m}_median": sm[f"{m}_median"]
                            for m in ("rot_sym_err_deg", "trans_err_mm", "adds_mm", "mpjpe_mm")}})
    out = {"args": vars(args), "backend": jax.default_backend(),
           "versions": package_versions("jax", "jaxlib"), "generate_s": gen_s,
           "track_s": track_s, "rows": rows, "errors": run.errors,
           "per_sequence": {n: {"axis": level_of[n][0], "level": level_of[n][1],
                                "failed": e["failed"],
                                **{m: e["mean"][m] for m in ("rot_sym_err_deg",
                                                             "trans_err_mm", "adds_mm")}}
                            for n, e in evals.items()}}
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"stress_seed{args.seed}_{jax.default_backend()}"
    stem.with_suffix(".json").write_text(json.dumps(tracking.jsonable(out), indent=2))
    lines = ["| axis | level | n | success | rot (sym) ° | trans mm | ADD-S mm | MPJPE mm |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['axis']} | {r['level']} | {r['sequences']} | "
              f"{100 * r['success_rate']:.0f} % | {r['rot_sym_err_deg_median']:.2f} | "
              f"{r['trans_err_mm_median']:.2f} | {r['adds_mm_median']:.2f} | "
              f"{r['mpjpe_mm_median']:.2f} |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(rows, args.axes, stem.with_suffix(".png"))
    print(f"wrote {stem}.json/.md/.png ({gen_s:.0f} s generating, {track_s:.0f} s tracking)")


def _plot(rows, axes, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, panels = plt.subplots(1, len(axes), figsize=(4.5 * len(axes), 3.4), squeeze=False)
    for ax, axis in zip(panels[0], axes):
        rs = [r for r in rows if r["axis"] == axis]
        x = np.arange(len(rs))
        ax.plot(x, [r["adds_mm_median"] for r in rs], "o-", label="ADD-S mm")
        ax.plot(x, [r["trans_err_mm_median"] for r in rs], "s-", label="translation mm")
        ax.plot(x, [r["rot_sym_err_deg_median"] for r in rs], "^-", label="rotation (sym) °")
        ax2 = ax.twinx()
        ax2.bar(x, [100 * r["success_rate"] for r in rs], alpha=0.15, color="k")
        ax2.set_ylim(0, 105)
        ax2.set_ylabel("success %")
        ax.set_xticks(x, [r["level"] for r in rs], fontsize=8)
        ax.set_title(axis)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
