"""Several meshes in one scene: concatenated vertices and faces, each face tagged by mesh."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int


class Scene(eqx.Module):
    """Meshes merged for :func:`hoijax.render.rasterize` (e.g. hand = mesh 0, object = 1)."""

    verts_cam: Float[Array, "V 3"]
    """All vertices, camera frame, metres."""
    faces: Int[Array, "F 3"]
    """All faces, indexing ``verts_cam``."""
    face_mesh_id: Int[Array, " F"]
    """Mesh of each face."""
    num_meshes: int = eqx.field(static=True)
    """Number of meshes."""

    @staticmethod
    def from_meshes(verts: list[Float[ArrayLike, "_ 3"]],
                    faces: list[Int[ArrayLike, "_ 3"]]) -> "Scene":
        """Merge meshes; face counts and vertex counts are static, positions traced."""
        if len(verts) != len(faces) or not verts:
            raise ValueError("need one faces array per vertices array, at least one mesh")
        offsets = np.cumsum([0] + [np.shape(v)[0] for v in verts[:-1]])
        return Scene(
            verts_cam=jnp.concatenate([jnp.asarray(v) for v in verts]),
            faces=jnp.concatenate([jnp.asarray(f, jnp.int32) + int(o)
                                   for f, o in zip(faces, offsets)]),
            face_mesh_id=jnp.concatenate([jnp.full((np.shape(f)[0],), i, jnp.int32)
                                          for i, f in enumerate(faces)]),
            num_meshes=len(verts),
        )
