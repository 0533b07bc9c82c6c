"""Template retrieval (EgoHandICL §3.1): same hand type first, then nearest text embedding.

The paper combines *predefined visual templates* (a VLM sorts every image into left / right /
both / none) with *adaptive text templates* (nearest VLM description). Here one template is
chosen per query: among database entries of the query's hand type, the one whose text embedding
has the highest cosine similarity to the query's. When no entry has that type, the nearest entry
of any type is returned and ``type_matched`` says so. An entry can be excluded by index (the
query itself, when the query comes from the database).

Pure, jit-able, batched by ``vmap`` (:func:`retrieve_templates`); ties go to the lowest index.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from hoijax.geometry import safe_norm


class Retrieval(eqx.Module):
    """The template chosen for one query (or a batch, with a leading axis)."""

    index: Int[Array, "*Q"]
    """Row of the database."""
    similarity: Float[Array, "*Q"]
    """Cosine similarity of the text embeddings, in [-1, 1] (0 when either is the zero vector)."""
    type_matched: Bool[Array, "*Q"]
    """False when no admissible entry had the query's hand type (fallback to any type)."""


def cosine_similarity(
    a: Float[ArrayLike, "*N D"], b: Float[ArrayLike, "*N D"]
) -> Float[Array, "*N"]:
    """Cosine similarity over the last axis; 0 with finite gradients when a vector is zero."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    na, nb = safe_norm(a), safe_norm(b)
    denom = na * nb
    ok = denom > 0
    return jnp.where(ok, jnp.sum(a * b, axis=-1) / jnp.where(ok, denom, 1.0), 0.0)


def retrieve_template(
    db_hand_type: Int[ArrayLike, " N"],
    db_text: Float[ArrayLike, "N D"],
    query_hand_type: Int[ArrayLike, ""],
    query_text: Float[ArrayLike, " D"],
    exclude_index: Int[ArrayLike, ""] = -1,
    db_valid: Bool[ArrayLike, " N"] | None = None,
) -> Retrieval:
    """One template for one query.

    Args:
        db_hand_type: ``(N,)`` hand-type ids (:data:`hoijax.icl.HAND_TYPES`).
        db_text: ``(N, D)`` text embeddings (any encoder; need not be normalized).
        query_hand_type: the query's type id.
        query_text: ``(D,)`` the query's embedding.
        exclude_index: database row never returned (the query itself); ``-1`` for none.
        db_valid: optional ``(N,)`` mask of usable rows (padding False).
    """
    db_hand_type = jnp.asarray(db_hand_type)
    db_text = jnp.asarray(db_text)
    n = db_text.shape[0]
    sim = cosine_similarity(db_text, jnp.broadcast_to(jnp.asarray(query_text), db_text.shape))
    usable = jnp.arange(n) != exclude_index
    if db_valid is not None:
        usable &= jnp.asarray(db_valid, bool)
    same = usable & (db_hand_type == query_hand_type)
    any_same = jnp.any(same)
    admissible = jnp.where(any_same, same, usable)
    # Similarities lie in [-1, 1]; -2 marks inadmissible rows.
    score = jnp.where(admissible, sim, -2.0)
    index = jnp.argmax(score).astype(jnp.int32)
    return Retrieval(index=index, similarity=sim[index], type_matched=any_same)


@jax.jit
def retrieve_templates(
    db_hand_type: Int[ArrayLike, " N"],
    db_text: Float[ArrayLike, "N D"],
    query_hand_type: Int[ArrayLike, " Q"],
    query_text: Float[ArrayLike, "Q D"],
    exclude_index: Int[ArrayLike, " Q"],
) -> Retrieval:
    """:func:`retrieve_template` for ``Q`` queries at once (one compiled program)."""
    return jax.vmap(retrieve_template, in_axes=(None, None, 0, 0, 0))(
        db_hand_type, db_text, query_hand_type, query_text, exclude_index)
