"""``hoijax demo``, ``track``, ``ablate`` and ``eval``: thin front ends of the tracking driver.

``demo`` generates the synthetic benchmark (a few sequences), tracks them batched, prints a
metrics table and writes what a person looks at; ``track`` does the same on sequence
directories; ``ablate`` runs a grid of loss weights over the sequences in one compiled program;
``eval`` scores saved results against the sequences' ground truth. The tracker's flags come
from :class:`hoijax.tracking.TrackConfig` and :class:`hoijax.tracking.TrackHyper` themselves.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from tyro.conf import Positional, arg

from hoijax import data, tracking
from hoijax.cli._cache import enable_compile_cache
from hoijax.cli._distributed import Distributed
from hoijax.cli._distributed import start as start_distributed
from hoijax.cli._flags import build, flags_of

HyperFlags = flags_of(tracking.TrackHyper)


RunOptions = tracking.RunOptions


def _demo_config() -> tracking.TrackConfig:
    return tracking.TrackConfig(object_iters=200, iof_iters=200, hand_iters=100)


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
    config: tracking.TrackConfig = dataclasses.field(default_factory=_demo_config)
    """Static tracker settings (the demo caps iterations lower than AGILE to run in minutes
    on a CPU)."""
    hyper: HyperFlags = dataclasses.field(default_factory=HyperFlags)
    """Loss weights, step sizes and tolerances."""
    run: RunOptions = dataclasses.field(default_factory=RunOptions)
    """Batching and seeding."""
    save_sequences: Path | None = None
    """Also write the generated sequences there (hoijax sequence format), for track and eval."""


@dataclasses.dataclass
class Track:
    """Track sequence directories (hoijax sequence format) and write results."""

    sequences: Positional[Annotated[list[Path], arg(help_behavior_hint="(default: none)")]] = (
        dataclasses.field(default_factory=list))
    """Sequence directories (see README, "Sequences on disk"); with --dataset, besides the
    protocol's sequences."""
    dataset: Literal["ho3d", "dexycb"] | None = None
    """Run AGILE's evaluation protocol on this dataset (its 18 HO-3D or 20 DexYCB sequences,
    from the IOF, at most 1024 frames, every fifth frame): convert them from --root into
    OUT/sequences (reused when already converted the same way), then track them."""
    root: Path | None = None
    """The dataset's root folder (HO-3D v3: holding train/; DexYCB: $DEX_YCB_DIR)."""
    ycb_dir: Path | None = None
    """HO-3D: the folder holding models/<object>/textured_simple.obj (default: --root)."""
    inputs: Path | None = None
    """External models' outputs per sequence: INPUTS/<name>/detections.npz, masks.npz (or
    masks/), init_pose.txt (README, "Tracker inputs from external models")."""
    oracle: str = ""
    """Inputs taken from the ground truth instead (comma-separated: keypoints, hand, masks,
    pose; or all); recorded in every result.json."""
    only: Annotated[tuple[str, ...], arg(help_behavior_hint="(default: all)")] = ()
    """With --dataset: only these protocol sequences (names as in the protocol)."""
    out: Path = Path("results/track")
    """Output folder: one sub-folder per sequence."""
    mano_dir: Path | None = None
    """Folder with the official MANO_RIGHT.pkl / MANO_LEFT.pkl; default: hoijax's synthetic
    hand (right only for the synthetic benchmark)."""
    config: tracking.TrackConfig = dataclasses.field(default_factory=tracking.TrackConfig)
    """Static tracker settings."""
    hyper: HyperFlags = dataclasses.field(default_factory=HyperFlags)
    """Loss weights, step sizes and tolerances."""
    run: RunOptions = dataclasses.field(default_factory=RunOptions)
    """Batching, devices, seeding, resuming."""
    distributed: Distributed = dataclasses.field(default_factory=Distributed)
    """Several processes (hosts)."""
    pictures: bool = True
    """Write overlays, GIFs, loss curves and meshes."""


@dataclasses.dataclass
class Ablate:
    """Track sequences under a grid of loss weights (one compiled program) and tabulate."""

    sequences: Annotated[list[Path], arg(help_behavior_hint="(default: none)")] = (
        dataclasses.field(default_factory=list))
    """Sequence directories; none: generate the synthetic benchmark."""
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
    mano_dir: Path | None = None
    """Folder with the official MANO files; default: the synthetic hand."""
    config: tracking.TrackConfig = dataclasses.field(default_factory=_demo_config)
    """Static tracker settings."""
    hyper: HyperFlags = dataclasses.field(default_factory=HyperFlags)
    """The full model's loss weights, step sizes and tolerances."""
    run: RunOptions = dataclasses.field(default_factory=RunOptions)
    """Batching and seeding."""


@dataclasses.dataclass
class Eval:
    """Score saved results (track or demo outputs) against the sequences' ground truth."""

    results: Positional[Path]
    """Folder with one result sub-folder per sequence (as track writes)."""
    sequences: list[Path]
    """The sequence directories; each is matched to the result that names it."""
    out: Path | None = None
    """Where to write metrics.json; None: inside the results folder."""
    mano_dir: Path | None = None
    """The MANO files the results were tracked with; default: the synthetic hand."""


# ------------------------------------------------------------------------------------ helpers


def _mano(directory: Path | None) -> tracking.ManoSource:
    return (tracking.ManoSource.synthetic() if directory is None
            else tracking.ManoSource.from_dir(directory))


def _progress_bar(seqs: dict, config: tracking.TrackConfig, settings: int, desc: str):
    from tqdm.auto import tqdm

    # Frames the scan processes (at most: the end frames the stride skips depend on the
    # anchor; the bar is completed when the run ends). Re-runs grow the total (Progress.grow).
    total = sum(tracking.processed_frames(s, config) for s in seqs.values())
    # Redirected to a file (a batch job's log), the bar redraws twice a minute instead of
    # every frame and every second of the wait, so the log stays readable.
    return tqdm(total=total * settings, desc=desc, unit="frame", dynamic_ncols=True,
                file=sys.stderr, mininterval=0.1 if _interactive() else LOG_INTERVAL_S)


LOG_INTERVAL_S = 30.0
"""Seconds between progress-bar redraws when stderr is not a terminal."""


def _interactive() -> bool:
    return sys.stderr.isatty()


_PROGRESS = tracking.Progress()
"""The one progress receiver of this process's runs: a compiled tracker holds it (a static
argument), so a new one per call would compile the tracker again for a second run in the same
process (a notebook, the tests); each run points its ``fn`` at its own bar."""


def track_with_progress(seqs: dict, mano_source: tracking.ManoSource,
                        config: tracking.TrackConfig, hyper, run: RunOptions, **kwargs
                        ) -> tracking.TrackRun:
    """The driver with a progress bar (``kwargs``: the driver's ``checkpoint``, ``share``);
    skipped and overflowing sequences are named."""
    n_settings = len(hyper) if isinstance(hyper, list) else 1
    share = kwargs.get("share", (0, 1))
    mine = {n: s for i, (n, s) in enumerate(seqs.items()) if i % share[1] == share[0]}
    bar = _progress_bar(mine, config, n_settings, f"tracking {len(mine)} sequences")
    with _Waiting(bar) as on_frame:
        _PROGRESS.fn, _PROGRESS.grow = on_frame, functools.partial(_grow, bar)
        try:
            result = tracking.track_sequences(
                seqs, mano_source, config, hyper, run, progress=_PROGRESS,
                log=lambda msg: bar.write(msg, file=sys.stderr), **kwargs)
        finally:
            _PROGRESS.fn = _PROGRESS.grow = None
    bar.n = bar.total
    bar.close()
    return result


def _grow(bar, frames: int) -> None:
    """More frames to process than planned (a re-run): the bar's total follows, so it never
    counts past it."""
    bar.total += frames
    bar.refresh()


class _Waiting:
    """Until the first frame is tracked, the bar says what the wait is (compiling the tracker,
    the first run only with the compilation cache; then the anchor-frame fit) with the elapsed
    seconds (every second on a terminal, every :data:`LOG_INTERVAL_S` into a log file); at
    the first frame its clock restarts, so that its rate and ETA count the steady
    phase only. Used as ``with _Waiting(bar) as on_frame``: ``on_frame`` advances the bar."""

    TEXT = "compiling the tracker (first run only), then fitting the anchor frame"

    def __init__(self, bar, period_s: float | None = None):
        self.bar, self.started = bar, threading.Event()
        self.period_s = (1.0 if _interactive() else LOG_INTERVAL_S) if period_s is None \
            else period_s
        self.lock, self.t0 = threading.Lock(), time.monotonic()
        self.thread = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self):
        self._show()
        self.thread.start()
        return self.on_frame

    def __exit__(self, *exc):
        self.started.set()
        self.thread.join(timeout=2.0)

    def _show(self):
        with self.lock:
            if not self.started.is_set():
                self.bar.set_postfix_str(f"{self.TEXT}: {time.monotonic() - self.t0:.0f} s")

    def _tick(self):
        while not self.started.wait(self.period_s):
            self._show()

    def on_frame(self):
        if not self.started.is_set():
            with self.lock:
                self.started.set()
                self.bar.set_postfix_str("", refresh=False)
                self.bar.reset(total=self.bar.total)  # n is still 0: only the clock restarts
        self.bar.update()


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
         ("ADD-S mm, between", "adds_mm_interpolated"),
         ("MPJPE mm", "mpjpe_mm"), ("hand cam mm", "hand_cam_mm"),
         ("scale err %", "obj_scale_err_pct"), ("failed", "failed")]


def _summary_line(s: dict) -> str:
    """The run's one-line result (medians over all processed frames of all sequences)."""
    return (f"median rotation {s['rot_err_deg_median']:.2f}° | median translation "
            f"{s['trans_err_mm_median']:.1f} mm | MPJPE {s['mpjpe_mm_median']:.1f} mm | hand "
            f"(camera) {s['hand_cam_mm_median']:.1f} mm | success {100 * s['success_rate']:.0f}%")


def _metrics_md(report: dict) -> str:
    """metrics.md: the per-sequence means, the medians across sequences, the summary line."""
    rows = list(report["per_sequence"].items())
    if not rows:
        return "(no ground truth: nothing to score)"
    s = report["summary"]
    medians = {k: s.get(f"{k}_median") for _, k in _KEYS}
    table = _table(rows + [("median over all processed frames", medians)], _KEYS)
    agile = tracking.agile_table(report["per_sequence"], s)
    return ("Per sequence: means over its processed frames (\"between\": over the interpolated "
            "frames between them); last row: medians over the processed frames of all "
            "sequences.\n\n"
            f"{table}\n\n{_summary_line(s)}\n\n"
            "AGILE's Table 1 layout (means over the sequences; CD, F@5 and F@10 on the object "
            "shape at the first processed frame after similarity ICP, ADD / ADD-S: frames within "
            "10 % of the diameter; SR: sequences not failed, a failure being ADD-S above 10 % of "
            "the diameter on more than 30 % of the processed frames):\n\n"
            f"{agile}")


def _finish(out: Path, run: tracking.TrackRun, seqs: dict, pictures: bool, meta: dict,
            inputs: dict | None = None) -> dict:
    """Save the run, draw it (overlays, scene.npz for hoijax view, report.html), write
    metrics.md, print the table and the skipped sequences."""
    from hoijax import viz

    evals = tracking.evaluate_run(run, seqs)
    report = tracking.save_run(out, run, seqs, meta=meta, evals=evals, inputs=inputs)
    table = _metrics_md(report)
    (out / "metrics.md").write_text(table + "\n")
    if pictures:
        for name, res in run.results.items():
            viz.draw_sequence(out / name, seqs[name], res, run.mano.model(seqs[name].side),
                              evals.get(name))
        if evals:
            viz.metric_plots(out / "metrics.png", list(evals), list(evals.values()))
    viz.write_report(out)
    print(table)
    _report_problems(run)
    for name, lines in report.get("warnings", {}).items():
        for line in lines:
            print(f"warning: {name}: {line}", file=sys.stderr)
    return report


def _report_problems(run: tracking.TrackRun) -> None:
    for name, cause in run.errors.items():
        print(f"skipped {name}: {cause}", file=sys.stderr)
    for name in run.overflow:
        print(f"flagged {name}: the rasterizer still overflowed at the largest capacity",
              file=sys.stderr)


# ---------------------------------------------------------------------------------- commands


def run_demo(cfg: Demo) -> int:
    enable_compile_cache()
    configs = data.tracking_benchmark_configs(cfg.sequences, cfg.frames, cfg.image_size,
                                              hand_noise=cfg.hand_noise)
    seqs = {f"seq_{i:03d}_{c.object_kind}_{c.occlusion}": data.generate_sequence(c)
            for i, c in enumerate(configs)}
    if cfg.save_sequences is not None:
        for (name, seq), c in zip(seqs.items(), configs):
            data.save_sequence(seq, cfg.save_sequences / name, meta={
                "generator": "hoijax.data.generate_sequence", "config": c.to_json()})
    mano_source = tracking.ManoSource.synthetic()
    run = track_with_progress(seqs, mano_source, cfg.config,
                              build(tracking.TrackHyper, cfg.hyper), cfg.run)
    report = _finish(cfg.out, run, seqs, True, {"hand_model": "synthetic MANO-format hand"})
    processed = sum(int(np.sum(np.asarray(r.processed))) for r in run.results.values())
    del report
    print(f"tracked {len(run.results)} sequences ({processed} processed frames) with the "
          f"synthetic MANO hand in {run.timing['track_s']:.0f} s including compilation; "
          f"results in {cfg.out.resolve()} (open report.html, or: hoijax view {cfg.out})")
    return 0


def _load(paths: list[Path]) -> tuple[dict[str, data.Sequence], dict[str, str], dict[str, dict]]:
    """The sequences that load, the errors of those that do not, and each loaded one's
    manifest ``meta`` (its provenance, with the ``oracle`` list of a converted dataset)."""
    seqs, bad, inputs = {}, {}, {}
    for p in paths:
        try:
            seqs[Path(p).name] = data.load_sequence(p)
            inputs[Path(p).name] = data.read_manifest(p).get("meta", {})
        except data.SequenceFormatError as e:
            print(f"skipped: {e}", file=sys.stderr)
            bad[Path(p).name] = str(e)
    return seqs, bad, inputs


def convert_protocol(cfg: Track) -> tuple[list[Path], dict[str, str]]:
    """Convert ``cfg.dataset``'s protocol sequences into ``cfg.out/sequences/<name>``; returns
    the directories and, per sequence that could not be converted, why. A directory already
    converted with the same protocol entry and oracle is reused."""
    if cfg.root is None or cfg.mano_dir is None:
        raise ValueError("--dataset needs --root (the dataset) and --mano-dir (the official "
                         "MANO files: the synthetic hand cannot fit real recordings)")
    oracle = sorted(data.parse_oracle(cfg.oracle))
    entries = data.agile_protocol(cfg.dataset, cfg.only or None)
    paths, bad = [], {}
    for entry in entries:
        d = cfg.out / "sequences" / entry.name
        if (d / "manifest.json").exists():
            meta = data.read_manifest(d).get("meta", {})
            if (meta.get("protocol", {}).get("sequence") == entry.sequence
                    and meta.get("oracle") == oracle):
                paths.append(d)
                continue
        try:
            conv = data.load_protocol_sequence(entry, cfg.root, cfg.mano_dir,
                                               ycb_dir=cfg.ycb_dir, inputs_dir=cfg.inputs,
                                               oracle=oracle)
        except (data.SequenceFormatError, ValueError, OSError) as e:
            print(f"skipped {entry.name}: {e}", file=sys.stderr)
            bad[entry.name] = str(e)
            continue
        data.save_sequence(conv.sequence, d, meta=conv.meta)
        paths.append(d)
    return paths, bad


def run_track(cfg: Track) -> int:
    enable_compile_cache()
    share = start_distributed(cfg.distributed)
    converted = {}
    if cfg.dataset is not None:
        if share[1] > 1:
            print("error: --dataset converts the sequences in one process; run it once "
                  "without --distributed (the converted sequences land in OUT/sequences), then "
                  "track those directories with --distributed", file=sys.stderr)
            return 2
        try:
            paths, converted = convert_protocol(cfg)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        cfg = dataclasses.replace(cfg, sequences=[*cfg.sequences, *paths])
        if cfg.config.stride != 1:  # the protocol's stride is applied when converting
            print(f"note: the protocol's sequences hold every {data.AGILE_STRIDE}th frame "
                  f"already: tracking them with stride 1 (not {cfg.config.stride})",
                  file=sys.stderr)
            cfg = dataclasses.replace(cfg, config=dataclasses.replace(cfg.config, stride=1))
    elif not cfg.sequences:
        print("error: give sequence directories, or --dataset ho3d|dexycb with --root",
              file=sys.stderr)
        return 2
    seqs, bad, inputs = _load(cfg.sequences)
    bad = {**converted, **bad}
    if not seqs:
        print("error: no sequence could be loaded", file=sys.stderr)
        return 2
    checkpoint = cfg.out / ".chunks" / f"process_{share[0]}"
    run = track_with_progress(seqs, _mano(cfg.mano_dir), cfg.config,
                              build(tracking.TrackHyper, cfg.hyper), cfg.run,
                              checkpoint=checkpoint, share=share)
    run.errors = {**(bad if share[0] == 0 else {}), **run.errors}
    if share[1] == 1:
        _finish(cfg.out, run, seqs, cfg.pictures, {}, inputs)
        return 0 if not run.errors else 1
    # Each process writes what it tracked; after a barrier, process 0 writes the summary.
    tracking.save_run(cfg.out, run, seqs, part=share[0], inputs=inputs)
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("hoijax track: results written")
    if share[0] == 0:
        report = tracking.gather_run(cfg.out)
        print(f"{len(report['per_sequence'])} sequences tracked by {share[1]} processes; "
              f"summary in {cfg.out / 'summary.json'}")
        for name, cause in report["skipped"].items():
            print(f"skipped {name}: {cause}", file=sys.stderr)
    return 0 if not run.errors else 1


def ablation_hypers(base: tracking.TrackHyper, drop: tuple[str, ...]
                    ) -> tuple[list[str], list[tracking.TrackHyper]]:
    """The full model and one setting per entry of ``drop`` without those terms."""
    names = ["full"] + ["w/o " + " + ".join(f"L_{t}" for t in e.split("+")) for e in drop]
    return names, [base] + [base.without(e) for e in drop]


def run_ablate(cfg: Ablate) -> int:
    enable_compile_cache()
    if cfg.sequences:
        seqs, _, _ = _load(cfg.sequences)
    else:
        configs = data.tracking_benchmark_configs(cfg.synthetic, cfg.frames, cfg.image_size,
                                                  hand_noise=cfg.hand_noise)
        seqs = {f"seq_{i:03d}": data.generate_sequence(c) for i, c in enumerate(configs)}
    if not seqs or any(s.gt is None for s in seqs.values()):
        print("error: ablation needs sequences with ground truth", file=sys.stderr)
        return 2
    names, hypers = ablation_hypers(build(tracking.TrackHyper, cfg.hyper), cfg.drop)
    run = track_with_progress(seqs, _mano(cfg.mano_dir), cfg.config, hypers, cfg.run)
    evals = tracking.evaluate_run(run, seqs)
    rows = [(name, tracking.summarize([e[g] for e in evals.values()]))
            for g, name in enumerate(names)]
    keys = [("rot ° (median)", "rot_err_deg_median"), ("trans mm (median)", "trans_err_mm_median"),
            ("ADD-S mm (mean)", "adds_mm_mean"), ("MPJPE mm", "mpjpe_mm_median"),
            ("hand cam mm", "hand_cam_mm_median"), ("success", "success_rate")]
    table = _table(rows, keys).replace("| sequence |", "| setting |", 1)
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "table.md").write_text(table + "\n")
    (cfg.out / "table.json").write_text(json.dumps(tracking.jsonable(
        {"settings": names, "rows": dict(rows), "timing": run.timing,
         "sequences": list(evals), "skipped": run.errors, "overflow": run.overflow,
         "mano": run.mano.identity(next(iter(seqs.values())).side)}), indent=2))
    from hoijax import viz

    viz.ablation_plot(cfg.out / "ablation.png", rows)
    print(table)
    _report_problems(run)
    return 0


def run_eval(cfg: Eval) -> int:
    dirs = sorted(p for p in Path(cfg.results).iterdir() if (p / "result.json").exists())
    by_name = {Path(p).name: Path(p) for p in cfg.sequences}
    mano_source = _mano(cfg.mano_dir)
    rows, evals = [], []
    try:
        for d in dirs:
            res, manifest = tracking.load_result(d)
            name = manifest["meta"].get("sequence", d.name)
            if name not in by_name:
                raise tracking.ResultFormatError(
                    f"{d / 'result.json'}: the result is of sequence {name!r}, which is not "
                    f"among the given sequences ({sorted(by_name)})")
            seq = data.load_sequence(by_name[name])
            tracking.check_mano(manifest["meta"].get("mano"), mano_source, seq.side,
                                str(d / "result.json"))
            ev = tracking.evaluate_sequence(res, seq, mano_source.model(seq.side))
            evals.append(ev)
            rows.append((name, tracking.sequence_row(ev)))
    except (tracking.ResultFormatError, tracking.ManoMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    missing = sorted(set(by_name) - {n for n, _ in rows})
    if missing:
        print(f"error: no result in {cfg.results} for the sequences {missing}", file=sys.stderr)
        return 2
    summary = tracking.summarize(evals)
    table = _table(rows, _KEYS) + "\n\n" + tracking.agile_table(dict(rows), summary)
    out = Path(cfg.out) if cfg.out else Path(cfg.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(tracking.jsonable(
        {"summary": summary, "per_sequence": dict(rows)}), indent=2))
    (out / "metrics.md").write_text(table + "\n")
    print(table)
    return 0
