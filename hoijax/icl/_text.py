"""A deterministic built-in text embedder: hashed character n-grams through a fixed projection.

EgoHandICL embeds VLM descriptions with a large text encoder (Qwen-7B). hoijax takes text
embeddings as precomputed arrays from any encoder; this embedder is the dependency-free fallback
that the tests and the synthetic demo use. Texts that share words share n-grams and so get a
high cosine similarity; it has no semantics beyond spelling.

Recipe: lower-case, collapse whitespace, pad with spaces; count character n-grams (n in
``ngram_sizes``) into ``num_buckets`` buckets by a stable hash (BLAKE2b, not Python's salted
``hash``); damp counts with a square root; multiply by a fixed Gaussian matrix drawn from
``seed``; L2-normalize. Same text, same settings → the same vector on every machine.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable

import numpy as np
from jaxtyping import Float

DEFAULT_TEXT_DIM = 64
"""Default embedding size of the fallback embedder."""


@functools.lru_cache(maxsize=8)
def _projection(num_buckets: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((num_buckets, dim)) / np.sqrt(dim)).astype(np.float32)


def _bucket(gram: str, num_buckets: int) -> int:
    digest = hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % num_buckets


def hashed_text_embedding(
    text: str,
    dim: int = DEFAULT_TEXT_DIM,
    *,
    ngram_sizes: tuple[int, ...] = (3, 4),
    num_buckets: int = 4096,
    seed: int = 0,
) -> Float[np.ndarray, " D"]:
    """Unit-norm embedding of one text (all zeros for an empty text). Host-side NumPy."""
    norm_text = " " + " ".join(text.lower().split()) + " "
    counts = np.zeros(num_buckets, np.float32)
    for n in ngram_sizes:
        for i in range(len(norm_text) - n + 1):
            counts[_bucket(norm_text[i:i + n], num_buckets)] += 1.0
    v = np.sqrt(counts) @ _projection(num_buckets, dim, seed)
    norm = float(np.linalg.norm(v))
    return (v / norm if norm > 0 else v).astype(np.float32)


def embed_texts(
    texts: Iterable[str], dim: int = DEFAULT_TEXT_DIM, **kwargs
) -> Float[np.ndarray, "N D"]:
    """:func:`hashed_text_embedding` of each text, stacked."""
    rows = [hashed_text_embedding(t, dim, **kwargs) for t in texts]
    return np.stack(rows) if rows else np.zeros((0, dim), np.float32)
