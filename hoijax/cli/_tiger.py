"""Command-line entry points of TIGeR: ``hoijax tiger-train``, ``hoijax tiger-eval`` and
``hoijax tiger-data`` (DexYCB or ObMan to the examples' ``.npz``).

``TigerTrain`` / ``TigerEval`` / ``TigerDataConvert`` are tyro-compatible dataclasses; the
``run_*`` functions return a process exit code. Layout of a run folder (``--out``)::

    run.json           model and training configs, data sources
    checkpoints/       orbax CheckpointManager (step, params, both optimizer states, losses)
    data/train.npz     training examples (the layout of hoijax.tiger's docstring)
    data/test.npz      held-out examples (synthetic data, every prior source)
    metrics.json       TIGeR's metrics of the refined object and of the unrefined prior

Without ``--data`` the examples are synthetic (:func:`hoijax.tiger.make_synthetic_tiger`);
the held-out scenes use a different seed. Rerunning ``tiger-train`` on an existing folder
resumes from its latest checkpoint (``--no-resume`` starts over).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Literal


@dataclasses.dataclass
class TigerTrain:
    """Train TIGeR's refinement network (synthetic data by default), then evaluate it."""

    out: Path = Path("results/tiger")
    """Run folder (checkpoints, data, metrics)."""
    data: Path | None = None
    """Training examples (.npz, hoijax.tiger layout); default: synthetic scenes."""
    test_data: Path | None = None
    """Held-out examples (.npz) to evaluate after training; default: synthetic test scenes
    (none when --data is given without it)."""
    steps: int = 2000
    """Phase-1 steps (all losses)."""
    phase2_steps: int = 200
    """Phase-2 steps (assembled L_rec, shape and hand encoders frozen)."""
    batch_size: int = 16
    """Examples per step."""
    learning_rate: float = 5e-5
    """Phase-1 Adam learning rate (the paper's)."""
    phase2_learning_rate: float = 1e-5
    """Phase-2 Adam learning rate (the paper's)."""
    cosine: bool = True
    """Decay each phase's learning rate by a cosine to 5 % of it."""
    w_weight: float = 0.1
    """λ_weight (0 trains without L_weight)."""
    w_proj: float = 0.01
    """λ_proj (0 trains without L_proj; applied to L_proj in crop-normalised units × 10⁴, see
    ``hoijax.tiger._losses``)."""
    bf16: bool = False
    """Compute convolutions and dense layers in bfloat16 (for accelerators)."""
    scenes: int = 160
    """Synthetic data: training scenes."""
    test_scenes: int = 40
    """Synthetic data: held-out scenes."""
    frames_per_scene: int = 3
    """Synthetic data: frames per scene."""
    data_seed: int = 1
    """Synthetic data: seed of the training scenes (held-out: this + 999)."""
    seed: int = 0
    """Seed of parameters and data order."""
    resume: bool = True
    """Continue from the latest checkpoint in --out/checkpoints if there is one."""
    checkpoint_every: int = 500
    """Checkpoint interval, steps."""
    stop_at_step: int | None = None
    """Stop (with a checkpoint) after this many steps."""
    progress: bool = True
    """Show a progress bar with the loss."""


@dataclasses.dataclass
class TigerEval:
    """Evaluate a trained TIGeR run: refined object vs. prior, hand, occlusion bins."""

    run: Path = Path("results/tiger")
    """Run folder written by tiger-train."""
    data: Path | None = None
    """Examples (.npz) to evaluate; default: the run's data/test.npz."""
    out: Path = Path("results/tiger-eval")
    """Folder for metrics.json and occlusion_bins.png."""
    step: int | None = None
    """Checkpoint step; default: the latest."""


@dataclasses.dataclass
class TigerDataConvert:
    """Convert DexYCB or ObMan to TIGeR examples (object crops, masks, hand, prior; .npz).

    Each example also holds the ground-truth object points and centre, for training and
    scoring."""

    dataset: Literal["dexycb", "obman"]
    """Which dataset's layout --root has."""
    root: Path
    """Dataset root (DexYCB: $DEX_YCB_DIR; ObMan: the folder holding train/ val/ test/)."""
    out: Path
    """Output .npz (hoijax.tiger layout), for tiger-train --data / --test-data."""
    sequence: tuple[str, ...] = ()
    """DexYCB: sequences as <subject>/<sequence>:<camera serial>, one or more."""
    mano_dir: Path | None = None
    """DexYCB: folder with MANO_RIGHT.pkl / MANO_LEFT.pkl."""
    split: str = "test"
    """ObMan: split folder."""
    shapenet_root: Path | None = None
    """ObMan: ShapeNetCore.v2 folder."""
    indices: tuple[int, ...] = ()
    """ObMan: sample numbers (default: every sample of the split)."""
    prior: str = "sphere"
    """sphere, a prior file (mesh, point cloud, .npy), or a folder with one file per object
    (DexYCB: the YCB model's name, e.g. 006_mustard_bottle.ply; ObMan:
    <class_id>_<sample_id>.* or <class_id>.*)."""
    sphere_radius_m: float = 0.05
    """Radius of the sphere prior, metres."""
    crop_px: int = 256
    """DexYCB: crop side, pixels (TIGeR: 256; ObMan's renders are 256² already)."""
    num_points: int = 512
    """Prior and ground-truth points per example."""


def run_tiger_data(cfg: TigerDataConvert) -> int:
    """Convert; a sequence or sample that fails is named on stderr and skipped (exit 0 if any
    converted, 2 if none did or the flags do not fit the dataset)."""
    from hoijax import tiger

    prior = cfg.prior if cfg.prior == "sphere" else Path(cfg.prior)
    common = dict(prior=prior, sphere_radius_m=cfg.sphere_radius_m, num_points=cfg.num_points)
    try:
        if cfg.dataset == "dexycb":
            if not cfg.sequence or cfg.mano_dir is None:
                raise ValueError("--dataset dexycb needs --sequence and --mano-dir")
            pairs = []
            for item in cfg.sequence:
                seq, _, serial = item.rpartition(":")
                if not seq or not serial:
                    raise ValueError(f"--sequence {item!r} is not <subject>/<sequence>:<serial>")
                pairs.append((seq, serial))
            data = tiger.convert_dexycb_tiger(cfg.root, pairs, cfg.out, cfg.mano_dir,
                                              crop_px=cfg.crop_px, **common)
        else:
            if cfg.shapenet_root is None:
                raise ValueError("--dataset obman needs --shapenet-root")
            data = tiger.convert_obman_tiger(cfg.root, cfg.split, cfg.shapenet_root, cfg.out,
                                             list(cfg.indices) or None, **common)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {data.num_examples} examples to {cfg.out}")
    return 0


def _evaluate(params, model_cfg, data, out: Path, extra: dict) -> dict:
    from hoijax import tiger

    ev = tiger.evaluate_tiger(params, model_cfg, data)
    bins = {k: tiger.binned(v, tiger.occlusion_bins(v["r_occ"])) for k, v in ev.items()}
    payload = {"refined": tiger.summarize(ev["refined"]), "prior": tiger.summarize(ev["prior"]),
               "occlusion_bins": bins, "num_examples": data.num_examples, **extra}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(payload, indent=2))
    tiger.plot_occlusion_bins(out / "occlusion_bins.png", bins, "cd_o_centred",
                              "median centred CD_o (cm²)")
    return payload


def run_tiger_train(cfg: TigerTrain) -> int:
    """Train (resuming if possible), write the run folder, evaluate on held-out examples."""
    from hoijax import tiger

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoints"
    if not cfg.resume and ckpt.exists():
        shutil.rmtree(ckpt)
    try:
        if cfg.data is None:
            syn = tiger.SyntheticTigerConfig(num_scenes=cfg.scenes,
                                             frames_per_scene=cfg.frames_per_scene,
                                             seed=cfg.data_seed)
            train_path, test_path = out / "data" / "train.npz", out / "data" / "test.npz"
            if cfg.resume and train_path.exists():
                train = tiger.load_tiger_data(train_path)
                test = tiger.load_tiger_data(test_path) if test_path.exists() else None
            else:
                train = tiger.with_pseudo_mapping(
                    tiger.make_synthetic_tiger(syn, progress=cfg.progress))
                test = tiger.make_synthetic_tiger(
                    dataclasses.replace(syn, num_scenes=cfg.test_scenes,
                                        seed=cfg.data_seed + 999), all_priors=True)
            source = {"synthetic": dataclasses.asdict(syn), "test_scenes": cfg.test_scenes}
        else:
            train = tiger.with_pseudo_mapping(tiger.load_tiger_data(cfg.data))
            test = None
            source = {"data": str(cfg.data)}
        if cfg.test_data is not None:
            test = tiger.load_tiger_data(cfg.test_data)
            source["test_data"] = str(cfg.test_data)
    except (tiger.TigerDataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tiger.save_tiger_data(out / "data" / "train.npz", train)
    if test is not None:
        tiger.save_tiger_data(out / "data" / "test.npz", test)
    model_cfg = tiger.TigerConfig(dtype="bfloat16" if cfg.bf16 else "float32")
    train_cfg = tiger.TigerTrainConfig(
        steps=cfg.steps, phase2_steps=cfg.phase2_steps, batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, phase2_learning_rate=cfg.phase2_learning_rate,
        cosine=cfg.cosine, seed=cfg.seed, checkpoint_every=cfg.checkpoint_every,
        w_weight=cfg.w_weight,
        w_proj=cfg.w_proj)
    tiger.save_tiger_run_meta(out / "run.json", model_cfg, train_cfg, {"source": source})
    result = tiger.train_tiger(model_cfg, train_cfg, train, checkpoint_dir=ckpt,
                               resume=cfg.resume, stop_at_step=cfg.stop_at_step,
                               progress=cfg.progress)
    if len(result.losses):
        print(f"trained steps {result.start_step}..{result.step} in {result.seconds:.1f} s, "
              f"final loss {result.losses[-1]:.4f}")
    if test is not None and result.step >= train_cfg.total_steps:
        p = _evaluate(result.params, model_cfg, test, out, {"step": result.step})
        print(f"median centred CD_o: prior {p['prior']['cd_o_centred']:.2f} cm² -> refined "
              f"{p['refined']['cd_o_centred']:.2f} cm²; metrics in {out / 'metrics.json'}")
    return 0


def run_tiger_eval(cfg: TigerEval) -> int:
    """Evaluate a run folder's checkpoint; writes metrics.json and occlusion_bins.png."""
    from hoijax import tiger

    run = Path(cfg.run)
    try:
        meta = json.loads((run / "run.json").read_text())
        model_cfg = tiger.TigerConfig.from_dict(meta["model_config"])
        data = tiger.load_tiger_data(cfg.data or run / "data" / "test.npz")
        state, _ = tiger.restore_tiger_checkpoint(run / "checkpoints", step=cfg.step)
    except (OSError, KeyError, tiger.TigerDataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    payload = _evaluate(state["params"], model_cfg, data, Path(cfg.out),
                        {"step": int(state["step"]), "run": str(run)})
    print(json.dumps({"refined": payload["refined"], "prior": payload["prior"]}, indent=2))
    return 0

