"""The EgoHandICL network: ICL tokenizer (§3.2) and MAE-style masked transformer (§3.3), in Flax.

One example is a (template, query) pair. Per frame, three modalities become tokens:

- image tokens ``F_i``: ViT patch features ``(P, C)`` (hoijax's DINO ViT through
  :func:`vit_image_tokens`, or any precomputed features), a linear map to the model width plus a
  learned position per patch;
- structural tokens ``F_m``: a MANO encoder (Linear–LayerNorm–GELU–Linear) maps each hand's
  61-vector (:mod:`hoijax.icl._params`) to ``K = 6`` tokens, one per parameter group
  (:data:`hoijax.icl.PARAM_GROUPS`: root, four finger groups, shape; the encoder is shared and
  sees one group and the group's one-hot id at a time), plus a slot (right/left) embedding.
  Tokens own disjoint groups so that masking a target token hides exactly that group, as MAE's
  patches do; a token computed from the whole vector would leak every parameter through any
  unmasked token;
- text tokens ``F_t``: the description embedding projected and compressed to ``S`` slots.

Cross-attention (MANO tokens query the frame's image and text tokens) fuses them into the four
sets of ICL tokens ``T_tpl_in`` (template coarse MANO), ``T_tpl_tar`` (template ground truth),
``T_qry_in`` (query coarse MANO) and ``T_qry_tar`` (query ground truth), each ``(H·K, d)``.

The transformer reads ``[T_tpl_in, T_tpl_tar, T_qry_in, T_qry_tar]`` (+ role and position
embeddings) with self-attention. Target tokens flagged as masked are replaced by one learnable
mask token *before* the transformer: in training a random ``ratio`` of the target tokens of both
template and query (:func:`sample_target_masks`, 0.7 in the paper); at inference all of the
query's target tokens and none of the template's (:func:`inference_masks`). The outputs at the
query-target positions decode a residual added to the coarse query parameters, each token
its own parameter group (the decoder starts at zero, so an untrained model returns the coarse
input). Absent hands are never attended to; with ``use_template=False`` the template tokens are
not attended to either (the "no context" ablation).

Everything acts on one example; batch with ``jax.vmap``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from hoijax import features as hfeatures
from hoijax import mano
from hoijax.icl._params import (
    NUM_HAND_PARAMS,
    PARAM_GROUPS,
    TWO_HANDS,
    from_network_units,
    group_masks,
    to_network_units,
)
from hoijax.icl._retrieval import cosine_similarity

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
_GATES = ("off", "relevance", "tokens")


@dataclasses.dataclass(frozen=True)
class IclConfig:
    """Static structure of the EgoHandICL network (hashable: a jit static argument)."""

    sides: tuple[mano.Side, ...] = TWO_HANDS
    """Hand slots: ``("right", "left")`` for two hands, ``("right",)`` for one."""
    d_model: int = 128
    """Token width."""
    num_heads: int = 4
    """Attention heads (fusion and transformer)."""
    num_layers: int = 4
    """Transformer blocks."""
    mlp_ratio: int = 4
    """Hidden width of the feed-forward blocks, in units of ``d_model``."""
    text_slots: int = 2
    """``S``: text tokens the description embedding is compressed to."""
    dtype: str = "float32"
    """Compute dtype: ``"float32"``, or ``"bfloat16"`` on GPUs (parameters stay float32)."""
    target_difference: bool = False
    """Add to every *target* token a linear encoding of its group's ``target − input``
    (template: ground truth − coarse; query: the same where visible in training, nothing at
    inference since the query target is fully masked). The paper's tokens carry input and target
    separately and leave the difference to the transformer; this option presents it directly
    (a deviation; see ``experiments/icl_table.py`` for its row)."""
    template_relevance: bool = False
    """Add to every *template* token a linear encoding of how much the template resembles the
    query: the cosine similarity of their text embeddings and of their mean image features
    (:func:`template_relevance`). A template from another recording carries another detector
    error, and without this signal the transformer has to infer from raw tokens whether to
    copy the template's correction; with it, the model can learn how far to trust one (in
    training, retrieval already returns some templates from other scenes; random templates,
    ``TrainConfig.distractor_templates``, add more). A deviation from the paper, on by default
    in ``hoijax icl-train``; see ``experiments/icl_table.py`` for its rows."""

    template_gate: str = "off"
    """Decide explicitly how much of the template's correction to take (``"off"``: no gate):
    the transformer runs twice with shared weights, with the template and without it, and the
    refined query is ``coarse + Δ₀ + g · (Δ_t − Δ₀)``, with ``g`` in (0, 1) per hand and
    parameter group from a small MLP. ``"relevance"``: the MLP reads
    :func:`template_relevance` only (one gate per group, shared by the hands); ``"tokens"``:
    it also reads each query-target token of the pass with the template, which has seen the
    template's and the query's tokens. A template whose error only partly resembles the
    query's (another scene of the same recording) can then be taken in part, the shrinkage a
    single pass had to learn implicitly. Twice the transformer's cost. A deviation from the
    paper; see ``experiments/icl_table.py`` for its rows."""

    def __post_init__(self):
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} not divisible by num_heads {self.num_heads}")
        if self.template_gate not in _GATES:
            raise ValueError(f"template_gate must be one of {_GATES}, got {self.template_gate!r}")
        if not self.sides or any(s not in ("right", "left") for s in self.sides):
            raise ValueError(f"sides must be a non-empty tuple of 'right'/'left', got {self.sides}")

    @property
    def num_hands(self) -> int:
        return len(self.sides)

    @property
    def tokens_per_hand(self) -> int:
        """``K``: structural tokens per hand, one per :data:`hoijax.icl.PARAM_GROUPS` entry."""
        return len(PARAM_GROUPS)

    @property
    def num_target_tokens(self) -> int:
        """Tokens per ICL token set: ``H · K``."""
        return self.num_hands * self.tokens_per_hand

    @property
    def compute_dtype(self):
        return _DTYPES[self.dtype]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["sides"] = list(self.sides)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> IclConfig:
        d = dict(d)
        d["sides"] = tuple(d["sides"])
        if isinstance(d.get("template_gate"), bool):  # written before the gate had kinds
            d["template_gate"] = "relevance" if d["template_gate"] else "off"
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class IclExample(eqx.Module):
    """One (template, query) pair: the model's input. ``P`` patches of width ``C``, text width
    ``D``, ``H`` hand slots (``*B``: optional batch axes, for a batch of examples). Parameters in
    the layout of :mod:`hoijax.icl._params`."""

    query_features: Float[Array, "*B P C"]
    """Image patch features of the query frame."""
    query_text: Float[Array, "*B D"]
    """Text-description embedding of the query frame."""
    query_coarse: Float[Array, "*B H 61"]
    """Coarse MANO estimate of the query (e.g. WiLoR's)."""
    query_presence: Bool[Array, "*B H"]
    """Which hand slots the query has."""
    query_gt: Float[Array, "*B H 61"]
    """Query ground truth (training only; any values at inference, where it is fully masked)."""
    template_features: Float[Array, "*B P C"]
    template_text: Float[Array, "*B D"]
    template_coarse: Float[Array, "*B H 61"]
    template_presence: Bool[Array, "*B H"]
    template_gt: Float[Array, "*B H 61"]
    """Ground-truth MANO of the retrieved template (always known: it comes from the database)."""


class IclTokens(NamedTuple):
    """The four ICL token sets of one example, each ``(H·K, d)``, and token validity."""

    template_input: Array
    template_target: Array
    query_input: Array
    query_target: Array
    template_valid: Array
    """``(H·K,)``: the token's hand is present in the template."""
    query_valid: Array
    """``(H·K,)``: the token's hand is present in the query."""


def sample_target_masks(
    key: Array, num_tokens: int, ratio: Float[ArrayLike, ""]
) -> tuple[Bool[Array, " T"], Bool[Array, " T"]]:
    """Training masks of the template and query target tokens (True = replaced by the mask
    token), drawn independently: exactly ``round(ratio · T)`` of the ``T`` tokens each, as MAE
    masks a fixed fraction. ``ratio`` may be traced."""
    k_tpl, k_qry = jax.random.split(key)
    count = jnp.round(jnp.asarray(ratio) * num_tokens)

    def one(k):
        rank = jnp.argsort(jnp.argsort(jax.random.uniform(k, (num_tokens,))))
        return rank < count

    return one(k_tpl), one(k_qry)


def inference_masks(num_tokens: int) -> tuple[Bool[Array, " T"], Bool[Array, " T"]]:
    """Inference: the template target fully visible, the query target fully masked."""
    return jnp.zeros((num_tokens,), bool), jnp.ones((num_tokens,), bool)


def template_relevance(ex: IclExample) -> Float[Array, "2"]:
    """How much the template resembles the query: the cosine similarities of their text
    embeddings and of their patch features' means, each in [-1, 1] (0 for a zero vector, with
    finite gradients). Invariant to the scale of either input."""
    feats = lambda f: jnp.mean(jnp.asarray(f, jnp.float32), axis=-2)  # noqa: E731
    return jnp.stack([
        cosine_similarity(jnp.asarray(ex.template_text, jnp.float32),
                          jnp.asarray(ex.query_text, jnp.float32)),
        cosine_similarity(feats(ex.template_features), feats(ex.query_features)),
    ])


def vit_image_tokens(
    vit_params: dict,
    vit_config: hfeatures.ViTConfig,
    image: Float[ArrayLike, "H W 3"],
    input_hw: tuple[int, int] | None = None,
) -> Float[Array, "P C"]:
    """Image tokens of one RGB image from hoijax's DINO ViT: the ``(h·w, C)`` patch features
    (``features.dense_features``), the tokenizer's ``query_features`` / ``template_features``."""
    feats = hfeatures.dense_features(vit_params, vit_config, image, input_hw=input_hw)
    return feats.reshape(-1, feats.shape[-1])


class ManoEncoder(nn.Module):
    """Linear–LayerNorm–GELU–Linear from one hand's 61-vector to one token per parameter group.

    Token ``k`` is the shared MLP applied to ``[params ⊙ group_k, onehot(k)]``: it depends on
    group ``k``'s entries only."""

    d_model: int
    dtype: object = jnp.float32

    @nn.compact
    def __call__(self, params: Float[Array, "H 61"]) -> Float[Array, "H K d"]:
        gm = jnp.asarray(group_masks(), self.dtype)
        k = gm.shape[0]
        x = to_network_units(params).astype(self.dtype)[..., None, :] * gm  # (H, K, 61)
        onehot = jnp.broadcast_to(jnp.eye(k, dtype=self.dtype), (*x.shape[:-1], k))
        x = jnp.concatenate([x, onehot], axis=-1)
        x = nn.Dense(self.d_model, dtype=self.dtype, name="fc1")(x)
        x = nn.LayerNorm(dtype=self.dtype, name="norm")(x)
        x = jax.nn.gelu(x)
        return nn.Dense(self.d_model, dtype=self.dtype, name="fc2")(x)


class _Mlp(nn.Module):
    d_model: int
    ratio: int
    dtype: object

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.d_model * self.ratio, dtype=self.dtype, name="fc1")(x)
        return nn.Dense(self.d_model, dtype=self.dtype, name="fc2")(jax.nn.gelu(h))


class _CrossAttentionBlock(nn.Module):
    """``q + attn(LN q, LN ctx)``, then ``+ mlp(LN ·)``: fuses modalities into the ICL tokens."""

    config: IclConfig

    @nn.compact
    def __call__(self, q: Float[Array, "T d"], ctx: Float[Array, "N d"]) -> Float[Array, "T d"]:
        cfg, dt = self.config, self.config.compute_dtype
        kv = nn.LayerNorm(dtype=dt, name="norm_ctx")(ctx)
        q = q + nn.MultiHeadDotProductAttention(cfg.num_heads, dtype=dt, name="attn")(
            nn.LayerNorm(dtype=dt, name="norm_q")(q), kv)
        return q + _Mlp(cfg.d_model, cfg.mlp_ratio, dt, name="mlp")(
            nn.LayerNorm(dtype=dt, name="norm_mlp")(q))


class _SelfAttentionBlock(nn.Module):
    config: IclConfig

    @nn.compact
    def __call__(self, x: Float[Array, "T d"], key_valid: Bool[Array, " T"]) -> Float[Array, "T d"]:
        cfg, dt = self.config, self.config.compute_dtype
        mask = jnp.broadcast_to(key_valid[None, None, :], (1, x.shape[0], x.shape[0]))
        h = nn.LayerNorm(dtype=dt, name="norm1")(x)
        x = x + nn.MultiHeadDotProductAttention(cfg.num_heads, dtype=dt, name="attn")(
            h, h, mask=mask, sow_weights=True)
        return x + _Mlp(cfg.d_model, cfg.mlp_ratio, dt, name="mlp")(
            nn.LayerNorm(dtype=dt, name="norm2")(x))


class IclTokenizer(nn.Module):
    """Image, MANO and text tokens of template and query, fused into the four ICL token sets."""

    config: IclConfig

    @nn.compact
    def __call__(self, ex: IclExample) -> IclTokens:
        cfg, dt = self.config, self.config.compute_dtype
        d, k, h = cfg.d_model, cfg.tokens_per_hand, cfg.num_hands
        if ex.query_coarse.shape != (h, NUM_HAND_PARAMS):
            raise ValueError(f"query_coarse {ex.query_coarse.shape} != ({h}, {NUM_HAND_PARAMS})"
                             f" for sides {cfg.sides}")
        num_patches = ex.query_features.shape[0]
        img_proj = nn.Dense(d, dtype=dt, name="image_proj")
        patch_pos = self.param("patch_pos", nn.initializers.normal(0.02), (num_patches, d))
        text_proj = nn.Dense(cfg.text_slots * d, dtype=dt, name="text_proj")
        text_norm = nn.LayerNorm(dtype=dt, name="text_norm")
        mano_enc = ManoEncoder(d, dt, name="mano_encoder")
        slot_emb = self.param("slot_embed", nn.initializers.normal(0.02), (h, 1, d))
        fuse = _CrossAttentionBlock(cfg, name="fusion")

        def context(feats, text):
            img = img_proj(feats.astype(dt)) + patch_pos.astype(dt)
            txt = text_norm(text_proj(text.astype(dt)).reshape(cfg.text_slots, d))
            return jnp.concatenate([img, txt], axis=0)

        def icl_tokens(params, ctx):
            m = mano_enc(params) + slot_emb.astype(dt)
            return fuse(m.reshape(h * k, d), ctx)

        if cfg.target_difference:
            diff_enc = nn.Dense(d, dtype=dt, name="difference_encoder")
            gm = jnp.asarray(group_masks(), dt)

            def difference(target, inp):  # (H, 61) -> (H·K, d), token k sees group k only
                delta = to_network_units(jnp.asarray(target) - jnp.asarray(inp)).astype(dt)
                return diff_enc(delta[..., None, :] * gm).reshape(h * k, d)
        else:
            def difference(target, inp):
                return 0.0

        if cfg.template_relevance:
            relevance = nn.Dense(d, dtype=dt, name="relevance_encoder")(
                template_relevance(ex).astype(dt))
        else:
            relevance = 0.0

        ctx_tpl = context(ex.template_features, ex.template_text)
        ctx_qry = context(ex.query_features, ex.query_text)
        per_token = lambda presence: jnp.repeat(jnp.asarray(presence, bool), k)  # noqa: E731
        return IclTokens(
            template_input=icl_tokens(ex.template_coarse, ctx_tpl) + relevance,
            template_target=(icl_tokens(ex.template_gt, ctx_tpl) + relevance
                             + difference(ex.template_gt, ex.template_coarse)),
            query_input=icl_tokens(ex.query_coarse, ctx_qry),
            query_target=(icl_tokens(ex.query_gt, ctx_qry)
                          + difference(ex.query_gt, ex.query_coarse)),
            template_valid=per_token(ex.template_presence),
            query_valid=per_token(ex.query_presence),
        )


class EgoHandIcl(nn.Module):
    """Tokenizer + masked transformer + residual MANO decoder, on one example.

    ``__call__(ex, template_target_masked, query_target_masked, use_template)`` returns the
    refined query parameters ``(H, 61)`` (float32, parameter units). Masks are ``(H·K,)``
    booleans, True where a target token is replaced by the learnable mask token;
    ``use_template`` (a traced bool) removes the template tokens from attention when False.
    """

    config: IclConfig

    @nn.compact
    def __call__(
        self,
        ex: IclExample,
        template_target_masked: Bool[ArrayLike, " T"],
        query_target_masked: Bool[ArrayLike, " T"],
        use_template: Bool[ArrayLike, ""] = True,
    ) -> Float[Array, "H 61"]:
        cfg, dt = self.config, self.config.compute_dtype
        d, n, h = cfg.d_model, cfg.num_target_tokens, cfg.num_hands
        tokens = IclTokenizer(cfg, name="tokenizer")(ex)
        mask_token = self.param("mask_token", nn.initializers.normal(0.02), (d,)).astype(dt)
        tpl_m = jnp.asarray(template_target_masked, bool)[:, None]
        qry_m = jnp.asarray(query_target_masked, bool)[:, None]
        tpl_tar = jnp.where(tpl_m, mask_token, tokens.template_target)
        qry_tar = jnp.where(qry_m, mask_token, tokens.query_target)
        role = self.param("role_embed", nn.initializers.normal(0.02), (4, 1, d)).astype(dt)
        pos = self.param("position_embed", nn.initializers.normal(0.02), (1, n, d)).astype(dt)
        seq = (jnp.stack([tokens.template_input, tpl_tar, tokens.query_input, qry_tar])
               + role + pos).reshape(4 * n, d)
        use_tpl = jnp.asarray(use_template, bool)
        blocks = [_SelfAttentionBlock(cfg, name=f"block_{i}") for i in range(cfg.num_layers)]
        norm_out = nn.LayerNorm(dtype=dt, name="norm_out")
        decoder = nn.Dense(NUM_HAND_PARAMS, dtype=jnp.float32, kernel_init=nn.initializers.zeros,
                           name="decoder")
        gm = jnp.asarray(group_masks())

        def residual(with_template):
            tpl_valid = tokens.template_valid & with_template
            key_valid = jnp.concatenate([tpl_valid, tpl_valid, tokens.query_valid,
                                         tokens.query_valid])
            x = seq
            for block in blocks:
                x = block(x, key_valid)
            out = norm_out(x[3 * n:]).reshape(h, cfg.tokens_per_hand, d)
            # Each query-target token decodes the residual of its own parameter group.
            return jnp.sum(decoder(out.astype(jnp.float32)) * gm, axis=1), out

        delta, out = residual(use_tpl)
        if cfg.template_gate != "off":
            free, _ = residual(jnp.zeros((), bool))
            rel = template_relevance(ex)
            if cfg.template_gate == "tokens":  # (H, K, d + 2): each token and the relevance
                feats = jnp.concatenate([out.astype(jnp.float32), jnp.broadcast_to(
                    rel, (h, cfg.tokens_per_hand, 2))], axis=-1)
                hidden = nn.gelu(nn.Dense(16, name="gate_hidden")(feats))
                logit = nn.Dense(1, name="gate_token")(hidden)[..., 0]  # (H, K)
                bias = self.param("gate_bias", nn.initializers.zeros, (cfg.tokens_per_hand,))
                gate = nn.sigmoid(logit + bias)
            else:
                hidden = nn.gelu(nn.Dense(16, name="gate_hidden")(rel))
                gate = nn.sigmoid(nn.Dense(cfg.tokens_per_hand, name="gate_out")(hidden))
            # Without the template both passes are the same; the gate then changes nothing.
            delta = free + (gate @ gm) * (delta - free)
        return jnp.asarray(ex.query_coarse, jnp.float32) + from_network_units(delta)


def example_shapes(
    config: IclConfig, num_patches: int, feature_dim: int, text_dim: int
) -> IclExample:
    """A zero :class:`IclExample` of the given sizes (for ``init`` and tests)."""
    h = config.num_hands
    z = lambda *s: jnp.zeros(s, jnp.float32)  # noqa: E731
    return IclExample(
        query_features=z(num_patches, feature_dim), query_text=z(text_dim),
        query_coarse=z(h, NUM_HAND_PARAMS), query_presence=jnp.ones((h,), bool),
        query_gt=z(h, NUM_HAND_PARAMS),
        template_features=z(num_patches, feature_dim), template_text=z(text_dim),
        template_coarse=z(h, NUM_HAND_PARAMS), template_presence=jnp.ones((h,), bool),
        template_gt=z(h, NUM_HAND_PARAMS),
    )


def init_icl_params(
    config: IclConfig, num_patches: int, feature_dim: int, text_dim: int,
    key: Array | None = None,
) -> dict:
    """Random parameters of :class:`EgoHandIcl` for inputs of the given sizes."""
    key = jax.random.key(0) if key is None else key
    ex = example_shapes(config, num_patches, feature_dim, text_dim)
    tpl_m, qry_m = inference_masks(config.num_target_tokens)
    return EgoHandIcl(config).init(key, ex, tpl_m, qry_m, True)["params"]


def apply_icl(
    params: dict,
    config: IclConfig,
    ex: IclExample,
    template_target_masked: Bool[ArrayLike, " T"],
    query_target_masked: Bool[ArrayLike, " T"],
    use_template: Bool[ArrayLike, ""] = True,
) -> Float[Array, "H 61"]:
    """:class:`EgoHandIcl` on one example (functional form)."""
    return EgoHandIcl(config).apply({"params": params}, ex, template_target_masked,
                                    query_target_masked, use_template)


def refine(
    params: dict, config: IclConfig, ex: IclExample, use_template: Bool[ArrayLike, ""] = True
) -> Float[Array, "H 61"]:
    """Inference on one example: query target fully masked, template target visible."""
    tpl_m, qry_m = inference_masks(config.num_target_tokens)
    return apply_icl(params, config, ex, tpl_m, qry_m, use_template)


def tokenize(params: dict, config: IclConfig, ex: IclExample) -> IclTokens:
    """The four ICL token sets of one example (the tokenizer alone)."""
    return IclTokenizer(config).apply({"params": params["tokenizer"]}, ex)
