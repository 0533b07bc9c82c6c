"""Architecture of the DINOv2 / DINOv3 vision transformers, and presets of the public checkpoints.

Dimensions follow the Hugging Face configs (``facebook/dinov2-{small,base,large,giant}``,
``facebook/dinov2-with-registers-*``, ``facebook/dinov3-vit*16-pretrain-lvd1689m``) and the
conversion scripts in ``transformers`` (``get_dinov2_config`` / ``get_dinov3_config``).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Family = Literal["dinov2", "dinov3"]


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Static structure of a DINO ViT (hashable, so it can be a jit static argument)."""

    family: Family
    """``"dinov2"``: learned absolute position embeddings, bicubically interpolated to the input
    grid. ``"dinov3"``: 2-D rotary position embeddings on the patch tokens (no learned table)."""
    patch_size: int
    """Side of a square patch in pixels (14 for DINOv2, 16 for DINOv3)."""
    hidden_size: int
    """Token width C."""
    num_layers: int
    """Number of transformer blocks."""
    num_heads: int
    """Attention heads; head width is ``hidden_size // num_heads``."""
    mlp_hidden_size: int
    """Hidden width of the feed-forward block (per branch for the gated one)."""
    mlp: Literal["gelu", "swiglu"] = "gelu"
    """``"gelu"``: fc1 -> exact GELU -> fc2. ``"swiglu"``: down(silu(gate(x)) * up(x))."""
    num_register_tokens: int = 0
    """Register ("storage") tokens between the CLS token and the patch tokens."""
    pos_embed_grid: int = 37
    """DINOv2 only: side of the learned position-embedding grid (518 px / 14 = 37)."""
    pos_embed_antialias: bool = False
    """DINOv2 only: interpolate the position embeddings with torch's antialiased bicubic
    (``Dinov2WithRegistersModel``) rather than plain bicubic (``Dinov2Model``)."""
    rope_theta: float = 100.0
    """DINOv3 only: RoPE base; periods are ``theta ** (4 i / head_dim)``, i < head_dim / 4."""
    layer_norm_eps: float = 1e-6
    """LayerNorm epsilon (1e-6 for DINOv2, 1e-5 for DINOv3)."""
    query_bias: bool = True
    key_bias: bool = True
    """DINOv3 checkpoints mask the key bias to zero, so their key projection has none."""
    value_bias: bool = True
    proj_bias: bool = True
    mlp_bias: bool = True

    def __post_init__(self):
        if self.family not in ("dinov2", "dinov3"):
            raise ValueError(f"family must be 'dinov2' or 'dinov3', got {self.family!r}")
        if self.mlp not in ("gelu", "swiglu"):
            raise ValueError(f"mlp must be 'gelu' or 'swiglu', got {self.mlp!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads "
                             f"{self.num_heads}")
        if self.family == "dinov3" and self.head_dim % 4:
            raise ValueError(f"2-D RoPE needs a head width divisible by 4, got {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_prefix_tokens(self) -> int:
        """CLS plus register tokens, ahead of the patch tokens in the sequence."""
        return 1 + self.num_register_tokens

    def replace(self, **changes) -> ViTConfig:
        """A copy with some fields changed (e.g. ``num_layers`` for a shallow test model)."""
        return dataclasses.replace(self, **changes)


def _swiglu_hidden(hidden_size: int, mlp_ratio: int) -> int:
    """DINOv2's SwiGLU width: two thirds of the MLP width, rounded up to a multiple of 8."""
    return (int(int(hidden_size * mlp_ratio) * 2 / 3) + 7) // 8 * 8


def _dinov2(c: int, depth: int, heads: int, registers: int, swiglu: bool = False) -> ViTConfig:
    return ViTConfig(
        family="dinov2", patch_size=14, hidden_size=c, num_layers=depth, num_heads=heads,
        mlp_hidden_size=_swiglu_hidden(c, 4) if swiglu else 4 * c,
        mlp="swiglu" if swiglu else "gelu", num_register_tokens=registers, pos_embed_grid=37,
        pos_embed_antialias=registers > 0, layer_norm_eps=1e-6,
    )


def _dinov3(c: int, depth: int, heads: int, hidden: int, swiglu: bool) -> ViTConfig:
    return ViTConfig(
        family="dinov3", patch_size=16, hidden_size=c, num_layers=depth, num_heads=heads,
        mlp_hidden_size=hidden, mlp="swiglu" if swiglu else "gelu", num_register_tokens=4,
        rope_theta=100.0, layer_norm_eps=1e-5, key_bias=False,
    )


PRESETS: dict[str, ViTConfig] = {
    # DINOv2 (Oquab et al. 2023): facebook/dinov2-* and dinov2_vit*14_pretrain.pth
    "dinov2_vits14": _dinov2(384, 12, 6, 0),
    "dinov2_vitb14": _dinov2(768, 12, 12, 0),
    "dinov2_vitl14": _dinov2(1024, 24, 16, 0),
    "dinov2_vitg14": _dinov2(1536, 40, 24, 0, swiglu=True),
    # DINOv2 with registers (Darcet et al. 2024): facebook/dinov2-with-registers-*, *_reg4_pretrain.pth
    "dinov2_vits14_reg": _dinov2(384, 12, 6, 4),
    "dinov2_vitb14_reg": _dinov2(768, 12, 12, 4),
    "dinov2_vitl14_reg": _dinov2(1024, 24, 16, 4),
    "dinov2_vitg14_reg": _dinov2(1536, 40, 24, 4, swiglu=True),
    # DINOv3 (Siméoni et al. 2025): facebook/dinov3-vit*16-pretrain-lvd1689m, dinov3_vit*16_*.pth
    "dinov3_vits16": _dinov3(384, 12, 6, 1536, swiglu=False),
    "dinov3_vits16plus": _dinov3(384, 12, 6, 1536, swiglu=True),
    "dinov3_vitb16": _dinov3(768, 12, 12, 3072, swiglu=False),
    "dinov3_vitl16": _dinov3(1024, 24, 16, 4096, swiglu=False),
    "dinov3_vith16plus": _dinov3(1280, 32, 20, 5120, swiglu=True),
}
"""Architectures of the public checkpoints, by the name of Meta's ``torch.hub`` entry point."""


def vit_preset(name: str) -> ViTConfig:
    """The :class:`ViTConfig` of a public checkpoint, e.g. ``"dinov2_vits14"``, ``"dinov3_vitb16"``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown ViT preset {name!r}; known: {sorted(PRESETS)}") from None
