"""Training TIGeR's refinement network: two phases, one jitted step each, orbax checkpoints.

Phase 1 (``steps`` steps): Adam on L_registration (Eq. 7) at ``learning_rate`` (paper: 5e-5),
decayed by a cosine over the phase unless ``cosine=False``.
Phase 2 (``phase2_steps``): the paper's fine-tuning "with L_rec at 1e-5 while freezing the
object shape and hand pose encoders": Adam on the Chamfer of the *assembled* object
(``Ṽ + C̃_o``), with the shape visual encoder, the PointNet++ levels, the mask head and the hand
encoder frozen (their updates are zero), so the decoder, attention and object-centre encoder
adapt to each other.

Reproducibility contract (as :mod:`hoijax.icl`): the batch of step ``s`` is
:func:`hoijax.icl.batch_indices` of ``(seed, s)``; the checkpoint holds the step, the
parameters, both optimizer states and the loss history, so a run stopped at a checkpoint and
resumed gives the same losses as an uninterrupted one (tested to 1e-6).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from hoijax.icl import batch_indices
from hoijax.tiger._data import TigerData, with_pseudo_mapping
from hoijax.tiger._losses import TigerLossWeights, TigerTarget, assembled_rec_loss, tiger_loss
from hoijax.tiger._model import TigerConfig, apply_tiger, init_tiger_params

FROZEN_IN_PHASE2 = ("shape_visual", "sa1", "sa2", "mask_head", "hand_pose", "hand_head")
"""Top-level parameter groups the second phase does not update."""


@dataclasses.dataclass(frozen=True)
class TigerTrainConfig:
    """Optimisation settings of one run (loss weights: the paper's Eq. 7 by default)."""

    steps: int = 2000
    """Phase-1 steps."""
    phase2_steps: int = 200
    """Phase-2 steps (0: none)."""
    batch_size: int = 16
    """Examples per step."""
    learning_rate: float = 5e-5
    """Phase-1 Adam learning rate (paper: 5e-5)."""
    phase2_learning_rate: float = 1e-5
    """Phase-2 Adam learning rate (paper: 1e-5)."""
    cosine: bool = True
    """Decay each phase's rate by a cosine to 5 % of it (the paper states no schedule; a
    constant rate leaves the last steps' noise in the weights)."""
    seed: int = 0
    """Seeds parameters and data order."""
    checkpoint_every: int = 500
    """Save every this many steps (and at the end or stop)."""
    max_to_keep: int = 2
    """Checkpoints kept."""
    log_every: int = 20
    """Progress refresh interval, steps."""
    w_rec: float = 1.0
    """Weight of L_rec."""
    w_mask: float = 1.0
    """Weight of L_mask."""
    w_hand: float = 1.0
    """Weight of L_ph."""
    w_center: float = 1.0
    """Weight of L_po."""
    w_weight: float = 0.1
    """λ_weight (0: the "w/o L_weight" ablation)."""
    w_proj: float = 0.01
    """λ_proj (0: the "w/o L_proj" ablation)."""
    proj_mapping: str = "prior"
    """L_proj's correspondence J(i): "prior" (the paper's, fixed by the ICP of the prior) or
    "refined" (the refined point nearest to each ground-truth point, recomputed every step)."""

    @property
    def total_steps(self) -> int:
        return self.steps + self.phase2_steps

    def loss_weights(self) -> TigerLossWeights:
        f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return TigerLossWeights(rec=f(self.w_rec), mask=f(self.w_mask), hand=f(self.w_hand),
                                center=f(self.w_center), weight=f(self.w_weight),
                                proj=f(self.w_proj))


@dataclasses.dataclass
class TigerTrainResult:
    """What :func:`train_tiger` returns."""

    params: dict
    """Final parameters."""
    step: int
    """Steps completed in total (both phases, resumed ones included)."""
    start_step: int
    """Step this call started from."""
    losses: np.ndarray
    """Loss of every step so far (phase 2: the assembled L_rec), float64."""
    seconds: float
    """Wall time of this call (compilation included)."""


class TigerBatchData:
    """Training arrays on the device (images at the network's resolution, masks on the
    level-2 grid), gathered by index inside the compiled step."""

    def __init__(self, data: TigerData, config: TigerConfig):
        s, g = config.image_size, config.grid2
        n, c = data.num_examples, data.crop_px
        if data.mapping is None:
            data = with_pseudo_mapping(data)
        f = c // s
        img = data.rgb.reshape(n, s, f, s, f, 3).mean(axis=(2, 4))
        fm = c // g
        mask = data.amodal_mask.reshape(n, g, fm, g, fm).mean(axis=(2, 4))
        self.arrays = {
            "image": jnp.asarray(img, jnp.float32), "K": jnp.asarray(data.K),
            "prior": jnp.asarray(data.prior_obj), "points": jnp.asarray(data.points_obj),
            "center": jnp.asarray(data.center_cam), "joints": jnp.asarray(data.hand_joints),
            "mask": jnp.asarray(mask, jnp.float32), "mapping": jnp.asarray(data.mapping),
        }
        self.num_examples = n
        self.crop_px = c


def _labels(params):
    return {k: jax.tree.map(lambda _, lab=("frozen" if k in FROZEN_IN_PHASE2 else "train"): lab,
                            v)
            for k, v in params.items()}


@functools.lru_cache(maxsize=16)
def _optimizers(lr1: float, lr2: float, steps1: int = 0, steps2: int = 0):
    """Adam per phase; with ``steps1`` / ``steps2`` > 0 the rate decays over the phase by a
    cosine to ``COSINE_FLOOR`` of its start (the step count lives in the optimizer state, so
    a resumed run follows the same schedule)."""
    def rate(lr, n):
        return optax.cosine_decay_schedule(lr, n, alpha=COSINE_FLOOR) if n > 0 else lr
    opt2 = optax.multi_transform({"train": optax.adam(rate(lr2, steps2)),
                                  "frozen": optax.set_to_zero()}, _labels)
    return optax.adam(rate(lr1, steps1)), opt2


COSINE_FLOOR = 0.05
"""Fraction of the learning rate left at the end of a phase with the cosine schedule."""


def batch_loss(params, model_cfg: TigerConfig, arrays: dict, idx: jax.Array,
               weights: TigerLossWeights, crop_px: int, phase: int,
               proj_mapping: str = "prior"):
    """Mean loss over the examples ``idx`` (phase 1: Eq. 7; phase 2: assembled L_rec)."""
    b = {k: v[idx] for k, v in arrays.items()}

    def one(image, K, prior, points, center, joints, mask, mapping):
        out = apply_tiger(params, model_cfg, image, K, prior, crop_px)
        tgt = TigerTarget(points_obj=points, center_cam=center, hand_joints_cam=joints,
                          mask=mask, mapping=mapping, K=K)
        if phase == 2:
            r = assembled_rec_loss(out, tgt)
            return r, {"rec_assembled": r}
        return tiger_loss(out, tgt, prior, weights, crop_px, proj_mapping)

    per, terms = jax.vmap(one)(b["image"], b["K"], b["prior"], b["points"], b["center"],
                               b["joints"], b["mask"], b["mapping"])
    return jnp.mean(per), jax.tree.map(jnp.mean, terms)


@functools.partial(jax.jit, static_argnames=("model_cfg", "opt", "crop_px", "phase",
                                             "proj_mapping"))
def _train_step(state, idx, arrays, weights, *, model_cfg, opt, crop_px, phase,
                proj_mapping="prior"):
    key = "opt1" if phase == 1 else "opt2"

    def loss_fn(p):
        return batch_loss(p, model_cfg, arrays, idx, weights, crop_px, phase,
                          proj_mapping)

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    terms = dict(terms, grad_norm=optax.tree.norm(grads))  # all groups, frozen ones too
    updates, opt_state = opt.update(grads, state[key], state["params"])
    new = dict(state, step=state["step"] + 1, params=optax.apply_updates(state["params"], updates))
    new[key] = opt_state
    return new, loss, terms


def _manager(directory: Path, max_to_keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def _save(mgr, state, losses, meta):
    step = int(state["step"])
    mgr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        history=ocp.args.JsonSave({"losses": [float(x) for x in losses[:step]], **meta})),
        force=True)
    mgr.wait_until_finished()


def restore_tiger_checkpoint(directory: str | Path, step: int | None = None) -> tuple[dict, dict]:
    """``(state, history)`` of a run's checkpoint folder (latest step by default); the state's
    ``params`` are what :func:`apply_tiger` takes."""
    from hoijax.icl import restore_checkpoint

    return restore_checkpoint(directory, step=step)


def train_tiger(
    model_cfg: TigerConfig,
    train_cfg: TigerTrainConfig,
    data: TigerData | TigerBatchData,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    stop_at_step: int | None = None,
    progress: bool = True,
) -> TigerTrainResult:
    """Train both phases on ``data`` (pseudo-mapping computed if missing). With
    ``checkpoint_dir`` and ``resume``, continue from its latest checkpoint; ``stop_at_step``
    stops early with a checkpoint (the stand-in for a killed run)."""
    t0 = time.perf_counter()
    batch = data if isinstance(data, TigerBatchData) else TigerBatchData(data, model_cfg)
    init_key = jax.random.key(train_cfg.seed)
    params = init_tiger_params(model_cfg, init_key, batch.crop_px)
    opt1, opt2 = _optimizers(train_cfg.learning_rate, train_cfg.phase2_learning_rate,
                             *((train_cfg.steps, train_cfg.phase2_steps) if train_cfg.cosine
                               else (0, 0)))
    state = {"step": jnp.zeros((), jnp.int32), "params": params,
             "opt1": opt1.init(params), "opt2": opt2.init(params)}
    losses: list[float] = []
    meta = {"model_config": model_cfg.to_dict(), "train_config": dataclasses.asdict(train_cfg)}
    mgr = None
    if checkpoint_dir is not None:
        mgr = _manager(Path(checkpoint_dir), train_cfg.max_to_keep)
        if resume and mgr.latest_step() is not None:
            out = mgr.restore(mgr.latest_step(), args=ocp.args.Composite(
                state=ocp.args.StandardRestore(state), history=ocp.args.JsonRestore()))
            state, losses = out["state"], list(out["history"]["losses"])

    weights = train_cfg.loss_weights()
    total = train_cfg.total_steps
    start = int(state["step"])
    end = total if stop_at_step is None else min(stop_at_step, total)
    pending: list[jax.Array] = []
    bar = tqdm(total=total, initial=start, disable=not progress, desc="tiger-train",
               dynamic_ncols=True)
    for s in range(start, end):
        phase = 1 if s < train_cfg.steps else 2
        idx = batch_indices(train_cfg.seed, s, batch.num_examples, train_cfg.batch_size)
        state, loss, _ = _train_step(state, jnp.asarray(idx), batch.arrays, weights,
                                     model_cfg=model_cfg, opt=opt1 if phase == 1 else opt2,
                                     crop_px=batch.crop_px, phase=phase,
                                     proj_mapping=train_cfg.proj_mapping)
        pending.append(loss)
        flush = (s + 1) % train_cfg.log_every == 0 or s + 1 == end
        ckpt = mgr is not None and ((s + 1) % train_cfg.checkpoint_every == 0 or s + 1 == end)
        if flush or ckpt:
            losses.extend(float(x) for x in jax.device_get(pending))
            pending = []
            bar.update(s + 1 - bar.n)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", phase=phase)
        if ckpt:
            _save(mgr, state, losses, meta)
    bar.close()
    if mgr is not None:
        mgr.close()
    return TigerTrainResult(params=state["params"], step=int(state["step"]), start_step=start,
                            losses=np.asarray(losses, np.float64),
                            seconds=time.perf_counter() - t0)


def save_tiger_run_meta(path: str | Path, model_cfg: TigerConfig, train_cfg: TigerTrainConfig,
                        extra: dict | None = None) -> Path:
    """A JSON file with the model and training configs (what ``hoijax tiger-eval`` reads)."""
    path = Path(path)
    path.write_text(json.dumps({"model_config": model_cfg.to_dict(),
                                "train_config": dataclasses.asdict(train_cfg), **(extra or {})},
                               indent=2))
    return path

