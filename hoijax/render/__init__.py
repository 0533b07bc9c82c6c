"""Differentiable mesh rasterization in pure JAX, binned to tiles (the CPU path and reference).

``rasterize`` gives, in one pass, per-mesh soft silhouettes (SoftRas / PyTorch3D semantics),
occlusion-aware visible silhouettes, and a hard z-buffer (face id, depth, perspective-correct
barycentrics) whose depth and barycentrics are differentiable. ``interpolate`` spreads
per-vertex attributes over the image. Capacities are static (``RasterSettings``); overflow is
reported, and ``rasterize_checked`` retries with larger capacities outside ``jit``.
"""

from hoijax.render._checked import CapacityError, rasterize_checked
from hoijax.render._dense import soft_silhouette_dense
from hoijax.render._interpolate import interpolate
from hoijax.render._raster import (
    DEFAULT_NEAR_M,
    DEFAULT_PROB_EPS,
    DEFAULT_SIGMA_PX2,
    Rendering,
    rasterize,
    screen_space,
)
from hoijax.render._scene import Scene
from hoijax.render._settings import RasterSettings, default_blur_radius_px

__all__ = [
    "DEFAULT_NEAR_M", "DEFAULT_PROB_EPS", "DEFAULT_SIGMA_PX2", "CapacityError", "RasterSettings",
    "Rendering", "Scene", "default_blur_radius_px", "interpolate", "rasterize",
    "rasterize_checked", "screen_space", "soft_silhouette_dense",
]
