"""Interpolation of per-vertex attributes (colours, features) with the z-buffer's barycentrics."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from hoijax.render._raster import Rendering


def interpolate(
    rendering: Rendering,
    vertex_attrs: Float[ArrayLike, "V C"],
    faces: Int[ArrayLike, "F 3"],
    background: float = 0.0,
) -> Float[Array, "H W C"]:
    """Perspective-correct interpolation of ``vertex_attrs`` over the visible faces.

    Differentiable with respect to the attributes and, through the barycentrics, the
    vertices. Background pixels get ``background``.
    """
    attrs = jnp.asarray(vertex_attrs)
    faces = jnp.asarray(faces, jnp.int32)
    fid = jnp.maximum(rendering.face_id, 0)
    corner_attrs = attrs[faces[fid]]  # (H, W, 3, C)
    out = jnp.einsum("hwk,hwkc->hwc", rendering.bary, corner_attrs)
    return jnp.where(rendering.mask[..., None], out, background)
