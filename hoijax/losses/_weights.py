"""Loss weights as traced pytree leaves, and the weighted sum of a dict of terms."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def _scalar(x) -> Array:
    return jnp.asarray(x, dtype=jnp.result_type(float))


class LossWeights(eqx.Module):
    """λ of every term of the tracker's objective (AGILE Eq. 1 and supplementary §6). All
    fields are traced arrays, so a grid of weights can be stacked and vmapped without
    recompiling; which terms exist is up to the dict of terms passed to
    :func:`combine_losses`. The learned models keep their loss weights with them
    (``hoijax.icl.IclLossWeights``)."""

    joint: Float[Array, ""] = eqx.field(default=1.0, converter=_scalar)
    """L_joint (Eq. 2), per px²; the hand step's only term."""
    mask: Float[Array, ""] = eqx.field(default=5.0, converter=_scalar)
    """L_mask (Eq. 3, L2), supplementary: 5.0."""
    dino: Float[Array, ""] = eqx.field(default=10.0, converter=_scalar)
    """L_dino (Eq. 4, L1 form), supplementary: 10.0."""
    interact: Float[Array, ""] = eqx.field(default=400.0, converter=_scalar)
    """L_interact (Eq. 7), per metre; supplementary: 400 (HO3D), 200 (DexYCB)."""
    contact: Float[Array, ""] = eqx.field(default=5.0, converter=_scalar)
    """L_contact (ray-traced in AGILE, SDF-based here), supplementary: 5.0."""
    depth: Float[Array, ""] = eqx.field(default=5.0, converter=_scalar)
    """L_depth, the rendered object against the depth map (robust, per cm; not in AGILE's
    objective, which uses depth only to initialize: 0 turns it off). At 5 a centimetre of
    depth weighs about what L_mask's outline does, so it settles the depth the silhouette
    leaves to the scale."""
    hand_depth: Float[Array, ""] = eqx.field(default=10.0, converter=_scalar)
    """The hand's depth points against its surface (robust, per cm; not in AGILE: 0 turns it
    off, leaving step 1 with L_joint alone). 2D keypoints pin the hand's depth only through
    their spread (~0.6 px per cm at 0.5 m), so at 10 the depth points decide the depth and
    the keypoints the image position."""

    @classmethod
    def ho3d(cls, **overrides) -> LossWeights:
        """AGILE's weights for HO3D-like sequences (λ_interact = 400)."""
        return cls(**{"interact": 400.0, **overrides})

    @classmethod
    def dexycb(cls, **overrides) -> LossWeights:
        """AGILE's weights for DexYCB-like sequences (λ_interact = 200)."""
        return cls(**{"interact": 200.0, **overrides})


def combine_losses(
    terms: dict[str, Float[ArrayLike, ""]], weights: LossWeights
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """``Σ_k λ_k L_k`` over the terms given (AGILE Eq. 1).

    ``terms`` maps names of :class:`LossWeights` fields to scalar losses (the first value each
    loss function returns). Returns the total and, for logging, every raw term, every weighted
    term (``"<name>_weighted"``) and ``"total"``. An unknown name raises ``KeyError``."""
    fields = set(LossWeights.__dataclass_fields__)
    log: dict[str, Array] = {}
    total = None
    for name in sorted(terms):
        if name not in fields:
            raise KeyError(f"no weight for loss term {name!r}; known: {sorted(fields)}")
        value = jnp.asarray(terms[name])
        weighted = getattr(weights, name).astype(value.dtype) * value
        log[name] = value
        log[f"{name}_weighted"] = weighted
        total = weighted if total is None else total + weighted
    total = jnp.zeros(()) if total is None else total
    log["total"] = total
    return total, log
