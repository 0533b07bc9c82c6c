"""A tiny DINOv2 with random weights written as a real Hugging Face ``model.safetensors``, for
tests that run ``hoijax features`` (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hoijax import features

TINY = features.vit_preset("dinov2_vits14").replace(
    hidden_size=32, num_layers=2, num_heads=2, mlp_hidden_size=64, pos_embed_grid=4)


def _hf_dinov2_state_dict(cfg, seed: int) -> dict[str, np.ndarray]:
    """Random weights under the names of ``facebook/dinov2-*``'s model.safetensors."""
    rng = np.random.default_rng(seed)
    c, m, p = cfg.hidden_size, cfg.mlp_hidden_size, cfg.patch_size

    def rnd(*shape, scale=0.05):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    sd = {
        "embeddings.cls_token": rnd(1, 1, c),
        "embeddings.mask_token": np.zeros((1, c), np.float32),
        "embeddings.position_embeddings": rnd(1, 1 + cfg.pos_embed_grid ** 2, c),
        "embeddings.patch_embeddings.projection.weight": rnd(c, 3, p, p),
        "embeddings.patch_embeddings.projection.bias": rnd(c),
        "layernorm.weight": 1 + rnd(c), "layernorm.bias": rnd(c),
    }
    for i in range(cfg.num_layers):
        b = f"encoder.layer.{i}"
        for n in ("norm1", "norm2"):
            sd[f"{b}.{n}.weight"], sd[f"{b}.{n}.bias"] = 1 + rnd(c), rnd(c)
        for n in ("attention.attention.query", "attention.attention.key",
                  "attention.attention.value", "attention.output.dense"):
            sd[f"{b}.{n}.weight"], sd[f"{b}.{n}.bias"] = rnd(c, c), rnd(c)
        sd[f"{b}.mlp.fc1.weight"], sd[f"{b}.mlp.fc1.bias"] = rnd(m, c), rnd(m)
        sd[f"{b}.mlp.fc2.weight"], sd[f"{b}.mlp.fc2.bias"] = rnd(c, m), rnd(c)
        sd[f"{b}.layer_scale1.lambda1"] = rnd(c, scale=0.5)
        sd[f"{b}.layer_scale2.lambda1"] = rnd(c, scale=0.5)
    return sd


def write_weights(path: Path, seed: int) -> Path:
    from safetensors.numpy import save_file

    save_file(_hf_dinov2_state_dict(TINY, seed), str(path))
    return path
