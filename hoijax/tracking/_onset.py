"""The interaction onset frame (IOF), AGILE supplementary Eq. 8."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

DEFAULT_ONSET_TAU = 0.025
"""Motion-ratio threshold τ of Eq. 8."""
_EPS = 1e-8


def motion_ratio(
    object_mask: Bool[ArrayLike, "N H W"], hand_mask: Bool[ArrayLike, "N H W"]
) -> Float[Array, " N"]:
    """``r_i`` of Eq. 8 for frames ``0 .. N-2`` (the last entry is 0).

    ``r_i = ‖(M_o^{i+1} − M_o^i) ⊙ (1 − M_h^{i+1}) ⊙ (1 − M_h^i)‖₁ / (‖M_o^i‖₁ + ε)``: the change of
    the object pixels that the hand covers in neither frame, relative to the object's area."""
    mo = jnp.asarray(object_mask, jnp.float32)
    free = 1.0 - jnp.asarray(hand_mask, jnp.float32)
    num = jnp.sum(jnp.abs(mo[1:] - mo[:-1]) * free[1:] * free[:-1], axis=(1, 2))
    r = num / (jnp.sum(mo[:-1], axis=(1, 2)) + _EPS)
    return jnp.concatenate([r, jnp.zeros((1,), r.dtype)])


def touches_border(mask: Bool[ArrayLike, "N H W"]) -> Bool[Array, " N"]:
    """Whether each frame's mask has a pixel on the image border."""
    m = jnp.asarray(mask, bool)
    return (jnp.any(m[:, 0, :], -1) | jnp.any(m[:, -1, :], -1)
            | jnp.any(m[:, :, 0], -1) | jnp.any(m[:, :, -1], -1))


def onset_frame(
    object_mask: Bool[ArrayLike, "N H W"],
    hand_mask: Bool[ArrayLike, "N H W"],
    valid: Bool[ArrayLike, " N"] | None = None,
    tau: Float[ArrayLike, ""] | float = DEFAULT_ONSET_TAU,
) -> tuple[Int[Array, ""], Bool[Array, ""]]:
    """First frame whose motion ratio exceeds τ with an object mask off the border (Eq. 8).

    Frames ``i`` and ``i+1`` must both be valid (padding never triggers an onset), and frame ``i``
    must have object pixels. Returns ``(iof, found)``. When no frame qualifies, ``iof`` falls back
    to the valid, untruncated frame with the largest visible object area (the best-observed frame
    to anchor the pose) and ``found`` is False. Jit- and vmap-friendly; ``tau`` is traced.
    """
    mo = jnp.asarray(object_mask, bool)
    n = mo.shape[0]
    valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)
    r = motion_ratio(mo, hand_mask)
    pair_valid = valid & jnp.concatenate([valid[1:], jnp.zeros((1,), bool)])
    area = jnp.sum(mo, axis=(1, 2))
    ok_frame = valid & ~touches_border(mo) & (area > 0)
    qualifies = pair_valid & ok_frame & (r > tau)
    found = jnp.any(qualifies)
    first = jnp.argmax(qualifies)
    score = jnp.where(ok_frame, area, -1) + jnp.where(valid, 0, -2)
    fallback = jnp.argmax(score)
    return jnp.where(found, first, fallback).astype(jnp.int32), found
