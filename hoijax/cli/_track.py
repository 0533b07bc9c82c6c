"""``hoijax demo``, ``track``, ``ablate`` and ``eval``: the batched tracker from the command line.

``demo`` generates the synthetic benchmark (a few sequences), tracks them batched, prints a
metrics table and writes what a person looks at; ``track`` does the same on sequence
directories; ``ablate`` runs a grid of loss weights over the sequences in one compiled program;
``eval`` scores saved results against the sequences' ground truth.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tyro.conf import Positional

from hoijax import data, mano
from hoijax.tracking import (
    TrackConfig,
    TrackHyper,
    ablate_batch,
    evaluate_sequence,
    load_result,
    prepare,
    progress_to,
    save_result,
    stack_hypers,
    stack_prepared,
    summarize,
    track_batch,
)


@dataclasses.dataclass
class TrackSettings:
    """Tracker settings shared by the subcommands."""

    stride: int = 5
    """Process every stride-th frame from the anchor frame (AGILE: 5)."""
    hand_iters: int = 200
    """Step-1 iteration cap (AGILE: 200)."""
    object_iters: int = 400
    """Step-2 iteration cap (AGILE: 400)."""
    iof_iters: int = 300
    """Iteration cap of each anchor-frame stage."""
    interact_weight: float = 400.0
    """λ_interact: 400 for HO3D-like, 200 for DexYCB-like sequences."""
    depth_terms: bool = True
    """Keep the depth map in the optimization (L_depth for the object, depth points for the
    hand), beyond AGILE, which uses depth only to initialize; False: AGILE's objective."""
    hand_fit: bool = True
    """Refine the detector's hand (articulation, wrist, scale, translations) against the
    keypoints and depth before tracking (``tracking.fit_hand``), beyond AGILE; False: AGILE's
    hand, whose articulation and rotation stay as detected."""
    batch_size: int = 8
    """Sequences tracked at once (one compiled program per padded batch shape)."""
    sdf_resolution: int = 32
    """SDF grid points along the object's longest side."""
    seed: int = 0
    """Seed of the tracker's random choices (surface samples, visible points)."""

    def config(self, image_size: tuple[int, int]) -> TrackConfig:
        return TrackConfig(image_size=image_size, stride=self.stride, hand_iters=self.hand_iters,
                           object_iters=self.object_iters, iof_iters=self.iof_iters,
                           hand_fit=self.hand_fit, progress=True)

    def hyper(self) -> TrackHyper:
        h = _with_weight(TrackHyper(), "interact", self.interact_weight)
        if not self.depth_terms:
            h = _with_weight(_with_weight(h, "depth", 0.0), "hand_depth", 0.0)
        return h


def _with_weight(h: TrackHyper, term: str, value: float) -> TrackHyper:
    import equinox as eqx

    return eqx.tree_at(lambda x: getattr(x.weights, term), h, jnp.asarray(value, jnp.float32))


@dataclasses.dataclass
class Demo:
    """Generate the synthetic hand-object benchmark, track it batched, score it, draw it."""

    out: Path = Path("results/demo")
    """Output folder."""
    sequences: int = 4
    """Synthetic sequences (cycling box, can, mug, scissors, drill; light/medium/heavy)."""
    frames: int = 30
    """Frames per sequence."""
    image_size: int = 128
    """Square image side, pixels."""
    hand_noise: float = 1.0
    """Scale of the hand detector's errors (0: true MANO articulation, shape and orientation)."""
    track: TrackSettings = dataclasses.field(default_factory=lambda: TrackSettings(
        object_iters=200, iof_iters=200, hand_iters=100))
    """Tracker settings (the demo caps iterations lower than AGILE to run in minutes on a CPU)."""


@dataclasses.dataclass
class Track:
    """Track sequence directories (hoijax sequence format) and write results."""

    sequences: Positional[list[Path]]
    """Sequence directories (see README, "Sequences on disk")."""
    out: Path = Path("results/track")
    """Output folder: one sub-folder per sequence."""
    track: TrackSettings = dataclasses.field(default_factory=TrackSettings)
    """Tracker settings."""
    pictures: bool = True
    """Write overlays, GIFs, loss curves and meshes."""


@dataclasses.dataclass
class Ablate:
    """Track sequences under a grid of loss weights (one compiled program) and tabulate."""

    sequences: list[Path] = dataclasses.field(default_factory=list)
    """Sequence directories; empty: generate the synthetic benchmark."""
    out: Path = Path("results/ablate")
    """Output folder: table.md, table.json, ablation.png."""
    drop: tuple[str, ...] = ("joint", "mask", "dino", "interact", "depth+hand_depth")
    """Terms to ablate one at a time (besides the full model); "a+b" drops a and b together."""
    synthetic: int = 4
    """Synthetic sequences to generate when no directories are given."""
    frames: int = 30
    """Frames per synthetic sequence."""
    image_size: int = 128
    """Square image side of the synthetic sequences."""
    hand_noise: float = 1.0
    """Scale of the synthetic hand detector's errors."""
    track: TrackSettings = dataclasses.field(default_factory=lambda: TrackSettings(
        object_iters=200, iof_iters=200, hand_iters=100))
    """Tracker settings."""


@dataclasses.dataclass
class Eval:
    """Score saved results (``track``/``demo`` outputs) against the sequences' ground truth."""

    results: Positional[Path]
    """Folder with one result sub-folder per sequence (as ``track`` writes)."""
    sequences: list[Path]
    """The sequence directories, in the same order as the sorted result sub-folders."""
    out: Path | None = None
    """Where to write metrics.json (default: inside ``results``)."""


# ------------------------------------------------------------------------------------ helpers


def benchmark_configs(n: int, frames: int, image_size: int, seed: int = 0,
                      hand_noise: float = 1.0):
    """The synthetic benchmark the demo and the experiments track: every object kind and
    occlusion level, a crop-like field of view, feature maps at stride 4, detector-like initial
    object poses (15° RMS rotation, 2 cm RMS translation), RGB for the pictures.

    ``hand_noise`` scales the hand detector's errors (articulation, shape, orientation, depth
    bias; 1 = the generator's defaults, 0 = the true MANO parameters, still with unknown metric
    translation and scale and noisy 2D keypoints)."""
    d = data.SyntheticConfig()
    return data.default_benchmark_configs(
        n, seed=seed, num_frames=frames, image_size=(image_size, image_size),
        focal_factor=2.2, feature_stride=4, object_init_rot_deg=15.0 / np.sqrt(3),
        object_init_trans_m=0.02, with_rgb=True,
        pose_pca_noise=hand_noise * d.pose_pca_noise, betas_noise=hand_noise * d.betas_noise,
        orient_noise_deg=hand_noise * d.orient_noise_deg,
        depth_bias_m=hand_noise * d.depth_bias_m)


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True, file=sys.stderr)


def run_tracking(seqs: list[data.Sequence], settings: TrackSettings,
                 hypers: list[TrackHyper] | None = None) -> tuple[list, dict]:
    """Track sequences in batches of ``settings.batch_size`` (padded to a common shape);
    returns per-sequence results (a list per hyper when ``hypers`` is given) and timings.
    A batch whose program fails reports the error per sequence instead of raising."""
    sides = {s.side for s in seqs}
    models = {side: mano.synthetic_mano(side) for side in sides}
    sizes = {tuple(int(x) for x in s.image_size) for s in seqs}
    if len(sizes) != 1:
        raise ValueError(f"all sequences must share one image size, got {sorted(sizes)}")
    config = settings.config(sizes.pop())
    key = jax.random.PRNGKey(settings.seed)
    out: list = [None] * len(seqs)
    timing = {"prepare_s": 0.0, "track_s": 0.0, "batches": []}
    # Frames the optimizer will process (every stride-th from the anchor, minus the anchor,
    # which the anchor stages handle), per weight setting.
    n_valid = [int(np.sum(np.asarray(s.valid))) for s in seqs]
    total = sum(-(-n // settings.stride) for n in n_valid) * (1 if hypers is None else len(hypers))
    bar = _progress(total, f"tracking {len(seqs)} sequences")
    for side in sorted(sides):
        idx = [i for i, s in enumerate(seqs) if s.side == side]
        for start in range(0, len(idx), settings.batch_size):
            chunk = idx[start:start + settings.batch_size]
            t0 = time.perf_counter()
            preps = [prepare(seqs[i], config, sdf_resolution=settings.sdf_resolution,
                             seed=settings.seed) for i in chunk]
            timing["prepare_s"] += time.perf_counter() - t0
            batch = data.stack_sequences([seqs[i] for i in chunk])
            prep = stack_prepared(preps)
            t0 = time.perf_counter()
            with progress_to(bar.update):
                if hypers is None:
                    res = track_batch(batch, prep, models[side], settings.hyper(), config, key)
                else:
                    res = ablate_batch(batch, prep, models[side], stack_hypers(hypers), config,
                                       key)
                jax.block_until_ready(res)
            dt = time.perf_counter() - t0
            timing["track_s"] += dt
            frames = int(np.sum(np.asarray(batch.valid)))
            timing["batches"].append({"sequences": len(chunk), "frames": frames, "seconds": dt})
            for j, i in enumerate(chunk):
                if hypers is None:
                    out[i] = jax.tree.map(lambda x, j=j: x[j], res)
                else:
                    out[i] = [jax.tree.map(lambda x, g=g, j=j: x[g, j], res)
                              for g in range(len(hypers))]
            bar.set_postfix(batch_s=f"{dt:.0f}", sequences=f"{start + len(chunk)}/{len(idx)}")
    bar.n = bar.total
    bar.close()
    return out, timing


def _table(rows: list[tuple[str, dict]], keys: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(["sequence"] + [k for k, _ in keys]) + " |"
    sep = "|" + "---|" * (len(keys) + 1)
    lines = [head, sep]
    for name, r in rows:
        cells = []
        for _, k in keys:
            v = r.get(k)
            cells.append("—" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v)))
        lines.append("| " + " | ".join([name] + cells) + " |")
    return "\n".join(lines)


_KEYS = [("rot °", "rot_err_deg"), ("trans mm", "trans_err_mm"), ("ADD-S mm", "adds_mm"),
         ("MPJPE mm", "mpjpe_mm"), ("hand cam mm", "hand_cam_mm"),
         ("scale err %", "obj_scale_err_pct"), ("failed", "failed")]


def _row(ev: dict) -> dict:
    return {**ev["mean"], "obj_scale_err_pct": ev["obj_scale_err_pct"], "failed": ev["failed"]}


def write_outputs(out: Path, names: list[str], seqs, results, settings: TrackSettings,
                  pictures: bool = True) -> dict:
    """Save every result, score those with ground truth, draw pictures; returns the summary."""
    from hoijax import viz as _trackviz

    out.mkdir(parents=True, exist_ok=True)
    evals, rows = [], []
    for name, seq, res in zip(names, seqs, results):
        d = out / name
        save_result(res, d, meta={"sequence": name, "settings": dataclasses.asdict(settings)})
        model = mano.synthetic_mano(seq.side)
        ev = None
        if seq.gt is not None:
            ev = evaluate_sequence(res, seq, model)
            evals.append(ev)
            rows.append((name, _row(ev)))
            (d / "metrics.json").write_text(json.dumps(_jsonable(ev), indent=2))
        if pictures:
            _trackviz.draw_sequence(d, seq, res, model, ev)
    summary = summarize(evals) if evals else {}
    table = _table(rows, _KEYS) if rows else "(no ground truth: nothing to score)"
    (out / "metrics.md").write_text(table + "\n")
    if evals and pictures:
        _trackviz.metric_plots(out / "metrics.png", names, evals)
    return {"summary": summary, "table": table,
            "per_sequence": {n: _jsonable(_row(e)) for (n, _), e in zip(rows, evals)}}


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return [None if not np.isfinite(v) else float(v) for v in x.ravel()]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    return x


# ---------------------------------------------------------------------------------- commands


def run_demo(cfg: Demo) -> int:
    configs = benchmark_configs(cfg.sequences, cfg.frames, cfg.image_size,
                                hand_noise=cfg.hand_noise)
    t0 = time.perf_counter()
    seqs = [data.generate_sequence(c) for c in configs]
    gen_s = time.perf_counter() - t0
    names = [f"seq_{i:03d}_{c.object_kind}_{c.occlusion}" for i, c in enumerate(configs)]
    results, timing = run_tracking(seqs, cfg.track)
    report = write_outputs(cfg.out, names, seqs, results, cfg.track)
    frames = sum(int(np.sum(np.asarray(s.valid))) for s in seqs)
    processed = sum(int(np.sum(np.asarray(r.processed))) for r in results)
    report["timing"] = {**timing, "generate_s": gen_s, "frames": frames,
                        "processed_frames": processed,
                        "track_s_per_processed_frame": timing["track_s"] / max(processed, 1)}
    (cfg.out / "summary.json").write_text(json.dumps(_jsonable(report), indent=2))
    print(report["table"])
    s = report["summary"]
    print(f"\nmedian rotation {s['rot_err_deg_median']:.2f}° | median translation "
          f"{s['trans_err_mm_median']:.1f} mm | MPJPE {s['mpjpe_mm_median']:.1f} mm | hand "
          f"(camera) {s['hand_cam_mm_median']:.1f} mm | success {100 * s['success_rate']:.0f}%")
    print(f"tracked {len(seqs)} sequences ({processed} processed frames) in "
          f"{timing['track_s']:.0f} s including compilation; results in {cfg.out.resolve()}")
    return 0


def _load(paths: list[Path]) -> tuple[list[str], list[data.Sequence], int]:
    seqs, names, bad = [], [], 0
    for p in paths:
        try:
            seqs.append(data.load_sequence(p))
            names.append(Path(p).name)
        except data.SequenceFormatError as e:
            print(f"skipped: {e}", file=sys.stderr)
            bad += 1
    return names, seqs, bad


def run_track(cfg: Track) -> int:
    names, seqs, bad = _load(cfg.sequences)
    if not seqs:
        print("error: no sequence could be loaded", file=sys.stderr)
        return 2
    results, timing = run_tracking(seqs, cfg.track)
    report = write_outputs(cfg.out, names, seqs, results, cfg.track, cfg.pictures)
    report["timing"] = timing
    report["skipped"] = bad
    (cfg.out / "summary.json").write_text(json.dumps(_jsonable(report), indent=2))
    print(report["table"])
    return 0 if bad == 0 else 1


def ablation_hypers(settings: TrackSettings, drop: tuple[str, ...]
                    ) -> tuple[list[str], list[TrackHyper]]:
    """The full model and one setting per entry of ``drop`` with that term's weight at 0; an
    entry may join terms with "+" to drop them together (e.g. "depth+hand_depth")."""
    base = settings.hyper()
    names, hypers = ["full"], [base]
    for entry in drop:
        h = base
        for term in entry.split("+"):
            h = _with_weight(h, term, 0.0)
        names.append("w/o " + " + ".join(f"L_{t}" for t in entry.split("+")))
        hypers.append(h)
    return names, hypers


def run_ablate(cfg: Ablate) -> int:
    if cfg.sequences:
        seq_names, seqs, _ = _load(cfg.sequences)
    else:
        configs = benchmark_configs(cfg.synthetic, cfg.frames, cfg.image_size,
                                    hand_noise=cfg.hand_noise)
        seqs = [data.generate_sequence(c) for c in configs]
        seq_names = [f"seq_{i:03d}" for i in range(len(seqs))]
    if not seqs or any(s.gt is None for s in seqs):
        print("error: ablation needs sequences with ground truth", file=sys.stderr)
        return 2
    names, hypers = ablation_hypers(cfg.track, cfg.drop)
    results, timing = run_tracking(seqs, cfg.track, hypers)
    rows = []
    for g, name in enumerate(names):
        evals = [evaluate_sequence(r[g], s, mano.synthetic_mano(s.side))
                 for r, s in zip(results, seqs)]
        rows.append((name, summarize(evals)))
    keys = [("rot ° (median)", "rot_err_deg_median"), ("trans mm (median)", "trans_err_mm_median"),
            ("ADD-S mm (mean)", "adds_mm_mean"), ("MPJPE mm", "mpjpe_mm_median"),
            ("hand cam mm", "hand_cam_mm_median"), ("success", "success_rate")]
    table = _table(rows, keys).replace("| sequence |", "| setting |", 1)
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "table.md").write_text(table + "\n")
    (cfg.out / "table.json").write_text(json.dumps(
        {"settings": names, "rows": {n: _jsonable(r) for n, r in rows}, "timing": timing,
         "sequences": seq_names}, indent=2))
    from hoijax import viz as _trackviz

    _trackviz.ablation_plot(cfg.out / "ablation.png", rows)
    print(table)
    return 0


def run_eval(cfg: Eval) -> int:
    dirs = sorted(p for p in Path(cfg.results).iterdir() if (p / "result.json").exists())
    if len(dirs) != len(cfg.sequences):
        print(f"error: {len(dirs)} results in {cfg.results} but {len(cfg.sequences)} "
              "sequences given", file=sys.stderr)
        return 2
    rows, evals = [], []
    for d, sp in zip(dirs, cfg.sequences):
        res, _ = load_result(d)
        seq = data.load_sequence(sp)
        ev = evaluate_sequence(res, seq, mano.synthetic_mano(seq.side))
        evals.append(ev)
        rows.append((d.name, _row(ev)))
    table = _table(rows, _KEYS)
    out = Path(cfg.out) if cfg.out else Path(cfg.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(
        {"summary": summarize(evals), "per_sequence": {n: _jsonable(r) for n, r in rows}},
        indent=2))
    print(table)
    return 0

