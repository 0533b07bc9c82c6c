"""Losses of the learned models (EgoHandICL, TIGeR): MANO parameters, vertices, Chamfer."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from hoijax.losses._frames import safe_mean


def _mask_or_ones(mask, shape, dtype):
    return jnp.ones(shape, dtype) if mask is None else jnp.asarray(mask).astype(dtype)


def mano_param_loss(
    pred: Float[ArrayLike, "*B D"],
    target: Float[ArrayLike, "*B D"],
    mask: Bool[ArrayLike, "*B"] | None = None,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Mean squared error of MANO parameter vectors (pose, shape, ...), over the valid items.

    Shapes must match exactly. Returns the loss and ``{"mano_params": loss}``."""
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ")
    per = jnp.mean((pred - target) ** 2, axis=-1)
    loss = safe_mean(per, _mask_or_ones(mask, per.shape, per.dtype))
    return loss, {"mano_params": loss}


def vertex_loss(
    pred: Float[ArrayLike, "*B V 3"],
    target: Float[ArrayLike, "*B V 3"],
    mask: Bool[ArrayLike, "*B"] | None = None,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Mean L1 distance of vertex coordinates (metres), over the valid items.

    Returns the loss and ``{"vertex_l1": loss}``."""
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ")
    per = jnp.mean(jnp.abs(pred - target), axis=(-2, -1))
    loss = safe_mean(per, _mask_or_ones(mask, per.shape, per.dtype))
    return loss, {"vertex_l1": loss}


def chamfer_distance(
    points_a: Float[ArrayLike, "N 3"],
    points_b: Float[ArrayLike, "M 3"],
    mask_a: Bool[ArrayLike, " N"] | None = None,
    mask_b: Bool[ArrayLike, " M"] | None = None,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Symmetric squared Chamfer distance (m²): ``mean_a min_b |a-b|² + mean_b min_a |a-b|²``.

    Masked-out points (padding) are neither sources nor targets. A direction with no valid
    source gives 0; a valid source with no valid target is not counted (also 0). O(N·M) memory.
    Returns the loss and ``{"chamfer": loss, "chamfer_a_to_b": ..., "chamfer_b_to_a": ...}``."""
    a, b = jnp.asarray(points_a), jnp.asarray(points_b)
    ma = _mask_or_ones(mask_a, a.shape[:1], bool)
    mb = _mask_or_ones(mask_b, b.shape[:1], bool)
    d2 = jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
    big = jnp.asarray(jnp.finfo(d2.dtype).max, d2.dtype)
    a_to_b = jnp.min(jnp.where(mb[None, :], d2, big), axis=1)
    b_to_a = jnp.min(jnp.where(ma[:, None], d2, big), axis=0)
    ab = safe_mean(jnp.where(ma & jnp.any(mb), a_to_b, 0.0),
                   (ma & jnp.any(mb)).astype(d2.dtype))
    ba = safe_mean(jnp.where(mb & jnp.any(ma), b_to_a, 0.0),
                   (mb & jnp.any(ma)).astype(d2.dtype))
    return ab + ba, {"chamfer": ab + ba, "chamfer_a_to_b": ab, "chamfer_b_to_a": ba}
