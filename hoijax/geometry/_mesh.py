"""Per-vertex quantities of triangle meshes (static topology, traced positions)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

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


def sample_surface(
    key: Array,
    vertices: Float[ArrayLike, "V 3"],
    faces: Int[ArrayLike, "F 3"],
    num_points: int,
    face_valid: Bool[ArrayLike, " F"] | None = None,
) -> tuple[Int[Array, " P"], Float[Array, "P 3"]]:
    """``num_points`` (static) points uniform over the surface area, as (face, barycentrics).

    Faces are drawn with probability proportional to their area (padding faces, ``face_valid``
    False, and zero-area faces never), by inverse CDF, so appending invalid faces (batch
    padding) leaves the samples unchanged; barycentrics are uniform on the triangle
    (``1-√r1, √r1(1-r2), √r1 r2``), like open3d's ``sample_points_uniformly``. Returned as
    (face, barycentric) pairs so the same points can follow the mesh into any pose."""
    v = jnp.asarray(vertices)
    f = jnp.asarray(faces, jnp.int32)
    tri = v[f]
    area = 0.5 * jnp.linalg.norm(jnp.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
    if face_valid is not None:
        area = jnp.where(jnp.asarray(face_valid, bool), area, 0.0)
    area = jnp.where(area > 0, area, 0.0)
    # Inverse-CDF draw: the uniforms do not depend on the face count, so padding a mesh with
    # invalid faces (a batch's larger mesh) leaves its samples unchanged.
    cdf = jnp.cumsum(area)
    k_face, k_bary = jax.random.split(key)
    u = jax.random.uniform(k_face, (num_points,), cdf.dtype)
    face = jnp.searchsorted(cdf, u * cdf[-1], side="right").astype(jnp.int32)
    last = jnp.max(jnp.where(area > 0, jnp.arange(area.shape[0], dtype=jnp.int32), 0))
    face = jnp.minimum(face, last)
    r = jax.random.uniform(k_bary, (num_points, 2), v.dtype)
    s = jnp.sqrt(r[:, 0])
    bary = jnp.stack([1 - s, s * (1 - r[:, 1]), s * r[:, 1]], axis=-1)
    return face, bary
