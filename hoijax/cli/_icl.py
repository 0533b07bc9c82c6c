"""Command-line entry points of EgoHandICL: ``hoijax icl-train`` and ``hoijax icl-eval``.

``IclTrain`` / ``IclEval`` are tyro-compatible dataclasses; :func:`run_icl_train` and
:func:`run_icl_eval` return a process exit code. Layout of a run folder (``--out``)::

    run.json             model and training configs, data sources
    checkpoints/         orbax CheckpointManager (step, params, optimizer state, loss history)
    data/train.npz       training frames (IclData fields; the template database)
    data/test.npz        held-out query frames (synthetic data only)
    loss_curve.png       training loss per step and its moving average
    metrics.json         P-MPJPE, P-MPVPE, F@5, F@15, MRRPE, EgoExo4D MPJPE, joint F@10/F@15 of
                         coarse / ICL / ICL without template

Without ``--data`` the frames are synthetic (:func:`hoijax.icl.make_synthetic_icl`), split by
scene into training and held-out scenes. Rerunning ``icl-train`` on an existing folder resumes
from its latest checkpoint (``--no-resume`` starts over).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Literal

import numpy as np


@dataclasses.dataclass
class IclTrain:
    """Train EgoHandICL (synthetic data by default), then evaluate it on the held-out frames."""

    out: Path = Path("results/icl")
    """Run folder (checkpoints, data, loss curve, metrics)."""
    data: Path | None = None
    """Training frames as an .npz of IclData fields; default: synthetic data."""
    test_data: Path | None = None
    """Held-out query frames (.npz) to evaluate after training; default: the synthetic test
    scenes (none when --data is given without it)."""
    steps: int = 3000
    """Optimizer steps (cosine schedule horizon)."""
    batch_size: int = 64
    """(query, template) pairs per step."""
    learning_rate: float = 1e-3
    """Peak AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    warmup_steps: int = 100
    """Linear warmup steps."""
    mask_ratio: float = 0.7
    """Fraction of template and query target tokens masked in training (paper: 0.7)."""
    template_mask_ratio: float | None = None
    """Masked fraction of the template's target tokens when it should differ from the query's
    (default: --mask-ratio, the paper's setting; 0 keeps the template's targets visible as at
    inference, the 'template_visible' row of experiments/results/icl_table.md)."""
    template_dropout: float = 0.0
    """Probability of training an example without its template."""
    inference_episodes: float = 0.5
    """Fraction of the training examples drawn as inference presents them (template target
    whole, query target fully masked; TrainConfig.inference_episodes). 0: the paper's recipe,
    every example MAE-masked at --mask-ratio."""
    distractor_templates: float = 0.0
    """Fraction of the training templates replaced by a random frame of the query's hand type
    (TrainConfig.distractor_templates): the model learns to discount unrelated templates, and
    gains less from relevant ones (the relevance_distractors rows of
    experiments/results/icl_table.md)."""
    d_model: int = 64
    """Token width."""
    num_layers: int = 2
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads."""
    text_slots: int = 2
    """Text tokens."""
    target_difference: bool = True
    """Also encode each target token's target − input (IclConfig.target_difference; the default
    row of experiments/results/icl_table.md). --no-target-difference: the paper's tokens."""
    template_relevance: bool = True
    """Also encode, in every template token, the template's text and image-feature similarity to
    the query (IclConfig.template_relevance), so that the model can judge how far to trust it
    (a deviation from the paper; --no-template-relevance for the paper's tokens)."""
    template_gate: Literal["off", "relevance", "tokens"] = "off"
    """Run the transformer with and without the template and let a gate take part of the
    difference, per parameter group: from the relevance numbers ('relevance') or also from the
    tokens of the pass with the template ('tokens') (IclConfig.template_gate; twice the
    transformer's cost; the gate rows of the README's EgoHandICL tables)."""
    gate_steps: int = 0
    """With --template-gate: train the model without the gate first, then the gate alone for
    this many steps on the held model (icl.calibrate_gate; checkpoints in checkpoints_gate/).
    The retrieved template keeps the model's gain and a random one lands between it and none
    (the calibrated-gate rows of the README's EgoHandICL tables). 0: gate and transformer
    trained together."""
    gate_learning_rate: float = 0.02
    """The gate's learning rate with --gate-steps."""
    bf16: bool = False
    """Compute in bfloat16 (for GPUs; parameters and losses stay float32)."""
    one_hand: bool = False
    """Single-hand data (slot: right hand) instead of two hand slots."""
    scenes: int = 200
    """Synthetic data: number of scenes."""
    frames_per_scene: int = 12
    """Synthetic data: frames per scene."""
    test_scenes: int = 40
    """Synthetic data: held-out scenes."""
    scenes_per_setup: int = 0
    """Synthetic data: scenes per recording setup (SyntheticIclConfig.scenes_per_setup; 0: one
    setup). The random training templates of --distractor-templates come from the query's
    setup."""
    setup_error_fraction: float = 0.0
    """Synthetic data: share of the systematic detector error shared by a setup's scenes
    (SyntheticIclConfig.setup_error_fraction)."""
    data_seed: int = 0
    """Synthetic data: seed."""
    seed: int = 0
    """Seed of parameters, data order and masks."""
    resume: bool = True
    """Continue from the latest checkpoint in --out/checkpoints if there is one."""
    checkpoint_every: int = 500
    """Checkpoint interval, steps."""
    stop_at_step: int | None = None
    """Stop (with a checkpoint) after this many steps, e.g. to split a run in parts."""
    progress: bool = True
    """Show a tqdm progress bar with the loss."""


@dataclasses.dataclass
class IclEval:
    """Evaluate a trained EgoHandICL run: coarse input vs. refinement with and without template."""

    run: Path = Path("results/icl")
    """Run folder written by icl-train."""
    queries: Path | None = None
    """Query frames (.npz); default: the run's data/test.npz."""
    database: Path | None = None
    """Template database (.npz); default: the run's data/train.npz. The queries are added to
    it (each query excluded from its own retrieval)."""
    out: Path | None = None
    """Metrics JSON to write; default: <run>/metrics.json."""
    step: int | None = None
    """Checkpoint step to evaluate; default: the latest."""


def _sides(one_hand: bool):
    from hoijax.icl._params import TWO_HANDS

    return ("right",) if one_hand else TWO_HANDS


def _plot_losses(path: Path, losses: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.6, alpha=0.4, label="loss per step")
    win = max(1, len(losses) // 50)
    if len(losses) >= win:
        smooth = np.convolve(losses, np.ones(win) / win, mode="valid")
        ax.plot(steps[win - 1:], smooth, lw=1.5, label=f"moving mean ({win})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("EgoHandICL loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _evaluate_to_json(params, model_cfg, train, queries, path: Path, extra: dict) -> dict:
    from hoijax import icl

    database = icl.concat_icl_data(train, queries)
    r = icl.retrieve_for(queries, database, model_cfg.sides,
                         exclude_index=np.arange(queries.num_frames) + train.num_frames)
    results = icl.evaluate_icl(params, model_cfg, queries, database, np.asarray(r.index))
    c, m = results["coarse"]["P-MPVPE_mm"], results["icl"]["P-MPVPE_mm"]
    payload = {"metrics": results, "p_mpvpe_improvement_percent": 100.0 * (c - m) / c,
               "num_queries": queries.num_frames, "database_size": database.num_frames, **extra}
    path.write_text(json.dumps(payload, indent=2))
    return payload


def run_icl_train(cfg: IclTrain) -> int:
    """Train (resuming if possible), write the run folder, evaluate on held-out frames."""
    from hoijax import icl

    if cfg.gate_steps and cfg.template_gate == "off":
        print("error: --gate-steps needs --template-gate relevance or tokens", file=sys.stderr)
        return 2
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    sides = _sides(cfg.one_hand)
    ckpt = out / "checkpoints"
    gate_ckpt = out / "checkpoints_gate"
    for d in (ckpt, gate_ckpt):
        if not cfg.resume and d.exists():
            shutil.rmtree(d)
    try:
        if cfg.data is None:
            syn = icl.SyntheticIclConfig(num_scenes=cfg.scenes, frames_per_scene=cfg.frames_per_scene,
                                         sides=sides, seed=cfg.data_seed,
                                         scenes_per_setup=cfg.scenes_per_setup,
                                         setup_error_fraction=cfg.setup_error_fraction)
            data, meta = icl.make_synthetic_icl(syn)
            train, test, m_train, _ = icl.split_by_scene(data, meta, cfg.test_scenes)
            groups = m_train["setup_id"]
            source = {"synthetic": dataclasses.asdict(syn), "test_scenes": cfg.test_scenes}
        else:
            train = icl.load_icl_data(cfg.data, sides)
            test, groups = None, None
            source = {"data": str(cfg.data)}
        if cfg.test_data is not None:
            test = icl.load_icl_data(cfg.test_data, sides)
            source["test_data"] = str(cfg.test_data)
    except (icl.IclDataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    icl.save_icl_data(out / "data" / "train.npz", train)
    if test is not None:
        icl.save_icl_data(out / "data" / "test.npz", test)

    model_cfg = icl.IclConfig(sides=sides, d_model=cfg.d_model, num_heads=cfg.num_heads,
                              num_layers=cfg.num_layers,
                              text_slots=cfg.text_slots,
                              target_difference=cfg.target_difference,
                              template_relevance=cfg.template_relevance,
                              template_gate="off" if cfg.gate_steps else cfg.template_gate,
                              dtype="bfloat16" if cfg.bf16 else "float32")
    train_cfg = icl.TrainConfig(total_steps=cfg.steps, batch_size=cfg.batch_size,
                                learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                warmup_steps=cfg.warmup_steps, mask_ratio=cfg.mask_ratio,
                                template_mask_ratio=cfg.template_mask_ratio,
                                template_dropout=cfg.template_dropout,
                                inference_episodes=cfg.inference_episodes,
                                distractor_templates=cfg.distractor_templates, seed=cfg.seed,
                                checkpoint_every=cfg.checkpoint_every)
    extra = {"source": source}
    if cfg.gate_steps:  # icl-eval reads the gated model from its own checkpoints
        extra["gate"] = {"kind": cfg.template_gate, "steps": cfg.gate_steps,
                         "learning_rate": cfg.gate_learning_rate,
                         "checkpoints": gate_ckpt.name,
                         "model_config": dataclasses.replace(
                             model_cfg, template_gate=cfg.template_gate).to_dict()}
    icl.save_run_meta(out / "run.json", model_cfg, train_cfg, extra)
    templates = np.asarray(icl.retrieve_for(train, train, sides,
                                            exclude_index=np.arange(train.num_frames)).index)
    result = icl.train_icl(model_cfg, train_cfg, train, templates,
                           checkpoint_dir=ckpt, resume=cfg.resume, stop_at_step=cfg.stop_at_step,
                           progress=cfg.progress, groups=groups)
    _plot_losses(out / "loss_curve.png", result.losses)
    print(f"trained steps {result.start_step}..{result.step} in {result.seconds:.1f} s, "
          f"final loss {result.losses[-1]:.4f}" if len(result.losses) else "no steps run")
    done = result.step >= train_cfg.total_steps
    if cfg.gate_steps and done:
        model_cfg, result = icl.calibrate_gate(
            result.params, model_cfg, train_cfg, train, templates, gate=cfg.template_gate,
            steps=cfg.gate_steps, learning_rate=cfg.gate_learning_rate,
            checkpoint_dir=gate_ckpt, resume=cfg.resume, progress=cfg.progress, groups=groups)
        print(f"trained the gate alone, steps {result.start_step}..{result.step} in "
              f"{result.seconds:.1f} s")
        done = result.step >= cfg.gate_steps
    if test is not None and done:
        payload = _evaluate_to_json(result.params, model_cfg, train, test, out / "metrics.json",
                                    {"step": result.step})
        m = payload["metrics"]
        print(f"P-MPVPE coarse {m['coarse']['P-MPVPE_mm']:.2f} mm -> ICL "
              f"{m['icl']['P-MPVPE_mm']:.2f} mm (no template "
              f"{m['icl_no_template']['P-MPVPE_mm']:.2f} mm); metrics in {out / 'metrics.json'}")
    return 0


def run_icl_eval(cfg: IclEval) -> int:
    """Evaluate a run folder's checkpoint on query frames; writes the metrics JSON."""
    from hoijax import icl

    run = Path(cfg.run)
    try:
        meta = json.loads((run / "run.json").read_text())
        gate = meta.get("gate")  # a gate trained alone: the gated model is the run's model
        model_cfg = icl.IclConfig.from_dict(gate["model_config"] if gate
                                            else meta["model_config"])
        train = icl.load_icl_data(cfg.database or run / "data" / "train.npz", model_cfg.sides)
        queries = icl.load_icl_data(cfg.queries or run / "data" / "test.npz", model_cfg.sides)
        state, _ = icl.restore_checkpoint(run / (gate["checkpoints"] if gate else "checkpoints"),
                                          step=cfg.step)
    except (OSError, KeyError, icl.IclDataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(cfg.out) if cfg.out is not None else run / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = _evaluate_to_json(state["params"], model_cfg, train, queries, out,
                                {"step": int(state["step"])})
    print(json.dumps(payload["metrics"], indent=2))
    return 0
