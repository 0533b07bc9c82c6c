"""Reference DINO models for the ``hoijax.features`` tests: Hugging Face ``transformers`` models
with random non-trivial weights, and their state dicts in Meta's original key layout.

The Meta layout is produced by inverting, key by key, the published conversion scripts
(``transformers/models/dinov2/convert_dinov2_to_hf.py`` and
``dinov3_vit/convert_dinov3_vit_to_hf.py``, plus the hub-name renames in
``transformers/conversion_mapping.py``), written here independently of ``hoijax``'s converter.
Only imported by tests that have already skipped when torch / transformers are missing.
"""

from __future__ import annotations

import contextlib
import math
import re

import numpy as np
import torch
import transformers

HIDDEN, HEADS = 384, 6  # ViT-S


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Overwrite every parameter with values a wrong conversion cannot get right by accident:
    linear/conv weights ~ N(0, 1/fan_in) (peaked attention), biases ~ N(0, 0.1^2), layer scale
    ~ 0.5 + N(0, 0.2^2), LayerNorm weights ~ 1 + N(0, 0.1^2), tokens and positions ~ N(0, 0.5^2)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if "lambda1" in name:
                p.copy_(0.5 + 0.2 * r)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * r)
            elif name.endswith("bias"):
                p.copy_(0.1 * r)
            elif p.ndim >= 2 and "embeddings." in name and not name.endswith("weight"):
                p.copy_(0.5 * r)  # cls / register / mask tokens, position embeddings
            else:
                p.copy_(r / math.sqrt(p[0].numel()))
    return model.eval()


def _no_init():
    """Skip transformers' weight init (slow truncated normals): ``randomize`` overwrites it all."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        return contextlib.nullcontext()
    return no_init_weights()


def hf_dinov2(layers: int, registers: int = 0, swiglu: bool = False, seed: int = 0):
    """``Dinov2Model`` (registers = 0) or ``Dinov2WithRegistersModel``, ViT-S width, 37x37 grid."""
    torch.manual_seed(seed)
    kw = dict(hidden_size=HIDDEN, num_hidden_layers=layers, num_attention_heads=HEADS,
              image_size=518, patch_size=14, use_swiglu_ffn=swiglu, layerscale_value=1.0)
    with _no_init():
        if registers:
            cfg = transformers.Dinov2WithRegistersConfig(num_register_tokens=registers, **kw)
            model = transformers.Dinov2WithRegistersModel(cfg)
        else:
            model = transformers.Dinov2Model(transformers.Dinov2Config(**kw))
    return randomize(model.float(), seed)


def hf_dinov3(layers: int, gated: bool = False, seed: int = 0):
    """``DINOv3ViTModel`` at ViT-S width with 4 register tokens."""
    torch.manual_seed(seed)
    cfg = transformers.DINOv3ViTConfig(
        hidden_size=HIDDEN, intermediate_size=4 * HIDDEN, num_hidden_layers=layers,
        num_attention_heads=HEADS, num_register_tokens=4, use_gated_mlp=gated,
        hidden_act="silu" if gated else "gelu", image_size=224, patch_size=16)
    with _no_init():
        model = transformers.DINOv3ViTModel(cfg)
    return randomize(model.float(), seed)


def hf_forward(model, pixels_hwc: np.ndarray) -> np.ndarray:
    """``last_hidden_state`` (tokens, C) of one channels-last image."""
    x = torch.from_numpy(np.ascontiguousarray(pixels_hwc.transpose(2, 0, 1)[None]))
    with torch.no_grad():
        return model(pixel_values=x).last_hidden_state[0].numpy()


def state_dict_numpy(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def to_hub_dinov2_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5 names -> the names in the ``facebook/dinov2-*`` hub files (inverse of
    ``conversion_mapping.py``'s Dinov2 renames: ``attention.attention.query``, ``weights_in``)."""
    out = {}
    for k, v in sd.items():
        k2 = (k.replace("attention.q_proj", "attention.attention.query")
               .replace("attention.k_proj", "attention.attention.key")
               .replace("attention.v_proj", "attention.attention.value")
               .replace("attention.o_proj", "attention.output.dense")
               .replace("mlp.down_proj", "mlp.weights_out"))
        if "mlp.gate_proj" in k:
            up = sd[k.replace("gate_proj", "up_proj")]
            out[k.replace("gate_proj", "weights_in")] = torch.cat([v, up], 0)
        elif "mlp.up_proj" in k:
            continue
        else:
            out[k2] = v
    return out


def to_meta_dinov2(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF Dinov2[WithRegisters] state dict -> Meta ``dinov2`` repo keys (inverse of
    ``create_rename_keys`` + ``read_in_q_k_v`` + the w12/w3 renames)."""
    out: dict[str, torch.Tensor] = {}
    layers = sorted({int(m.group(1)) for k in sd if (m := re.match(r"encoder\.layer\.(\d+)\.", k))})
    out["cls_token"] = sd["embeddings.cls_token"]
    out["mask_token"] = sd["embeddings.mask_token"].reshape(1, -1)
    out["pos_embed"] = sd["embeddings.position_embeddings"]
    if "embeddings.register_tokens" in sd:
        out["register_tokens"] = sd["embeddings.register_tokens"]
    out["patch_embed.proj.weight"] = sd["embeddings.patch_embeddings.projection.weight"]
    out["patch_embed.proj.bias"] = sd["embeddings.patch_embeddings.projection.bias"]
    for i in layers:
        h, m = f"encoder.layer.{i}.", f"blocks.{i}."
        for n in ("norm1", "norm2"):
            for t in ("weight", "bias"):
                out[f"{m}{n}.{t}"] = sd[f"{h}{n}.{t}"]
        for t in ("weight", "bias"):
            out[f"{m}attn.qkv.{t}"] = torch.cat(
                [sd[f"{h}attention.{p}_proj.{t}"] for p in ("q", "k", "v")], 0)
            out[f"{m}attn.proj.{t}"] = sd[f"{h}attention.o_proj.{t}"]
            if f"{h}mlp.fc1.weight" in sd:
                out[f"{m}mlp.fc1.{t}"] = sd[f"{h}mlp.fc1.{t}"]
                out[f"{m}mlp.fc2.{t}"] = sd[f"{h}mlp.fc2.{t}"]
            else:
                out[f"{m}mlp.w12.{t}"] = torch.cat(
                    [sd[f"{h}mlp.gate_proj.{t}"], sd[f"{h}mlp.up_proj.{t}"]], 0)
                out[f"{m}mlp.w3.{t}"] = sd[f"{h}mlp.down_proj.{t}"]
        out[f"{m}ls1.gamma"] = sd[f"{h}layer_scale1.lambda1"]
        out[f"{m}ls2.gamma"] = sd[f"{h}layer_scale2.lambda1"]
    out["norm.weight"] = sd["layernorm.weight"]
    out["norm.bias"] = sd["layernorm.bias"]
    return out


def to_meta_dinov3(sd: dict[str, torch.Tensor], head_dim: int, theta: float = 100.0):
    """HF DINOv3ViT state dict -> Meta ``dinov3`` repo keys (inverse of
    ``ORIGINAL_TO_CONVERTED_KEY_MAPPING`` + ``split_qkv``). The key bias that HF drops is
    written back as random garbage masked out by ``bias_mask`` (as Meta's LinearKMaskedBias)."""
    out: dict[str, torch.Tensor] = {}
    g = torch.Generator().manual_seed(123)
    layers = sorted({int(m.group(1)) for k in sd if (m := re.match(r"model\.layer\.(\d+)\.", k))})
    out["cls_token"] = sd["embeddings.cls_token"]
    out["mask_token"] = sd["embeddings.mask_token"].reshape(1, -1)
    out["storage_tokens"] = sd["embeddings.register_tokens"]
    out["patch_embed.proj.weight"] = sd["embeddings.patch_embeddings.weight"]
    out["patch_embed.proj.bias"] = sd["embeddings.patch_embeddings.bias"]
    out["rope_embed.periods"] = theta ** (4.0 * torch.arange(head_dim // 4) / head_dim)
    for i in layers:
        h, m = f"model.layer.{i}.", f"blocks.{i}."
        for n in ("norm1", "norm2"):
            for t in ("weight", "bias"):
                out[f"{m}{n}.{t}"] = sd[f"{h}{n}.{t}"]
        q_b, v_b = sd[f"{h}attention.q_proj.bias"], sd[f"{h}attention.v_proj.bias"]
        out[f"{m}attn.qkv.weight"] = torch.cat(
            [sd[f"{h}attention.{p}_proj.weight"] for p in ("q", "k", "v")], 0)
        out[f"{m}attn.qkv.bias"] = torch.cat([q_b, torch.randn(q_b.shape, generator=g), v_b], 0)
        out[f"{m}attn.qkv.bias_mask"] = torch.cat(
            [torch.ones_like(q_b), torch.zeros_like(q_b), torch.ones_like(v_b)], 0)
        for t in ("weight", "bias"):
            out[f"{m}attn.proj.{t}"] = sd[f"{h}attention.o_proj.{t}"]
            if f"{h}mlp.gate_proj.weight" in sd:
                out[f"{m}mlp.w1.{t}"] = sd[f"{h}mlp.gate_proj.{t}"]
                out[f"{m}mlp.w2.{t}"] = sd[f"{h}mlp.up_proj.{t}"]
                out[f"{m}mlp.w3.{t}"] = sd[f"{h}mlp.down_proj.{t}"]
            else:
                out[f"{m}mlp.fc1.{t}"] = sd[f"{h}mlp.up_proj.{t}"]
                out[f"{m}mlp.fc2.{t}"] = sd[f"{h}mlp.down_proj.{t}"]
        out[f"{m}ls1.gamma"] = sd[f"{h}layer_scale1.lambda1"]
        out[f"{m}ls2.gamma"] = sd[f"{h}layer_scale2.lambda1"]
    out["norm.weight"] = sd["norm.weight"]
    out["norm.bias"] = sd["norm.bias"]
    return out
