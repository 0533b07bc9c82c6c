"""Training EgoHandICL: AdamW with warmup + cosine decay, a jit-compiled step, orbax checkpoints.

Reproducibility contract: the batch of step ``s`` is :func:`hoijax.icl.batch_indices` of
``(seed, s)`` and the masking key is ``fold_in(key(seed), s)``; the checkpoint holds the step,
the parameters, the optimizer state and the loss history. A run stopped at any checkpoint and
resumed therefore produces the same subsequent losses as an uninterrupted run (tested to 1e-6).

The data live on the device for the whole run; a step gathers its (query, template) pairs by
index inside the compiled program, so nothing but two index vectors crosses per step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
import optax
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from hoijax import mano
from hoijax.icl._data import IclData, batch_indices, gather_examples, hand_types
from hoijax.icl._losses import IclLossWeights, icl_loss
from hoijax.icl._model import IclConfig, apply_icl, init_icl_params, sample_target_masks
from hoijax.icl._params import HAND_TYPES, group_masks, hand_models
from hoijax.icl._pointnet import DEFAULT_POINTNET_FEATURES, init_pointnet


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimization settings of one training run."""

    total_steps: int = 3000
    """Optimizer steps (the cosine schedule's horizon)."""
    batch_size: int = 64
    """(query, template) pairs per step."""
    learning_rate: float = 1e-3
    """Peak learning rate (after warmup)."""
    warmup_steps: int = 100
    """Linear warmup from 0."""
    final_lr_fraction: float = 0.02
    """Learning rate at the last step, as a fraction of the peak."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay."""
    grad_clip_norm: float = 1.0
    """Global gradient-norm clip."""
    mask_ratio: float = 0.7
    """Fraction of the template's and of the query's target tokens masked per example."""
    template_mask_ratio: float | None = None
    """Masked fraction of the template's target tokens when it should differ from the query's
    (``None``: ``mask_ratio`` for both, the paper's setting)."""
    loss_on_masked_only: bool = True
    """Supervise only the query's masked parameter groups (MAE); False: the whole hand."""
    template_dropout: float = 0.0
    """Probability of training an example without its template (0: the paper's setting)."""
    inference_episodes: float = 0.0
    """Probability of training an example exactly as inference presents it: the template's
    target fully visible and the query's fully masked (0: the paper's setting, where every
    example is MAE-masked at ``mask_ratio``)."""
    distractor_templates: float = 0.0
    """Probability of training an example with a random database frame of the query's hand
    type as its template instead of the retrieved one, so that the model learns to judge
    whether a template is relevant (0: the paper's setting)."""
    trainable: tuple[str, ...] = ()
    """Top-level parameter names to train, the others held (empty: all). With
    ``train_icl(init_params=...)`` this trains a part of a trained model, such as the template
    gate of :attr:`IclConfig.template_gate` on a transformer trained without it."""
    seed: int = 0
    """Seeds parameters, data order and masks."""
    checkpoint_every: int = 500
    """Save every this many steps (and at the end or stop)."""
    max_to_keep: int = 2
    """Checkpoints kept on disk."""
    log_every: int = 20
    """Progress-bar refresh interval, steps."""
    mano_weight: float = 0.05
    """λm."""
    vertex_weight: float = 5.0
    """λv."""
    perceptual_weight: float = 0.01
    """λ3D."""
    keypoint_weight: float = 5.0
    """λkp (frames without MANO ground truth)."""

    def loss_weights(self) -> IclLossWeights:
        return IclLossWeights(mano=self.mano_weight, vertex=self.vertex_weight,
                              perceptual_3d=self.perceptual_weight, keypoint=self.keypoint_weight)


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_icl` returns."""

    params: dict
    """Final parameters."""
    step: int
    """Steps completed in total (including those of a resumed run)."""
    start_step: int
    """Step this call started from (0, or the restored checkpoint's step)."""
    losses: np.ndarray
    """Loss of every step from 0 to ``step`` (float64; restored history included)."""
    seconds: float
    """Wall time of this call's training loop (compilation included)."""


@functools.lru_cache(maxsize=32)
def _optimizer(lr: float, warmup: int, total: int, final_fraction: float, weight_decay: float,
               clip: float) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=warmup,
        decay_steps=max(total, warmup + 1), end_value=lr * final_fraction)
    return optax.chain(optax.clip_by_global_norm(clip),
                       optax.adamw(schedule, weight_decay=weight_decay))


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW on a linear-warmup cosine schedule, with global-norm clipping.

    Cached on the hyperparameters: the same settings give the same object, so the compiled
    train step is reused across runs in one process (tests, resumes)."""
    return _optimizer(cfg.learning_rate, cfg.warmup_steps, cfg.total_steps,
                      cfg.final_lr_fraction, cfg.weight_decay, cfg.grad_clip_norm)


def batch_loss(
    params: dict,
    model_cfg: IclConfig,
    queries: IclData,
    database: IclData,
    query_index: jax.Array,
    template_index: jax.Array,
    key: jax.Array,
    mask_ratio: jax.Array,
    template_dropout: jax.Array,
    weights: IclLossWeights,
    models: Sequence[mano.ManoModel],
    pointnet_params: dict,
    pointnet_features: Sequence[int] = DEFAULT_POINTNET_FEATURES,
    masked_only: bool = True,
    inference_episodes: ArrayLike = 0.0,
) -> tuple[jax.Array, dict]:
    """Mean training loss of a batch (random target masks, optional template dropout).

    ``inference_episodes``: probability per example of inference's masks instead (template
    target fully visible, query target fully masked).

    ``mask_ratio``: a scalar for both roles, or ``(template, query)`` ratios.

    With ``masked_only`` (MAE's rule: loss on masked patches only), the entries of the query
    whose target token was left visible are set to the ground truth before the loss, so only
    the masked parameter groups are supervised and the model gains nothing by copying visible
    targets (which it never sees at inference)."""
    ex = gather_examples(queries, database, query_index, template_index)
    b = query_index.shape[0]
    k_mask, k_drop = jax.random.split(key)
    ratios = jnp.broadcast_to(jnp.asarray(mask_ratio, jnp.float32), (2,))  # (template, query)
    tpl_m, _ = jax.vmap(lambda k: sample_target_masks(k, model_cfg.num_target_tokens,
                                                      ratios[0]))(jax.random.split(k_mask, b))
    _, qry_m = jax.vmap(lambda k: sample_target_masks(k, model_cfg.num_target_tokens,
                                                      ratios[1]))(jax.random.split(k_mask, b))
    use_tpl = jax.random.uniform(k_drop, (b,)) >= template_dropout
    # A separate stream (folded in), so that the other draws do not depend on this option.
    infer = jax.random.uniform(jax.random.fold_in(key, 1), (b,)) < inference_episodes
    tpl_m = tpl_m & ~infer[:, None]
    qry_m = qry_m | infer[:, None]
    pred = jax.vmap(lambda e, t, q, u: apply_icl(params, model_cfg, e, t, q, u))(
        ex, tpl_m, qry_m, use_tpl)
    if masked_only:
        pred = jnp.where(masked_entries(qry_m, model_cfg), pred, ex.query_gt)
    kp = jnp.asarray(queries.keypoints_gt)[query_index]
    has_gt = jnp.asarray(queries.has_mano_gt)[query_index]
    kp_valid = jnp.asarray(queries.keypoints_valid)[query_index]
    per, terms = jax.vmap(lambda p, g, m, k, h, v: icl_loss(
        p, g, m, models, pointnet_params, weights, keypoints_gt=k, has_mano_gt=h,
        pointnet_features=pointnet_features, keypoints_valid=v))(
        pred, ex.query_gt, ex.query_presence, kp, has_gt, kp_valid)
    return jnp.mean(per), jax.tree.map(jnp.mean, terms)


def masked_entries(query_target_masked: jax.Array, model_cfg: IclConfig) -> jax.Array:
    """``(*B, H, 61)`` booleans: parameter entries whose target token is masked."""
    m = query_target_masked.reshape(*query_target_masked.shape[:-1], model_cfg.num_hands,
                                    model_cfg.tokens_per_hand).astype(jnp.float32)
    return (m @ jnp.asarray(group_masks())) > 0


def _type_table(query_types: np.ndarray, db_types: np.ndarray,
                query_groups: np.ndarray | None = None, db_groups: np.ndarray | None = None
                ) -> tuple[np.ndarray, ...]:
    """Per hand type (and group, when given), the database rows of that type and group (padded
    by repetition) and their count; and each query's key: what :func:`_with_distractors` draws
    from."""
    if query_groups is not None:
        groups = int(max(np.max(query_groups, initial=0), np.max(db_groups, initial=0))) + 1
        query_types = np.asarray(query_groups) * len(HAND_TYPES) + np.asarray(query_types)
        db_types = np.asarray(db_groups) * len(HAND_TYPES) + np.asarray(db_types)
    else:
        groups = 1
    ids = [np.flatnonzero(db_types == t) for t in range(groups * len(HAND_TYPES))]
    width = max(1, max(len(r) for r in ids))
    table = np.stack([np.resize(r, width) if len(r) else np.zeros(width, np.int64) for r in ids])
    counts = np.array([len(r) for r in ids], np.int32)
    return table.astype(np.int32), counts, np.asarray(query_types, np.int32)


def _with_distractors(key, q_idx, tpl_idx, table, counts, q_types, prob, same_rows=False):
    """Replace each template, with probability ``prob``, by a uniformly drawn database row of
    the query's hand type (and group; ``q_types`` holds the keys of :func:`_type_table`), kept
    when there is no such row, or when the draw is the query itself and ``same_rows``: the
    database is the training data."""
    t = q_types[q_idx]
    k_use, k_row = jax.random.split(key)
    n = counts[t]
    row = table[t, jax.random.randint(k_row, q_idx.shape, 0, jnp.maximum(n, 1))]
    use = (jax.random.uniform(k_use, q_idx.shape) < prob) & (n > 0)
    use = use & ~(same_rows & (row == q_idx))
    return jnp.where(use, row, tpl_idx)


@functools.partial(jax.jit, static_argnames=("model_cfg", "opt", "masked_only", "trainable"))
def _train_step(state, q_idx, key, consts, *, model_cfg, opt, masked_only, trainable):
    (data_dev, db_dev, tpl_dev, mask_ratio, dropout, infer, distract, weights, models,
     pointnet_params) = consts
    step_key = jax.random.fold_in(key, state["step"])
    tpl_idx = _with_distractors(jax.random.fold_in(step_key, 2), q_idx, tpl_dev[q_idx], *distract)

    def loss_fn(part):  # the held parameters are constants: no gradient is taken through them
        prm = {**state["params"], **part}
        return batch_loss(prm, model_cfg, data_dev, db_dev, q_idx, tpl_idx, step_key,
                          mask_ratio, dropout, weights, models, pointnet_params,
                          masked_only=masked_only, inference_episodes=infer)

    part = _trained_part(state["params"], trainable)
    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(part)
    updates, opt_state = opt.update(grads, state["opt_state"], part)
    new = {"step": state["step"] + 1,
           "params": {**state["params"], **optax.apply_updates(part, updates)},
           "opt_state": opt_state}
    return new, loss, terms


def _trained_part(params: dict, trainable: tuple[str, ...]) -> dict:
    """The parameters :attr:`TrainConfig.trainable` names (all when it names none)."""
    return {k: v for k, v in params.items() if not trainable or k in trainable}


def _state_template(params, opt_state):
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": opt_state}


def _checkpoint_manager(directory: Path, cfg: TrainConfig) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=cfg.max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def save_checkpoint(mgr: ocp.CheckpointManager, state: dict, losses: list[float],
                    meta: dict) -> None:
    """Write ``state`` (step, params, opt_state) and the loss history at ``state["step"]``."""
    step = int(state["step"])
    mgr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        history=ocp.args.JsonSave({"losses": [float(x) for x in losses[:step]], **meta})),
        force=True)
    mgr.wait_until_finished()


def restore_checkpoint(directory: str | Path, state_like: dict | None = None,
                       step: int | None = None) -> tuple[dict, dict]:
    """Read ``(state, history)`` from a checkpoint directory (the latest step by default).

    ``state_like`` gives the tree structure (e.g. a fresh state); without it the parameters come
    back as the raw tree (enough for evaluation)."""
    mgr = ocp.CheckpointManager(Path(directory).absolute(),
                                options=ocp.CheckpointManagerOptions(read_only=True))
    step = mgr.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    state_arg = (ocp.args.StandardRestore(state_like) if state_like is not None
                 else ocp.args.StandardRestore())
    out = mgr.restore(step, args=ocp.args.Composite(state=state_arg,
                                                    history=ocp.args.JsonRestore()))
    return out["state"], out["history"]


def train_icl(
    model_cfg: IclConfig,
    train_cfg: TrainConfig,
    data: IclData,
    template_index: np.ndarray,
    *,
    database: IclData | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    stop_at_step: int | None = None,
    models: Sequence[mano.ManoModel] | None = None,
    pointnet_params: dict | None = None,
    progress: bool = True,
    groups: np.ndarray | None = None,
    database_groups: np.ndarray | None = None,
    init_params: dict | None = None,
) -> TrainResult:
    """Train on ``data`` paired with ``database[template_index]`` (``database`` defaults to
    ``data``: templates retrieved from the training set, the frame itself excluded).

    ``groups`` (per training frame) and ``database_groups`` (per database row; defaults to
    ``groups`` when the database is ``data``) confine the random templates of
    ``train_cfg.distractor_templates`` to the query's group, such as its dataset or recording
    setup; without them they come from the whole database.

    With ``checkpoint_dir`` and ``resume``, starts from the latest checkpoint there. Stops
    after ``stop_at_step`` steps when given (a checkpoint is written there: the test's stand-in
    for a killed run), else after ``train_cfg.total_steps``.

    ``init_params``: start from these top-level parameters instead of fresh ones (the others,
    such as a gate the given model lacks, start fresh), e.g. a trained model's, with
    ``train_cfg.trainable`` naming the part to train.
    """
    t0 = time.perf_counter()
    database = data if database is None else database
    n, p, c = np.shape(data.image_features)
    text_dim = np.shape(data.text_embedding)[1]
    template_index = np.asarray(template_index, np.int32)
    if template_index.shape != (n,):
        raise ValueError(f"template_index {template_index.shape} != ({n},)")

    init_key, key = jax.random.split(jax.random.key(train_cfg.seed))
    params = init_icl_params(model_cfg, p, c, text_dim, init_key)
    if init_params is not None:
        for k, v in init_params.items():
            if k not in params:
                raise ValueError(f"init_params: {k!r} is not a parameter of this model "
                                 f"(it has {sorted(params)})")
            if jax.tree.structure(v) != jax.tree.structure(params[k]) or any(
                    np.shape(a) != np.shape(b)
                    for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(params[k]))):
                raise ValueError(f"init_params: {k!r} does not have this model's shapes")
        params = {**params, **init_params}
    trainable = tuple(train_cfg.trainable)
    if unknown := sorted(set(trainable) - set(params)):
        raise ValueError(f"TrainConfig.trainable names {unknown}, not parameters of this model "
                         f"(it has {sorted(params)})")
    models = hand_models(model_cfg.sides) if models is None else tuple(models)
    pointnet_params = init_pointnet() if pointnet_params is None else pointnet_params
    opt = make_optimizer(train_cfg)
    state = _state_template(params, opt.init(_trained_part(params, trainable)))
    losses: list[float] = []
    meta = {"model_config": model_cfg.to_dict(), "train_config": dataclasses.asdict(train_cfg),
            "num_patches": int(p), "feature_dim": int(c), "text_dim": int(text_dim)}

    mgr = None
    if checkpoint_dir is not None:
        mgr = _checkpoint_manager(Path(checkpoint_dir), train_cfg)
        if resume and mgr.latest_step() is not None:
            step = mgr.latest_step()
            out = mgr.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(state), history=ocp.args.JsonRestore()))
            state, losses = out["state"], list(out["history"]["losses"])

    data_dev, db_dev = data.to_device(), database.to_device()
    tpl_dev = jnp.asarray(template_index)
    weights = jax.tree.map(lambda w: jnp.asarray(w, jnp.float32), train_cfg.loss_weights())
    tpl_ratio = (train_cfg.mask_ratio if train_cfg.template_mask_ratio is None
                 else train_cfg.template_mask_ratio)
    mask_ratio = jnp.asarray([tpl_ratio, train_cfg.mask_ratio], jnp.float32)
    dropout = jnp.asarray(train_cfg.template_dropout, jnp.float32)
    infer = jnp.asarray(train_cfg.inference_episodes, jnp.float32)
    if groups is not None and database_groups is None:
        if database is not data:
            raise ValueError("groups needs database_groups when a database is given")
        database_groups = groups
    if (groups is None) != (database_groups is None):
        raise ValueError("give both groups and database_groups, or neither")
    if groups is not None and (np.shape(groups) != (n,)
                               or np.shape(database_groups) != (database.num_frames,)):
        raise ValueError(f"groups {np.shape(groups)} / database_groups "
                         f"{np.shape(database_groups)} != ({n},) / ({database.num_frames},)")
    distract = (*map(jnp.asarray, _type_table(hand_types(data, model_cfg.sides),
                                              hand_types(database, model_cfg.sides),
                                              groups, database_groups)),
                jnp.asarray(train_cfg.distractor_templates, jnp.float32),
                jnp.asarray(database is data))
    consts = (data_dev, db_dev, tpl_dev, mask_ratio, dropout, infer, distract, weights, tuple(models),
              pointnet_params)

    start = int(state["step"])
    end = train_cfg.total_steps if stop_at_step is None else min(stop_at_step,
                                                                  train_cfg.total_steps)
    pending: list[jax.Array] = []
    bar = tqdm(total=train_cfg.total_steps, initial=start, disable=not progress,
               desc="icl-train", dynamic_ncols=True)
    for s in range(start, end):
        idx = batch_indices(train_cfg.seed, s, n, train_cfg.batch_size)
        state, loss, _ = _train_step(state, jnp.asarray(idx), key, consts, model_cfg=model_cfg,
                                     opt=opt, masked_only=train_cfg.loss_on_masked_only,
                                     trainable=trainable)
        pending.append(loss)
        if (s + 1) % train_cfg.log_every == 0 or s + 1 == end:
            losses.extend(float(x) for x in jax.device_get(pending))
            pending = []
            bar.update(s + 1 - bar.n)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if mgr is not None and ((s + 1) % train_cfg.checkpoint_every == 0 or s + 1 == end):
            losses.extend(float(x) for x in jax.device_get(pending))
            pending = []
            save_checkpoint(mgr, state, losses, meta)
    bar.close()
    if mgr is not None:
        mgr.close()
    return TrainResult(params=state["params"], step=int(state["step"]), start_step=start,
                       losses=np.asarray(losses, np.float64),
                       seconds=time.perf_counter() - t0)


GATE_PARAMS = {"relevance": ("gate_hidden", "gate_out"),
               "tokens": ("gate_hidden", "gate_token", "gate_bias")}
"""The parameters of each kind of :attr:`IclConfig.template_gate`."""


def calibrate_gate(
    params: dict,
    model_cfg: IclConfig,
    train_cfg: TrainConfig,
    data: IclData,
    template_index: np.ndarray,
    *,
    gate: str = "relevance",
    steps: int = 400,
    learning_rate: float = 0.02,
    **kwargs,
) -> tuple[IclConfig, TrainResult]:
    """Train a template gate alone on a model trained without one: the model's parameters are
    held, and the gate (:attr:`IclConfig.template_gate` ``gate``) learns for ``steps`` steps how
    much of the pass with the template to take over the pass without it, every example drawn as
    at inference (template target whole, query target fully masked) and the rest of
    ``train_cfg`` (batch, random templates, seed) as given. The retrieved template's gain stays
    the model's, where a gate trained with the transformer costs part of it (README,
    EgoHandICL). ``kwargs`` go to :func:`train_icl` (``checkpoint_dir``, ``groups``, ...).
    Returns the gated model's config and the result of its training."""
    if gate not in GATE_PARAMS:
        raise ValueError(f"gate must be one of {sorted(GATE_PARAMS)}, got {gate!r}")
    if model_cfg.template_gate != "off":
        raise ValueError("calibrate_gate takes a model trained without a gate")
    gated = dataclasses.replace(model_cfg, template_gate=gate)
    cfg = dataclasses.replace(train_cfg, total_steps=steps, learning_rate=learning_rate,
                              warmup_steps=min(train_cfg.warmup_steps, max(steps // 8, 1)),
                              inference_episodes=1.0, trainable=GATE_PARAMS[gate])
    return gated, train_icl(gated, cfg, data, template_index, init_params=params, **kwargs)


def save_run_meta(path: str | Path, model_cfg: IclConfig, train_cfg: TrainConfig,
                  extra: dict | None = None) -> Path:
    """A JSON file with the model and training configs (what `hoijax icl-eval` reads back)."""
    path = Path(path)
    path.write_text(json.dumps({"model_config": model_cfg.to_dict(),
                                "train_config": dataclasses.asdict(train_cfg), **(extra or {})},
                               indent=2))
    return path
