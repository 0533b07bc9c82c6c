"""AGILE's SDF gate: a soft weight that is 1 on and inside the surface and fades outside."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

DEFAULT_SIGMA_PER_M = 40.0
"""σ of AGILE Eq. 6 (supplementary §6), per metre: w = 0.5 at about 13.7 mm."""


def sdf_gate(
    sdf_m: Float[ArrayLike, "*N"], sigma_per_m: Float[ArrayLike, ""] | float = DEFAULT_SIGMA_PER_M
) -> Float[Array, "*N"]:
    """``w = 1 - tanh(σ · max(0, Φ))`` (AGILE Eq. 6); σ per metre, traced.

    1 for points on or inside the surface, decaying with the distance outside."""
    sdf_m = jnp.asarray(sdf_m)
    return 1.0 - jnp.tanh(jnp.asarray(sigma_per_m, sdf_m.dtype) * jnp.maximum(sdf_m, 0.0))
