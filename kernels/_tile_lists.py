"""Per-tile face lists: the coarse stage's (face, tile) pairs regrouped by tile.

The pure-JAX fine stage reduces pair results into pixels with segment operations; a GPU kernel
instead gives each tile one program that loops over that tile's faces. The lists are stored in
compressed-row form: the pairs stably sorted by tile, plus each tile's start offset. This is the
(num_tiles, max_faces_per_tile) table with its rows packed end to end: its capacity is the pair
list's own (no second capacity, so no second way to overflow), and a tile's row can be as long
as it needs to be.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Int


class TileLists(eqx.Module):
    """Faces of each tile: ``face[start[t]:start[t + 1]]`` are tile ``t``'s, ascending."""

    face: Int[Array, " P"]
    """Face of each sorted pair slot; ``F`` (the sentinel face) in the unused slots, which sit
    after ``start[num_tiles]``."""
    pair: Int[Array, " P"]
    """Index into the coarse stage's pair list of each sorted slot (the sort permutation)."""
    start: Int[Array, " T1"]
    """``num_tiles + 1`` offsets: tile ``t`` owns slots ``start[t] <= k < start[t + 1]``;
    ``start[num_tiles]`` is the number of pairs in use."""
    count: Int[Array, " T"]
    """Faces per tile (``start``'s differences), for statistics."""


def tile_face_lists(pair_face: Int[Array, " P"], pair_tile: Int[Array, " P"],
                    num_tiles: int) -> TileLists:
    """Regroup (face, tile) pairs by tile: a stable sort by tile and a cumsum of tile counts.

    ``pair_face``, ``pair_tile``: the coarse stage's list (``hoijax.render``'s
    ``enumerate_pairs``), unused slots with the tile ``num_tiles``.

    The coarse stage lists pairs face by face, so within a tile the stable sort keeps faces in
    ascending order: a kernel walking a tile's list in order meets its pairs in the same order as
    the reference's segment reductions (ties of the z-buffer go to the smaller face index, sums
    accumulate in the same order). Unused slots carry the tile ``num_tiles`` and sort last.
    Integer bookkeeping only: no gradient flows here.
    """
    tile = jax.lax.stop_gradient(pair_tile)
    order = jnp.argsort(tile, stable=True).astype(jnp.int32)
    count = jax.ops.segment_sum(jnp.ones_like(tile), tile, num_tiles + 1)[:num_tiles]
    start = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(count).astype(jnp.int32)])
    return TileLists(face=pair_face[order], pair=order, start=start,
                     count=count.astype(jnp.int32))
