"""Square roots and norms whose values and gradients stay finite at zero ("safe where")."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float


def safe_sqrt(x: Float[Array, "*batch"]) -> Float[Array, "*batch"]:
    """``sqrt(x)`` for ``x > 0``, else 0, with a zero (not inf/NaN) gradient at ``x <= 0``."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def safe_norm(x: Float[Array, "*batch d"]) -> Float[Array, " *batch"]:
    """Euclidean norm over the last axis with a zero gradient at the origin."""
    return safe_sqrt(jnp.sum(x**2, axis=-1))
