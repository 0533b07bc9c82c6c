"""DINOv2 / DINOv3 vision transformers in Flax (inference), matching Hugging Face numerically.

One module covers both families (:class:`ViTConfig` ``family``): pre-norm blocks with layer
scale, ``x + ls1 * attn(norm1(x))`` then ``x + ls2 * mlp(norm2(x))``, and a final LayerNorm over
all tokens. Token order is ``[CLS, registers..., patches...]`` as in HF's ``last_hidden_state``.
DINOv2 adds interpolated learned position embeddings to CLS and patches (registers are inserted
afterwards, without position); DINOv3 rotates the patch tokens' queries and keys (RoPE) and
leaves CLS and registers unrotated.

The module acts on one normalized image (H, W, 3), H and W multiples of the patch size; batch
with ``jax.vmap``. Parameters are the plain nested dict of ``module.init``; see
``hoijax.features.convert_state_dict`` for the names.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, ArrayLike, Float

from hoijax.features._config import ViTConfig
from hoijax.features._pos_embed import bicubic_matrix, rope_cos_sin


@struct.dataclass
class ViTOutput:
    """Final-norm tokens of one image, split by role (HF ``last_hidden_state``)."""

    cls_token: Float[Array, " C"]
    """The CLS token (HF ``pooler_output``)."""
    register_tokens: Float[Array, "R C"]
    """Register / storage tokens (R = 0 for plain DINOv2)."""
    patch_tokens: Float[Array, "h w C"]
    """Patch tokens on the (H / patch, W / patch) grid, row-major like the image."""


def _rotate_half(x: Float[Array, "... D"]) -> Float[Array, "... D"]:
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([-x2, x1], axis=-1)


class _Attention(nn.Module):
    config: ViTConfig

    @nn.compact
    def __call__(self, x: Float[Array, "N C"], rope: tuple[Array, Array] | None) -> Float[Array, "N C"]:
        cfg = self.config
        n = x.shape[0]

        def proj(name: str, bias: bool) -> Array:
            return nn.Dense(cfg.hidden_size, use_bias=bias, name=name)(x).reshape(
                n, cfg.num_heads, cfg.head_dim)

        q, k, v = proj("q", cfg.query_bias), proj("k", cfg.key_bias), proj("v", cfg.value_bias)
        if rope is not None:
            cos, sin = rope[0][:, None, :], rope[1][:, None, :]  # (N_patch, 1, D)
            p = cfg.num_prefix_tokens

            def rotate(t: Array) -> Array:
                patches = t[p:] * cos + _rotate_half(t[p:]) * sin
                return jnp.concatenate([t[:p], patches], axis=0)

            q, k = rotate(q), rotate(k)
        logits = jnp.einsum("qhd,khd->hqk", q, k) * (cfg.head_dim ** -0.5)
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("hqk,khd->qhd", weights, v).reshape(n, cfg.hidden_size)
        return nn.Dense(cfg.hidden_size, use_bias=cfg.proj_bias, name="proj")(out)


class _Mlp(nn.Module):
    config: ViTConfig

    @nn.compact
    def __call__(self, x: Float[Array, "N C"]) -> Float[Array, "N C"]:
        cfg = self.config
        if cfg.mlp == "gelu":
            h = nn.Dense(cfg.mlp_hidden_size, use_bias=cfg.mlp_bias, name="fc1")(x)
            return nn.Dense(cfg.hidden_size, use_bias=cfg.mlp_bias, name="fc2")(
                jax.nn.gelu(h, approximate=False))
        gate = nn.Dense(cfg.mlp_hidden_size, use_bias=cfg.mlp_bias, name="gate")(x)
        up = nn.Dense(cfg.mlp_hidden_size, use_bias=cfg.mlp_bias, name="up")(x)
        return nn.Dense(cfg.hidden_size, use_bias=cfg.mlp_bias, name="down")(jax.nn.silu(gate) * up)


class _Block(nn.Module):
    config: ViTConfig

    @nn.compact
    def __call__(self, x: Float[Array, "N C"], rope: tuple[Array, Array] | None) -> Float[Array, "N C"]:
        cfg = self.config
        ones = nn.initializers.ones
        h = nn.LayerNorm(epsilon=cfg.layer_norm_eps, name="norm1")(x)
        x = x + self.param("ls1", ones, (cfg.hidden_size,)) * _Attention(cfg, name="attn")(h, rope)
        h = nn.LayerNorm(epsilon=cfg.layer_norm_eps, name="norm2")(x)
        return x + self.param("ls2", ones, (cfg.hidden_size,)) * _Mlp(cfg, name="mlp")(h)


class DinoViT(nn.Module):
    """DINOv2 / DINOv3 ViT on one normalized image (H, W, 3) -> :class:`ViTOutput`.

    Parameter tree (``params`` collection): ``patch_embed`` {kernel (p, p, 3, C), bias (C,)},
    ``cls_token`` (C,), ``register_tokens`` (R, C) if R > 0, ``pos_embed`` (1 + g*g, C) for
    DINOv2, ``blocks_{i}`` {norm1, attn {q, k, v, proj}, ls1 (C,), norm2, mlp {fc1, fc2} or
    {gate, up, down}, ls2 (C,)}, ``norm`` {scale, bias}. Dense kernels are (in, out).
    """

    config: ViTConfig

    @nn.compact
    def __call__(self, pixels: Float[ArrayLike, "H W 3"]) -> ViTOutput:
        cfg = self.config
        pixels = jnp.asarray(pixels)
        p, c = cfg.patch_size, cfg.hidden_size
        height, width = pixels.shape[0], pixels.shape[1]
        if height % p or width % p or height == 0 or width == 0:
            raise ValueError(f"image size {height}x{width} is not a positive multiple of the patch "
                             f"size {p}; resize it first (see hoijax.features.dense_features)")
        h, w = height // p, width // p
        init = nn.initializers.normal(0.02)
        patches = nn.Conv(c, (p, p), strides=(p, p), padding="VALID", name="patch_embed")(
            pixels[None])[0].reshape(h * w, c)
        cls = self.param("cls_token", init, (c,))[None]
        rope = None
        if cfg.family == "dinov2":
            g = cfg.pos_embed_grid
            pos = self.param("pos_embed", init, (1 + g * g, c))
            patch_pos = pos[1:].reshape(g, g, c)
            if (h, w) != (g, g):  # the resampling matrices are static: built from shapes only
                m_h = jnp.asarray(bicubic_matrix(g, h, antialias=cfg.pos_embed_antialias), pos.dtype)
                m_w = jnp.asarray(bicubic_matrix(g, w, antialias=cfg.pos_embed_antialias), pos.dtype)
                patch_pos = jnp.einsum("hi,ijc,wj->hwc", m_h, patch_pos, m_w,
                                       precision=jax.lax.Precision.HIGHEST)
            cls = cls + pos[:1]
            patches = patches + patch_pos.reshape(h * w, c)
        else:
            cos, sin = rope_cos_sin((h, w), cfg.head_dim, cfg.rope_theta)
            rope = (jnp.asarray(cos, pixels.dtype), jnp.asarray(sin, pixels.dtype))
        tokens = [cls]
        if cfg.num_register_tokens:
            tokens.append(self.param("register_tokens", init, (cfg.num_register_tokens, c)))
        x = jnp.concatenate([*tokens, patches], axis=0)
        for i in range(cfg.num_layers):
            x = _Block(cfg, name=f"blocks_{i}")(x, rope)
        x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, name="norm")(x)
        r = cfg.num_register_tokens
        return ViTOutput(cls_token=x[0], register_tokens=x[1:1 + r],
                         patch_tokens=x[1 + r:].reshape(h, w, c))


def init_vit_params(config: ViTConfig, key: Array | None = None) -> dict:
    """Randomly initialized parameters (same tree as a converted checkpoint)."""
    key = jax.random.key(0) if key is None else key
    p = config.patch_size
    return DinoViT(config).init(key, jnp.zeros((p, p, 3), jnp.float32))["params"]


def vit_param_shapes(config: ViTConfig) -> dict:
    """The parameter tree's shapes, as ``jax.ShapeDtypeStruct`` leaves (nothing is allocated)."""
    p = config.patch_size
    return jax.eval_shape(
        lambda: DinoViT(config).init(jax.random.key(0), jnp.zeros((p, p, 3), np.float32))["params"])
