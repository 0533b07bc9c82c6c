"""AGILE Table 2's optimization-objective ablation on the synthetic benchmark, in one command.

Rows as in the paper: (a) full model, (d) w/o L_joint, (e) w/o L_mask, (f) w/o L_dino,
(g) w/o L_interact ((b) and (c) ablate AGILE's asset generation, which hoijax does not have),
plus (h) w/o the depth terms hoijax adds (L_depth and the hand's depth points: AGILE's own
objective). All weight settings × all sequences run in one compiled program
(``ablate_batch``).
``--base agile`` ablates AGILE's own tracker instead: no depth terms and no hand refinement
(``fit_hand``), so the hand is the detector's articulation at the PnP translations, as in the
paper, and each row drops one of AGILE's four terms from that base.
Columns follow the paper's groups: hand (MPJPE, root-relative, and the camera-frame joint
error that L_joint acts on), object (rotation, translation, ADD-S; the mesh is given, so the
paper's shape CD / F@5 would only measure the scale), interaction (CD_h, cm²) and success.

    python experiments/table2.py [--sequences 8] [--frames 30] [--image-size 128]
        [--hand-noise 1.0] [--object-iters 400 --hand-iters 200 --iof-iters 300]
        [--base hoijax|agile] [--full-only] [--solver adam|lm] [--hand-solver adam|lm]

Writes ``experiments/results/table2_<backend>.{json,md}`` (the JSON also has every sequence's
row per variant, ``per_sequence``; ``table2_agile_<backend>.*`` for
``--base agile``, ``table2_full_<backend>.*`` for ``--full-only``: row (a) alone; ``_lm``
before the backend for ``--solver lm``, ``_lm_c2f`` with ``--lm-coarse-sigma-px2``, ``_lm_mw`` with
``--lm-mask-levels``,
``_handlm`` / ``_handadam`` with ``--hand-solver``: the hand refinement's solver,
``HandFitConfig.solver``).
``--solver lm`` runs every stage with Levenberg–Marquardt instead of AGILE's Adam (caps
``--lm-iters``/``--lm-anchor-iters``); the Adam rows of the same command are its reference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
from _common import package_versions

from hoijax import data, tracking

RESULTS = Path(__file__).resolve().parent / "results"
LETTERS = {"full": "(a) full", "w/o L_joint": "(d) w/o L_joint", "w/o L_mask": "(e) w/o L_mask",
           "w/o L_dino": "(f) w/o L_dino", "w/o L_interact": "(g) w/o L_interact",
           "w/o L_depth + L_hand_depth": "(h) w/o depth terms (AGILE's objective)"}
BASES = {"hoijax": ("joint", "mask", "dino", "interact", "depth+hand_depth"),
         "agile": ("joint", "mask", "dino", "interact")}
COLUMNS = [("MPJPE mm", "mpjpe_mm_mean"), ("hand cam mm", "hand_cam_mm_mean"),
           ("rot ° (median)", "rot_err_deg_median"), ("trans mm (median)", "trans_err_mm_median"),
           ("ADD-S mm", "adds_mm_mean"), ("CD_h cm²", "cd_h_cm2_mean"), ("SR %", "success_rate")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--object-iters", type=int, default=400)
    ap.add_argument("--hand-iters", type=int, default=200)
    ap.add_argument("--iof-iters", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--hand-noise", type=float, default=1.0,
                    help="scale of the synthetic hand detector's errors (0: true articulation)")
    ap.add_argument("--full-only", action="store_true",
                    help="only row (a): the accuracy check, without the ablations")
    ap.add_argument("--solver", choices=("adam", "lm"), default="adam")
    ap.add_argument("--hand-solver", choices=("adam", "lm"), default=None,
                    help="HandFitConfig.solver of the hand refinement (default: its default)")
    ap.add_argument("--lm-iters", type=int, default=30)
    ap.add_argument("--lm-anchor-iters", type=int, default=60)
    ap.add_argument("--lm-coarse-sigma-px2", type=float, nargs="*", default=[],
                    help="TrackConfig.lm_coarse_sigma_px2: LM's blur continuation (px², wide "
                    "to sharp; default: none)")
    ap.add_argument("--lm-mask-levels", type=float, nargs="*", default=[],
                    help="TrackConfig.lm_mask_levels: LM first with L_mask's weight scaled by "
                    "these factors (default: none)")
    ap.add_argument("--lm-level-iters", type=int, default=10,
                    help="TrackConfig.lm_level_iters: evaluations of each earlier LM level")
    ap.add_argument("--depth-occluders", choices=("on", "off"), default=None,
                    help="TrackConfig.depth_occluders: L_mask leaves out what the depth map "
                    "shows in front of the object (default: on, off for --base agile)")
    ap.add_argument("--aniso-scale-prior", type=float, default=None,
                    help="TrackHyper.aniso_scale_prior (default: the tracker's)")
    ap.add_argument("--base", choices=sorted(BASES), default="hoijax",
                    help="hoijax: the full tracker; agile: AGILE's objective and hand (no depth "
                    "terms, no hand refinement, L_interact in every frame)")
    args = ap.parse_args()

    agile = args.base == "agile"
    config = tracking.TrackConfig(
        object_iters=args.object_iters, hand_iters=args.hand_iters, iof_iters=args.iof_iters,
        hand_fit=tracking.HandFitConfig(
            enabled=not agile,
            **({} if args.hand_solver is None else {"solver": args.hand_solver})),
        solver=args.solver,
        lm_iters=args.lm_iters, lm_anchor_iters=args.lm_anchor_iters,
        lm_coarse_sigma_px2=tuple(args.lm_coarse_sigma_px2) or None,
        lm_mask_levels=tuple(args.lm_mask_levels) or None, lm_level_iters=args.lm_level_iters,
        interact_in_hand=not agile,
        depth_occluders=not agile if args.depth_occluders is None
        else args.depth_occluders == "on")
    extra = {} if args.aniso_scale_prior is None else {"aniso_scale_prior": args.aniso_scale_prior}
    base = tracking.TrackHyper.agile(**extra) if agile else tracking.TrackHyper(**extra)
    seqs = {f"seq_{i:03d}": data.generate_sequence(c)
            for i, c in enumerate(data.tracking_benchmark_configs(
                args.sequences, args.frames, args.image_size, hand_noise=args.hand_noise))}
    drop = () if args.full_only else BASES[args.base]
    names = ["full"] + ["w/o " + " + ".join(f"L_{t}" for t in e.split("+")) for e in drop]
    hypers = [base] + [base.without(e) for e in drop]
    t0 = time.perf_counter()
    run = tracking.track_sequences(seqs, tracking.ManoSource.synthetic(), config, hypers,
                                   tracking.RunOptions(batch_size=args.batch_size))
    elapsed = time.perf_counter() - t0
    evals = tracking.evaluate_run(run, seqs)
    rows = {name: tracking.summarize([e[g] for e in evals.values()])
            for g, name in enumerate(names)}
    lines = ["| variant | " + " | ".join(c for c, _ in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for name in names:
        r = rows[name]
        cells = [f"{100 * r[k]:.0f}" if k == "success_rate" else f"{r[k]:.2f}" for _, k in COLUMNS]
        lines.append(f"| {LETTERS.get(name, name)} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    backend = jax.default_backend()
    RESULTS.mkdir(parents=True, exist_ok=True)
    header = (f"{args.sequences} synthetic sequences × {args.frames} frames at "
              f"{args.image_size}², hand noise {args.hand_noise}, caps {args.hand_iters}/"
              f"{args.object_iters}/{args.iof_iters}, base {args.base}, solver {args.solver}"
              + (f" ({args.lm_iters}/{args.lm_anchor_iters} evaluations)"
                 if args.solver == "lm" else "")
              + (f", blur continuation {args.lm_coarse_sigma_px2} px²"
                 if args.solver == "lm" and args.lm_coarse_sigma_px2 else "")
              + (f", mask levels {args.lm_mask_levels} ({args.lm_level_iters} evaluations each)"
                 if args.solver == "lm" and args.lm_mask_levels else "")
              + ("" if args.depth_occluders is None
                 else f", depth occluders {args.depth_occluders}")
              + ("" if args.aniso_scale_prior is None
                 else f", aniso scale prior {args.aniso_scale_prior:g}")
              + ("" if args.hand_solver is None else f", hand solver {args.hand_solver}")
              + f"; {elapsed:.0f} s on "
              f"{backend}.\n\n")
    stem = (f"table2_{'agile_' if agile else ''}{'full_' if args.full_only else ''}"
            f"{'lm_' if args.solver == 'lm' else ''}"
            f"{'c2f_' if args.solver == 'lm' and args.lm_coarse_sigma_px2 else ''}"
            f"{'mw_' if args.solver == 'lm' and args.lm_mask_levels else ''}"
            f"{ {None: '', 'on': 'occ_', 'off': 'noocc_'}[args.depth_occluders] }"
            f"{'' if args.aniso_scale_prior is None else 'aniso_'}"
            f"{'' if args.hand_solver is None else f'hand{args.hand_solver}_'}{backend}")
    (RESULTS / f"{stem}.md").write_text(header + table + "\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps({
        "settings": vars(args), "rows": rows,
        "per_sequence": {name: {seq: tracking.sequence_row(e[g]) for seq, e in evals.items()}
                         for g, name in enumerate(names)},
        "timing": {**run.timing, "total_s": elapsed},
        "skipped": run.errors, "overflow": run.overflow,
        "versions": package_versions("jax", "jaxlib", "equinox", "optax"),
        "backend": backend}, indent=2, default=str))


if __name__ == "__main__":
    main()
