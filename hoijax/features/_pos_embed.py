"""Position encodings of the DINO ViTs, reproducing PyTorch / Hugging Face exactly.

DINOv2 learns a (37 x 37) table of position embeddings and resizes it to the input's patch grid
with ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False, size=(h, w))``
(``antialias=True`` for the register models). Both resamplers are separable, so each is a pair
of static (out x in) weight matrices built here in NumPy from the grid sizes and applied as
``W_h @ P @ W_w^T``; the matrices follow torch's CPU kernels:

* plain bicubic (``upsample_bicubic2d``): with ``scale = in / out``, output pixel ``i`` reads
  source coordinate ``x = (i + 0.5) * scale - 0.5`` (not clamped), taps ``floor(x) - 1 ..
  floor(x) + 2`` clamped to the border, Keys cubic convolution with ``a = -0.75``.
* antialiased bicubic (``_upsample_bicubic2d_aa``, PIL-style): centre ``c = (i + 0.5) * scale``,
  support ``2 * max(scale, 1)``, taps ``j`` in ``[int(c - support + 0.5), int(c + support + 0.5))``
  cut to the image, weights ``k((j - c + 0.5) / max(scale, 1))`` with Keys ``a = -0.5``,
  renormalized to sum to one.

The scale convention is HF's (``size=`` given, so ``scale = in / out``), not the
``scale_factor=(out + 0.1) / in`` of Meta's original code, whose result differs slightly.

DINOv3 uses 2-D RoPE (HF ``DINOv3ViTRopePositionEmbedding``): patch centres normalized to
[-1, 1] per axis, angles ``2 pi * coord / period`` for ``head_dim / 4`` periods per axis, laid
out ``[y-angles, x-angles]`` and tiled twice to the head width; rotation by ``rotate_half``.
"""

from __future__ import annotations

import math

import numpy as np


def _keys_cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel k(x) with parameter ``a``."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def bicubic_matrix(in_size: int, out_size: int, *, antialias: bool = False) -> np.ndarray:
    """(out_size, in_size) weights of torch's 1-D bicubic resampling (align_corners=False).

    ``antialias=False`` reproduces ``interpolate(mode="bicubic")``, ``True`` reproduces
    ``interpolate(mode="bicubic", antialias=True)``, both with ``size=`` given."""
    scale = in_size / out_size
    m = np.zeros((out_size, in_size), np.float64)
    if not antialias:
        for i in range(out_size):
            x = (i + 0.5) * scale - 0.5
            x0 = math.floor(x)
            t = x - x0
            w = _keys_cubic(np.array([t + 1, t, 1 - t, 2 - t]), -0.75)
            for k in range(4):
                m[i, min(max(x0 - 1 + k, 0), in_size - 1)] += w[k]
        return m
    support = 2.0 * scale if scale >= 1.0 else 2.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    for i in range(out_size):
        centre = scale * (i + 0.5)
        lo = max(int(centre - support + 0.5), 0)  # int() truncates toward zero, as in C++
        hi = min(int(centre + support + 0.5), in_size)
        j = np.arange(lo, hi)
        w = _keys_cubic((j - centre + 0.5) * invscale, -0.5)
        total = w.sum()
        m[i, lo:hi] = w / total if total != 0 else w
    return m


def rope_cos_sin(grid_hw: tuple[int, int], head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin tables (h*w, head_dim) of DINOv3's 2-D RoPE, patch tokens in row-major order.

    Periods ``theta ** (4 i / head_dim)`` for ``i < head_dim / 4`` are Meta's ``rope_embed.periods``
    (HF stores their inverse as ``inv_freq``). Computed in float32 like the reference."""
    h, w = grid_hw
    periods = np.float32(theta) ** (np.arange(0, head_dim // 4, dtype=np.float32) * np.float32(4.0 / head_dim))
    inv_freq = (np.float32(1.0) / periods).astype(np.float32)
    ys = np.arange(0.5, h, dtype=np.float32) / np.float32(h)
    xs = np.arange(0.5, w, dtype=np.float32) / np.float32(w)
    coords = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(h * w, 2)
    coords = np.float32(2.0) * coords - np.float32(1.0)
    angles = np.float32(2 * math.pi) * coords[:, :, None] * inv_freq[None, None, :]  # (N, 2, D/4)
    angles = np.tile(angles.reshape(h * w, head_dim // 2), (1, 2)).astype(np.float32)
    return np.cos(angles), np.sin(angles)


def rope_periods(head_dim: int, theta: float) -> np.ndarray:
    """Meta's ``rope_embed.periods`` buffer for a head width and base (to validate checkpoints)."""
    return (theta ** (4.0 * np.arange(head_dim // 4) / head_dim)).astype(np.float32)
