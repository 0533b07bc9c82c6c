"""TIGeR on held-out synthetic scenes: refined shape vs. unrefined prior, by occlusion rate,
and the Table IIIb ablation (without L_weight, without L_proj), over several training seeds.

Trains small TIGeR models on the CPU on synthetic scenes (``hoijax.tiger
.make_synthetic_tiger``; each training scene's prior cycles through sphere / other instance /
noisy ground truth): the full objective (Eq. 7), λ_weight = 0 and λ_proj = 0, each with every
training seed in ``--seeds`` (same data and steps; the seed sets the initialisation and the
batch order). Evaluates on the frames of held-out scenes (generator seed ``--test-seed``, disjoint
from the training scenes' ``--data-seed``), each frame once per prior source. The prior-vs-refined
table and the occlusion bins are those of the full model of the first seed; the bins won are
also given for every seed; Table IIIb is given per seed and as the mean over seeds. Writes
``experiments/results/tiger_table.{json,md}`` and ``experiments/results/tiger_bins.png``::

    taskset -c 1 python experiments/tiger_table.py    # the defaults below: 40 min measured
                                                      # (one core of the shared 2-core VM)

Nothing was tuned on the held-out scenes. The diagnosis behind the settings was made on a
separate dev split (training scenes of generator seed 21, test scenes of seed 22:
``--data-seed 21 --test-seed 22``): a 300-frame, 600-step model's refined shapes were shrunk
(median RMS radius 0.87 of the ground truth's on its own training frames, 0.82 on the dev test
frames: an under-fitted shape), by a similar fraction in every bin, which costs most in cm² on
the large objects that fill the low-occlusion bins (the generator caps the object's size only
for the heavy-occlusion view). Hence more training
scenes and frames per scene, more steps, two seeds and a larger test set; their sizes were set
by the one-hour budget, not compared on any split. On the same dev split, a reduced study of
L_proj's weight (``hoijax/tiger/_losses.py``'s docstring) found the larger the weight, the more
the shapes shrink, and no weight at which the full objective beats the one without L_proj; the
default was kept. The results do not all meet the issue's criteria; see the README.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np
from _common import package_versions

from hoijax import tiger

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = (("full", {}), ("no_weight", {"w_weight": 0.0}), ("no_proj", {"w_proj": 0.0}))
COLS = ("cd_o", "fs_o5", "fs_o10", "cd_o_centred", "fs_o5_centred", "fs_o10_centred")


def _fmt(v, k):
    return f"{v:.3f}" if k.startswith("fs") else f"{v:.2f}"


def _bins_won(ev, src):
    """Per prior source and metric: bins (of 10) where the refined shape beats its prior
    (median CD lower, mean F-score higher), camera frame and centred."""
    won, bins = {}, {}
    for s, sname in enumerate(tiger.PRIOR_SOURCES):
        for kind in ("refined", "prior"):
            arr = {k: v[src == s] for k, v in ev[kind].items()}
            bins[f"{kind}/{sname}"] = tiger.binned(arr, tiger.occlusion_bins(arr["r_occ"]))
        r, p = bins[f"refined/{sname}"], bins[f"prior/{sname}"]
        for m, better in (("cd_o", np.less), ("fs_o5", np.greater),
                          ("cd_o_centred", np.less), ("fs_o5_centred", np.greater)):
            won[f"{sname}/{m}"] = int(np.sum(better(r[m], p[m])))
    return won, bins


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--phase2-steps", type=int, default=70)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--phase2-lr", type=float, default=2e-4)
    ap.add_argument("--constant-lr", action="store_true",
                    help="no cosine decay of the learning rate over each phase")
    ap.add_argument("--train-scenes", type=int, default=150)
    ap.add_argument("--frames-per-scene", type=int, default=6,
                    help="training frames per scene")
    ap.add_argument("--test-scenes", type=int, default=100)
    ap.add_argument("--test-frames-per-scene", type=int, default=3)
    ap.add_argument("--seeds", type=str, default="0,1",
                    help="training seeds (comma-separated); the first one gives the main table")
    ap.add_argument("--data-seed", type=int, default=1, help="generator seed of training scenes")
    ap.add_argument("--test-seed", type=int, default=1000,
                    help="generator seed of the held-out scenes (dev split: 22)")
    ap.add_argument("--proj-mapping", choices=("prior", "refined"), default="prior",
                    help="L_proj's correspondence J(i) (TigerTrainConfig.proj_mapping)")
    ap.add_argument("--variants", type=str, default=",".join(n for n, _ in VARIANTS),
                    help="objectives to train, comma-separated (full is required: the tables "
                         "of prior against refined read it)")
    ap.add_argument("--train-priors", type=str, default=",".join(tiger.PRIOR_SOURCES),
                    help="prior kinds of the training scenes, comma-separated (cycled); the "
                         "test scenes always have all three")
    ap.add_argument("--image-coords", action="store_true",
                    help="TigerConfig.image_coords: image locations' coordinates in F_v^l")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    seeds = [int(x) for x in args.seeds.split(",")]
    chosen = args.variants.split(",")
    if "full" not in chosen or not set(chosen) <= {n for n, _ in VARIANTS}:
        ap.error(f"--variants: a subset of {[n for n, _ in VARIANTS]} holding 'full'")
    variants = [(n, o) for n, o in VARIANTS if n in chosen]

    t0 = time.perf_counter()
    syn = tiger.SyntheticTigerConfig(num_scenes=args.train_scenes,
                                     frames_per_scene=args.frames_per_scene, seed=args.data_seed,
                                     prior_sources=tuple(args.train_priors.split(",")))
    train = tiger.with_pseudo_mapping(tiger.make_synthetic_tiger(syn, progress=True))
    syn_test = dataclasses.replace(syn, num_scenes=args.test_scenes,
                                   frames_per_scene=args.test_frames_per_scene,
                                   seed=args.test_seed)
    test = tiger.make_synthetic_tiger(syn_test, all_priors=True, progress=True)
    t_data = time.perf_counter() - t0
    print(f"data: {train.num_examples} training, {test.num_examples} test examples "
          f"in {t_data:.0f} s", flush=True)

    model_cfg = tiger.TigerConfig(image_coords=args.image_coords)
    batch = tiger.TigerBatchData(train, model_cfg)
    src = np.asarray(test.prior_source)
    runs, timing = {}, {"data": t_data}
    for seed in seeds:
        for name, over in variants:
            key = f"{name}/seed{seed}"
            cfg = tiger.TigerTrainConfig(steps=args.steps, phase2_steps=args.phase2_steps,
                                         batch_size=args.batch_size, learning_rate=args.lr,
                                         phase2_learning_rate=args.phase2_lr, seed=seed,
                                         cosine=not args.constant_lr,
                                         proj_mapping=args.proj_mapping,
                                         log_every=50, **over)
            res = tiger.train_tiger(model_cfg, cfg, batch)
            t1 = time.perf_counter()
            main_run = name == "full" and seed == seeds[0]
            ev = tiger.evaluate_tiger(res.params, model_cfg, test, with_hands=main_run)
            timing[f"train_{key}"] = res.seconds
            timing[f"eval_{key}"] = time.perf_counter() - t1
            runs[key] = {"eval": ev, "final_loss_mean_last_50": float(np.mean(res.losses[-50:])),
                         "train_config": dataclasses.asdict(cfg)}
            print(f"{key}: trained in {res.seconds:.0f} s "
                  f"({(time.perf_counter() - t0) / 60:.1f} min so far)", flush=True)

    payload: dict = {"tables": {}, "bins": {}, "bins_won_of_10_per_seed": {}}
    main_key = f"full/seed{seeds[0]}"
    # Table I / II / IIIa: the full model (first seed) with each prior source, and the priors.
    for s, sname in enumerate(tiger.PRIOR_SOURCES):
        for kind in ("refined", "prior"):
            arr = {k: v[src == s] for k, v in runs[main_key]["eval"][kind].items()}
            payload["tables"][f"{kind}/{sname}"] = tiger.summarize(arr)
    checks, payload["bins"] = _bins_won(runs[main_key]["eval"], src)
    for seed in seeds:
        payload["bins_won_of_10_per_seed"][str(seed)] = _bins_won(
            runs[f"full/seed{seed}"]["eval"], src)[0]
    # Table IIIb: the ablations (all prior sources pooled, and the instance prior alone), per
    # seed and the mean over seeds.
    abl = {}
    for name, _ in variants:
        for seed in seeds:
            ev = {k: v for k, v in runs[f"{name}/seed{seed}"]["eval"]["refined"].items()
                  if k not in ("cd_h", "fs_h1", "fs_h5")}  # hands: the main run only
            abl[(name, seed, "all")] = tiger.summarize(ev)
            abl[(name, seed, "instance")] = tiger.summarize({k: v[src == 1] for k, v in ev.items()})
            for part in ("all", "instance"):
                payload["tables"][f"ablation/{name}/seed{seed}/{part}"] = abl[(name, seed, part)]
        for part in ("all", "instance"):
            ms = [abl[(name, seed, part)] for seed in seeds]
            payload["tables"][f"ablation/{name}/mean/{part}"] = {
                k: float(np.mean([m[k] for m in ms])) for k in ms[0]}
    wall = time.perf_counter() - t0

    payload.update({
        "bins_won_of_10": checks,
        "num_train_examples": train.num_examples, "num_test_examples": test.num_examples,
        "test_examples_per_prior": int(np.sum(src == 0)),
        "synthetic_config": dataclasses.asdict(syn), "test_seed": syn_test.seed,
        "test_frames_per_scene": syn_test.frames_per_scene, "seeds": seeds,
        "model_config": model_cfg.to_dict(),
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "eval"} for k, v in runs.items()},
        "num_parameters": int(sum(x.size for x in jax.tree.leaves(
            tiger.init_tiger_params(model_cfg, jax.random.key(0))))),
        "timing_s": {**timing, "total_wall": wall},
        "command": "python experiments/tiger_table.py " + " ".join(
            (f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')} {v}")
            for k, v in vars(args).items() if k != "out" and v is not False),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
                    "backend": jax.default_backend(),
                    "load_average_at_end": list(os.getloadavg())},
        "versions": package_versions("jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
                                     "numpy"),
    })
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tiger_table.json").write_text(json.dumps(payload, indent=2))
    curves = {f"{k.split('/')[0]} ({k.split('/')[1]})": v for k, v in payload["bins"].items()}
    tiger.plot_occlusion_bins(args.out / "tiger_bins.png", curves, "cd_o_centred",
                              "median centred CD_o (cm²)")

    t = payload["tables"]
    lines = [f"Held-out synthetic scenes (generator seed {syn_test.seed}): "
             f"{payload['test_examples_per_prior']} frames × 3 priors; trained on "
             f"{train.num_examples} frames ({args.train_scenes} scenes × "
             f"{args.frames_per_scene}, seed {syn.seed}), {args.steps} + {args.phase2_steps} "
             f"steps per model, {len(variants)} objectives × {len(seeds)} training seeds; "
             f"total wall time {wall / 60:.1f} min on one CPU core.", "",
             f"Object, full model (seed {seeds[0]}) (median CD in cm², mean F-score; camera "
             "frame with the predicted centre, then centred as in Table II):", "",
             "| prior | shape | " + " | ".join(COLS) + " |", "|---|---|" + "---:|" * len(COLS)]
    for sname in tiger.PRIOR_SOURCES:
        for kind in ("prior", "refined"):
            m = t[f"{kind}/{sname}"]
            lines.append(f"| {sname} | {kind} | " + " | ".join(_fmt(m[c], c) for c in COLS)
                         + " |")
    h = runs[main_key]["eval"]["refined"]
    h = tiger.summarize({k: v[src == 1] for k, v in h.items()})
    lines += ["", f"Hand (full model, MANO fitted to the predicted keypoints, instance-prior "
              f"frames): CD_h {h['cd_h']:.2f} cm², FS_h@1 {h['fs_h1']:.3f}, "
              f"FS_h@5 {h['fs_h5']:.3f}.", "",
              "Table IIIb (centred, all three priors pooled | instance prior; mean over "
              f"training seeds {', '.join(map(str, seeds))}, then each seed):", "",
              "| objective | seed | CD_o | FS_o@5 | FS_o@10 | CD_o (inst.) | FS_o@5 (inst.) |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for sd in ["mean"] + [f"seed{x}" for x in seeds]:
        for name, label in (("no_weight", "w/o L_weight"), ("no_proj", "w/o L_proj"),
                            ("full", "L_weight + L_proj")):
            if name not in chosen:
                continue
            a, i = t[f"ablation/{name}/{sd}/all"], t[f"ablation/{name}/{sd}/instance"]
            lines.append(f"| {label} | {sd.removeprefix('seed')} | {a['cd_o_centred']:.2f} | "
                         f"{a['fs_o5_centred']:.3f} | {a['fs_o10_centred']:.3f} | "
                         f"{i['cd_o_centred']:.2f} | {i['fs_o5_centred']:.3f} |")
    per_bin = payload["test_examples_per_prior"] / 10
    lines += ["", f"Median centred CD_o per occlusion bin (full model, seed {seeds[0]}; 10 "
              f"equal-count bins per prior, ~{per_bin:.0f} frames each):", "",
              "| bin | R_occ | " + " | ".join(f"{s} prior | refined" for s in
                                               tiger.PRIOR_SOURCES) + " |",
              "|---|---|" + "---:|---:|" * len(tiger.PRIOR_SOURCES)]
    for b in range(10):
        ref = payload["bins"]["refined/instance"]
        cells = []
        for sname in tiger.PRIOR_SOURCES:
            cells += [f"{payload['bins'][f'prior/{sname}']['cd_o_centred'][b]:.2f}",
                      f"{payload['bins'][f'refined/{sname}']['cd_o_centred'][b]:.2f}"]
        lines.append(f"| {b + 1} | {ref['r_occ_min'][b]:.2f}–{ref['r_occ_max'][b]:.2f} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Bins (of 10) where the refined shape beats its prior (full model; median CD, "
              "mean FS@5; camera frame, centred):", "",
              "| seed | " + " | ".join(f"{s} {m}" for s in tiger.PRIOR_SOURCES
                                     for m in ("cd_o", "fs_o5", "cd_c", "fs5_c")) + " |",
              "|---|" + "---:|" * (4 * len(tiger.PRIOR_SOURCES))]
    for seed in seeds:
        w = payload["bins_won_of_10_per_seed"][str(seed)]
        lines.append(f"| {seed} | " + " | ".join(
            str(w[f"{s}/{m}"]) for s in tiger.PRIOR_SOURCES
            for m in ("cd_o", "fs_o5", "cd_o_centred", "fs_o5_centred")) + " |")
    lines += ["", f"Command: `{payload['command']}`"]
    (args.out / "tiger_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
