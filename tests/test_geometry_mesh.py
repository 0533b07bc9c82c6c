"""Vertex normals against trimesh, and their gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import trimesh
from jax.test_util import check_grads

from hoijax.geometry import vertex_normals


def test_matches_trimesh_area_weighted_normals():
    mesh = trimesh.creation.icosphere(subdivisions=2)
    mesh.vertices *= np.array([1.0, 0.6, 1.4])  # anisotropic so area weighting matters
    ours = np.asarray(vertex_normals(jnp.asarray(mesh.vertices, jnp.float32),
                                     jnp.asarray(mesh.faces, jnp.int32)))
    faces_n = mesh.face_normals * mesh.area_faces[:, None]
    ref = np.zeros_like(mesh.vertices)
    np.add.at(ref, mesh.faces.reshape(-1), np.repeat(faces_n, 3, axis=0))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    # Outward: on a convex body the normal points away from the centre.
    assert np.all(np.sum(ours * mesh.vertices, axis=1) > 0)


def test_degenerate_faces_and_unused_vertices_are_finite():
    verts = jnp.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0], [5, 5, 5]])
    faces = jnp.array([[0, 1, 2], [0, 1, 3]])  # first face has zero area; vertex 4 is unused
    n = vertex_normals(verts, faces)
    np.testing.assert_allclose(n[0], [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(n[2], [0, 0, 0], atol=1e-6)  # only a zero-area face
    np.testing.assert_allclose(n[4], [0, 0, 0], atol=1e-6)
    g = jax.grad(lambda v: jnp.sum(vertex_normals(v, faces) * jnp.arange(15.0).reshape(5, 3)))(
        verts)
    assert np.all(np.isfinite(np.asarray(g)))


def test_finite_difference_gradient_float64():
    with jax.enable_x64(True):
        mesh = trimesh.creation.icosphere(subdivisions=1)
        v = jnp.asarray(mesh.vertices)
        f = jnp.asarray(mesh.faces)
        probe = jnp.asarray(np.random.default_rng(0).normal(size=v.shape))
        check_grads(lambda v: jnp.sum(vertex_normals(v, f) * probe), (v,), order=1,
                    modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6)


def test_sample_surface_is_area_weighted_and_skips_padding():
    """Two triangles, one 3× the area of the other, plus a padded face: face counts follow the
    areas, padding is never drawn, and barycentrics lie on the simplex."""
    from hoijax.geometry import sample_surface

    v = jnp.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [3, 0, 0], [0, 3, 0], [9, 9, 9]])
    f = jnp.array([[0, 1, 2], [0, 3, 4], [5, 5, 5], [0, 1, 5]])
    valid = jnp.array([True, True, True, False])
    face, bary = sample_surface(jax.random.PRNGKey(0), v, f, 20000, valid)
    counts = np.bincount(np.asarray(face), minlength=4)
    assert counts[2] == 0 and counts[3] == 0
    np.testing.assert_allclose(counts[1] / counts[0], 9.0, rtol=0.1)
    assert np.all(np.asarray(bary) >= 0)
    np.testing.assert_allclose(np.asarray(bary).sum(-1), 1.0, atol=1e-6)
    # Uniform on the triangle: the mean barycentric is the centroid.
    np.testing.assert_allclose(np.asarray(bary).mean(0), 1 / 3, atol=0.01)
    # Batch padding (more invalid faces appended) leaves the draw unchanged, so a sequence's
    # result does not depend on the largest mesh in its batch.
    f_pad = jnp.concatenate([f, jnp.zeros((37, 3), f.dtype)])
    valid_pad = jnp.concatenate([valid, jnp.zeros(37, bool)])
    face_pad, bary_pad = sample_surface(jax.random.PRNGKey(0), v, f_pad, 20000, valid_pad)
    np.testing.assert_array_equal(np.asarray(face_pad), np.asarray(face))
    np.testing.assert_array_equal(np.asarray(bary_pad), np.asarray(bary))
