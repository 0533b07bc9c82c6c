"""Brute-force nearest neighbours in chunks, so memory stays O(chunk × M), never O(N × M).

Evaluation clouds are small (a few thousand to ~10k points), so an exact brute-force search is
fast under ``jit`` and needs no tree. The query cloud is split into static chunks (``lax.map``);
each chunk forms its ``(chunk, M)`` squared-distance matrix by the expansion
``|q|² - 2 q·r + |r|²`` (one matrix product), picks the argmin, and then recomputes the winner's
distance exactly as ``|q - r|²`` so that coincident points give exactly 0 (the expansion alone
loses ~1e-8 m² to cancellation in float32). Both clouds are first centred on the reference
centroid, which keeps the expansion's cancellation small.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

DEFAULT_CHUNK = 1024
"""Query points per chunk: a 1024 × 10k float32 distance block is 40 MB."""


@functools.partial(jax.jit, static_argnames=("chunk",))
def nearest_neighbors(
    query: Float[ArrayLike, "n 3"],
    ref: Float[ArrayLike, "m 3"],
    ref_valid: Bool[ArrayLike, " m"] | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[Float[Array, " n"], Int[Array, " n"]]:
    """Squared distance to, and index of, the nearest valid ``ref`` point for every query point.

    Args:
        query: ``(N, 3)`` points.
        ref: ``(M, 3)`` points searched.
        ref_valid: optional ``(M,)`` mask; invalid reference points are never returned. With no
            valid reference point at all the distance is ``inf`` and the index 0.
        chunk: static number of query points per block.

    Returns:
        ``(N,)`` squared distances (units of the input squared) and ``(N,)`` int32 indices.
    """
    query = jnp.asarray(query)
    ref = jnp.asarray(ref, query.dtype)
    n, m = query.shape[0], ref.shape[0]
    if ref_valid is None:
        ref_valid = jnp.ones((m,), bool)
    ref_valid = jnp.asarray(ref_valid, bool)
    w = ref_valid.astype(query.dtype)
    centre = jnp.sum(ref * w[:, None], 0) / jnp.maximum(jnp.sum(w), 1.0)
    q = query - centre
    r = ref - centre
    r2 = jnp.where(ref_valid, jnp.sum(r**2, -1), jnp.inf)

    chunk = max(1, min(chunk, n))
    num_chunks = -(-n // chunk)
    q_pad = jnp.concatenate([q, jnp.zeros((num_chunks * chunk - n, 3), q.dtype)])

    def one_chunk(qc):
        d2 = jnp.sum(qc**2, -1)[:, None] - 2.0 * qc @ r.T + r2[None, :]
        idx = jnp.argmin(d2, axis=-1).astype(jnp.int32)
        exact = jnp.sum((qc - r[idx]) ** 2, -1)
        return jnp.where(ref_valid[idx], exact, jnp.inf), idx

    d2, idx = jax.lax.map(one_chunk, q_pad.reshape(num_chunks, chunk, 3))
    return d2.reshape(-1)[:n], idx.reshape(-1)[:n]


def nearest_sq_dist(
    query: Float[ArrayLike, "n 3"],
    ref: Float[ArrayLike, "m 3"],
    ref_valid: Bool[ArrayLike, " m"] | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> Float[Array, " n"]:
    """Squared distance from every query point to its nearest valid ``ref`` point."""
    return nearest_neighbors(query, ref, ref_valid, chunk=chunk)[0]


@functools.partial(jax.jit, static_argnames=("chunk",))
def max_pairwise_distance(
    points: Float[ArrayLike, "n 3"],
    valid: Bool[ArrayLike, " n"] | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> Float[Array, ""]:
    """Largest distance between two valid points (an object's diameter), in chunks."""
    p = jnp.asarray(points)
    n = p.shape[0]
    if valid is None:
        valid = jnp.ones((n,), bool)
    valid = jnp.asarray(valid, bool)
    w = valid.astype(p.dtype)
    p = p - jnp.sum(p * w[:, None], 0) / jnp.maximum(jnp.sum(w), 1.0)
    p2 = jnp.sum(p**2, -1)
    chunk = max(1, min(chunk, n))
    num_chunks = -(-n // chunk)
    pad = num_chunks * chunk - n
    p_pad = jnp.concatenate([p, jnp.zeros((pad, 3), p.dtype)])
    v_pad = jnp.concatenate([valid, jnp.zeros((pad,), bool)])

    def one_chunk(args):
        pc, vc = args
        d2 = jnp.sum(pc**2, -1)[:, None] - 2.0 * pc @ p.T + p2[None, :]
        ok = vc[:, None] & valid[None, :]
        return jnp.max(jnp.where(ok, d2, 0.0))

    d2max = jax.lax.map(one_chunk, (p_pad.reshape(num_chunks, chunk, 3),
                                    v_pad.reshape(num_chunks, chunk)))
    return jnp.sqrt(jnp.maximum(jnp.max(d2max), 0.0))
