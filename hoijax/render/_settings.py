"""Static rasterizer settings: image size, tiling and capacities (hashable, so jit-static)."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class RasterSettings:
    """Image size and the static capacities of the binned rasterizer.

    Everything here fixes array shapes, so it is static under ``jit``: changing it recompiles.
    Numbers that do not change shapes (σ, the blur cut-off, the near plane) are traced
    arguments of :func:`hoijax.render.rasterize` instead.

    The one capacity is the length of the (face, tile) pair list. A scene that needs more
    pairs sets ``overflow`` and marks the whole image ``incomplete`` (never silently wrong);
    :func:`hoijax.render.rasterize_checked` retries with a doubled capacity.
    """

    height: int
    """Image height, pixels."""
    width: int
    """Image width, pixels."""
    tile_size: int = 4
    """Side of the square pixel tiles that faces are binned to. Each (face, tile) pair costs
    ``tile_size²`` pixel evaluations; smaller tiles waste less on small faces but make more
    pairs per face."""
    pairs_per_face: int = 16
    """Capacity of the (face, tile) pair list, per face. A face touches about
    ``(1 + (extent_px + 2·blur_px) / tile_size)²`` tiles."""
    max_pairs: int | None = None
    """Absolute pair capacity; overrides ``pairs_per_face`` when given."""

    def __post_init__(self):
        for name in ("height", "width", "tile_size", "pairs_per_face"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RasterSettings.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def tiles_y(self) -> int:
        return math.ceil(self.height / self.tile_size)

    @property
    def tiles_x(self) -> int:
        return math.ceil(self.width / self.tile_size)

    @property
    def num_tiles(self) -> int:
        return self.tiles_y * self.tiles_x

    def pair_capacity(self, num_faces: int) -> int:
        if self.max_pairs is not None:
            return max(1, self.max_pairs)
        return max(1, self.pairs_per_face * num_faces)

    def doubled(self) -> "RasterSettings":
        """Twice the pair capacity (used by the retry helper)."""
        return dataclasses.replace(
            self, pairs_per_face=2 * self.pairs_per_face,
            max_pairs=None if self.max_pairs is None else 2 * self.max_pairs)


def default_blur_radius_px(sigma_px2, prob_eps):
    """Distance beyond which ``sigmoid(-d²/σ) < prob_eps``: ``sqrt(σ · log(1/eps - 1))``.

    PyTorch3D's convention (``blur_radius = log(1/eps - 1) * sigma`` on squared distances),
    in pixels.
    """
    import jax.numpy as jnp

    return jnp.sqrt(sigma_px2 * jnp.log(1.0 / prob_eps - 1.0))
