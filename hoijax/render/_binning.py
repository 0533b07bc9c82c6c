"""Coarse stage: enumerate the (face, tile) pairs whose boxes overlap.

Each face's blur-expanded screen box covers a rectangle of pixel tiles; its (face, tile) pairs
are written into a list of static capacity. The fine stage evaluates every pair on its tile's
pixels and reduces into pixels with segment operations, so the work follows the pairs that
exist (a few per face) and nothing of size H·W·F is formed. Everything here is integer
bookkeeping under ``stop_gradient``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int

from hoijax.render._faces import ScreenFaces
from hoijax.render._settings import RasterSettings


class Pairs(eqx.Module):
    """(face, tile) pairs in a list of static capacity P."""

    face: Int[Array, " P"]
    """Face of each pair; ``F`` (the sentinel face) for unused slots."""
    tile: Int[Array, " P"]
    """Tile of each pair (row-major over the tile grid); ``num_tiles`` for unused slots."""
    needed: Int[Array, ""]
    """Pairs the scene needs; more than P means overflow."""
    overflow: Bool[Array, ""]
    """The list was too short: some pairs (hence pixels) are missing."""


def enumerate_pairs(sf: ScreenFaces, settings: RasterSettings, radius_px) -> Pairs:
    """Pairs of valid faces and the tiles their ``radius_px``-expanded boxes touch."""
    sf = jax.lax.stop_gradient(sf)
    radius_px = jax.lax.stop_gradient(radius_px)
    T, H, W = settings.tile_size, settings.height, settings.width
    ntx, ntiles = settings.tiles_x, settings.num_tiles
    F = sf.valid.shape[0] - 1  # the last row is the sentinel
    uv, valid = sf.uv[:F], sf.valid[:F]

    # Pixel centres covered by each expanded box, clipped to the image, then tile ranges.
    limit = jnp.array([W, H], uv.dtype) + 2.0
    lo = jnp.clip(jnp.min(uv, axis=1) - radius_px, -2.0, limit)
    hi = jnp.clip(jnp.max(uv, axis=1) + radius_px, -2.0, limit)
    c0 = jnp.maximum(jnp.ceil(lo), 0).astype(jnp.int32)
    c1 = jnp.minimum(jnp.floor(hi).astype(jnp.int32), jnp.array([W - 1, H - 1]))
    touches = valid & jnp.all(c0 <= c1, axis=1)
    t0 = c0 // T
    span = jnp.where(touches[:, None], c1 // T - t0 + 1, 0)  # tiles along x and y
    n_pairs = span[:, 0] * span[:, 1]

    # Slot k belongs to face f with ends[f-1] <= k < ends[f], as that face's
    # (k - start)-th tile in row-major order.
    P = settings.pair_capacity(F)
    ends = jnp.cumsum(n_pairs)
    total = ends[-1]
    k = jnp.arange(P, dtype=jnp.int32)
    f = jnp.minimum(jnp.searchsorted(ends, k, side="right"), F - 1).astype(jnp.int32)
    local = k - (ends[f] - n_pairs[f])
    width = jnp.maximum(span[f, 0], 1)
    in_use = k < total
    tile = (t0[f, 1] + local // width) * ntx + t0[f, 0] + local % width
    return Pairs(face=jnp.where(in_use, f, F), tile=jnp.where(in_use, tile, ntiles),
                 needed=total.astype(jnp.int32), overflow=total > P)
