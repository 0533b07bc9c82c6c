"""Per-vertex quantities of triangle meshes (static topology, traced positions)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from hoijax.geometry._safe import safe_norm


def vertex_normals(
    verts: Float[ArrayLike, "V 3"], faces: Int[ArrayLike, "F 3"]
) -> Float[Array, "V 3"]:
    """Unit vertex normals: the area-weighted sum of incident face normals, normalized.

    Faces wind counter-clockwise seen from outside, so normals point outwards. A vertex whose
    incident faces all have zero area (or that no face uses) gets the zero vector, with finite
    gradients.
    """
    verts, faces = jnp.asarray(verts), jnp.asarray(faces)
    tri = verts[faces]  # (F, 3, 3)
    face_n = jnp.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 · area
    summed = jax.ops.segment_sum(jnp.repeat(face_n, 3, axis=0), faces.reshape(-1),
                                 num_segments=verts.shape[0])
    norm = safe_norm(summed)
    return summed / jnp.where(norm > 0, norm, 1.0)[:, None]
