"""``hoijax.sdf``: the exact distance against analytic and trimesh references, the grid against
the exact distance, extrapolation, scaling, gating, gradients, and the watertightness check."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh
from jax.test_util import check_grads

from hoijax import sdf

HALF_EXTENTS_M = np.array([0.05, 0.03, 0.02])
EXACT_TOL_M = 1e-6
"""Exact routine vs analytic/trimesh distances (float64)."""


def _box_sdf(p):
    """Analytic SDF of the box, positive outside."""
    q = np.abs(p) - HALF_EXTENTS_M
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(np.max(q, -1), 0)


@pytest.fixture(scope="module")
def box():
    return trimesh.creation.box(extents=2 * HALF_EXTENTS_M)


@pytest.fixture(scope="module")
def sphere():
    m = trimesh.creation.icosphere(subdivisions=2, radius=0.04)
    m.vertices *= np.array([1.3, 1.0, 0.8])
    return m


@pytest.fixture(scope="module")
def sphere_grid(sphere):
    return sdf.sdf_grid_from_mesh(sphere.vertices, sphere.faces, resolution=24)


def test_exact_matches_analytic_box_with_sign():
    m = trimesh.creation.box(extents=2 * HALF_EXTENTS_M)
    pts = np.random.default_rng(0).uniform(-0.08, 0.08, (400, 3))
    with jax.enable_x64(True):
        d = np.asarray(sdf.signed_distance_exact(m.vertices, m.faces, pts, chunk=128))
    np.testing.assert_allclose(d, _box_sdf(pts), atol=EXACT_TOL_M)
    assert np.any(d < 0) and np.any(d > 0)


def test_exact_matches_trimesh(sphere):
    pts = np.random.default_rng(1).uniform(-0.07, 0.07, (300, 3))
    with jax.enable_x64(True):
        d = np.asarray(sdf.signed_distance_exact(sphere.vertices, sphere.faces, pts))
        w = np.asarray(sdf.winding_number(sphere.vertices, sphere.faces, pts))
    _, dist, _ = trimesh.proximity.closest_point_naive(sphere, pts)
    np.testing.assert_allclose(np.abs(d), dist, atol=EXACT_TOL_M)
    # Inside the (convex) mesh iff below every face plane.
    n = sphere.face_normals
    inside = np.all(np.einsum("pfk,fk->pf", pts[:, None] - sphere.triangles[None, :, 0], n) < 0,
                    axis=1)
    assert np.array_equal(d < 0, inside) and inside.any()
    np.testing.assert_allclose(w, inside.astype(float), atol=1e-6)


def test_exact_matches_trimesh_signed_distance_when_rtree_is_installed(sphere):
    pytest.importorskip("rtree")
    pts = np.random.default_rng(2).uniform(-0.07, 0.07, (200, 3))
    with jax.enable_x64(True):
        d = np.asarray(sdf.signed_distance_exact(sphere.vertices, sphere.faces, pts))
    # trimesh: positive inside.
    np.testing.assert_allclose(d, -trimesh.proximity.signed_distance(sphere, pts), atol=1e-6)


def test_grid_values_are_exact_and_queries_within_half_a_voxel(sphere, sphere_grid):
    g = sphere_grid
    h = float(g.voxel_size)
    res = np.array(g.resolution)
    rng = np.random.default_rng(3)
    idx = np.stack([rng.integers(0, n, 300) for n in res], -1)
    nodes = np.asarray(g.origin) + h * idx
    pts = np.asarray(g.origin) + h * rng.uniform(0, 1, (600, 3)) * (res - 1)
    with jax.enable_x64(True):
        exact_nodes = np.asarray(sdf.signed_distance_exact(sphere.vertices, sphere.faces, nodes))
        exact = np.asarray(sdf.signed_distance_exact(sphere.vertices, sphere.faces, pts))
    np.testing.assert_allclose(np.asarray(g.values)[tuple(idx.T)], exact_nodes, atol=1e-6)
    q = np.asarray(sdf.query_sdf(g, jnp.asarray(pts, jnp.float32)))
    assert np.max(np.abs(q - exact)) < 0.5 * h
    far = np.abs(exact) > h
    assert np.array_equal(np.sign(q[far]), np.sign(exact[far]))
    assert np.any(exact[far] < 0) and np.any(exact[far] > 0)


def test_box_grid_signs_with_grid_aligned_faces(box):
    # Resolution chosen so grid lines run through the box's faces and edges (degenerate for
    # ray parity, harmless for winding numbers).
    g = sdf.sdf_grid_from_mesh(box.vertices, box.faces, resolution=11, padding=0.0)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in g.resolution], indexing="ij"), -1)
    pts = np.asarray(g.origin, np.float64) + float(g.voxel_size) * idx
    np.testing.assert_allclose(np.asarray(g.values), _box_sdf(pts), atol=1e-6)


def test_query_extrapolates_continuously_with_finite_gradients(sphere_grid):
    g = sphere_grid
    lo, hi = np.asarray(g.origin), np.asarray(g.upper)
    # Far outside: the value grows like the distance to the box.
    p_far = jnp.asarray([hi[0] + 10.0, 0.0, 0.0], jnp.float32)
    v_far = float(sdf.query_sdf(g, p_far))
    on_box = float(sdf.query_sdf(g, jnp.asarray([hi[0], 0.0, 0.0], jnp.float32)))
    assert v_far == pytest.approx(on_box + 10.0, rel=1e-5)
    # Continuous across the face of the box.
    eps = 1e-6
    a = sdf.query_sdf(g, jnp.asarray([hi[0] - eps, 0.01, 0.0]))
    b = sdf.query_sdf(g, jnp.asarray([hi[0] + eps, 0.01, 0.0]))
    assert abs(float(a) - float(b)) < 1e-5
    grad = jax.grad(lambda p: sdf.query_sdf(g, p))
    gf = np.asarray(grad(p_far))
    # Along x: the unit direction away from the box; across: the boundary face's gradient.
    assert gf[0] == pytest.approx(1.0, abs=1e-6)
    gb = np.asarray(grad(jnp.asarray([hi[0] - 1e-4, 0.0, 0.0], jnp.float32)))
    np.testing.assert_allclose(gf[1:], gb[1:], atol=1e-3)
    # Exactly on a voxel corner, a grid corner, and far beyond a grid corner.
    for p in (lo + 3 * float(g.voxel_size), lo, hi + 5.0, lo - 1e3):
        gp = np.asarray(grad(jnp.asarray(p, jnp.float32)))
        assert np.all(np.isfinite(gp)) and np.linalg.norm(gp) > 0


def test_query_gradients_match_finite_differences(sphere_grid):
    with jax.enable_x64(True):
        g = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), sphere_grid)
        rng = np.random.default_rng(4)
        h = float(g.voxel_size)
        inside_pts = np.asarray(g.origin) + h * (rng.uniform(2, 10, (5, 3)) + 0.37)
        outside_pts = np.asarray(g.upper) + rng.uniform(0.01, 0.2, (5, 3))
        for p in np.concatenate([inside_pts, outside_pts]):
            check_grads(lambda q: sdf.query_sdf(g, q), (jnp.asarray(p),), order=1,
                        modes=("rev",), eps=1e-7, atol=1e-5, rtol=1e-4)


def test_scaled_query_is_exact_for_uniform_scale_and_a_lower_bound_otherwise(sphere, sphere_grid):
    rng = np.random.default_rng(5)
    pts = rng.uniform(-0.05, 0.05, (200, 3))
    uni = np.array([1.5, 1.5, 1.5])
    q = np.asarray(sdf.query_sdf_scaled(sphere_grid, pts, uni))
    np.testing.assert_allclose(q, 1.5 * np.asarray(sdf.query_sdf(sphere_grid, pts / 1.5)),
                               rtol=1e-5, atol=1e-7)
    aniso = np.array([1.4, 1.0, 0.7])
    with jax.enable_x64(True):
        exact = np.asarray(sdf.signed_distance_exact(sphere.vertices * aniso, sphere.faces, pts))
        q = np.asarray(sdf.query_sdf_scaled(sphere_grid, pts, aniso))
        h = float(sphere_grid.voxel_size)
    far = np.abs(exact) > 2 * h
    assert np.array_equal(np.sign(q[far]), np.sign(exact[far]))
    assert np.all(np.abs(q[far]) <= np.abs(exact[far]) + 0.5 * h)


def test_gate_is_agile_eq6():
    d = jnp.asarray([-0.01, 0.0, 0.01, 0.05])
    w = np.asarray(sdf.sdf_gate(d, 40.0))
    np.testing.assert_allclose(w, [1.0, 1.0, 1 - np.tanh(0.4), 1 - np.tanh(2.0)], rtol=1e-6)
    g = jax.vmap(jax.grad(lambda x, s: sdf.sdf_gate(x, s)), (None, 0))(
        0.02, jnp.asarray([1.0, 40.0]))
    assert np.all(np.isfinite(np.asarray(g))) and float(g[1]) < float(g[0]) < 0


def test_non_watertight_mesh_raises_unless_repaired(box):
    faces = np.asarray(box.faces)[1:]
    with pytest.raises(sdf.NonWatertightMeshError, match="object.obj:faces"):
        sdf.sdf_grid_from_mesh(box.vertices, faces, resolution=8, source="object.obj:faces")
    flipped = np.asarray(box.faces).copy()
    flipped[0] = flipped[0, ::-1]
    with pytest.raises(sdf.NonWatertightMeshError, match="winding"):
        sdf.check_watertight(flipped)
    g = sdf.sdf_grid_from_mesh(box.vertices, faces, resolution=12, repair=True)
    centre = float(sdf.query_sdf(g, jnp.zeros(3)))
    assert centre == pytest.approx(-HALF_EXTENTS_M.min(), abs=1e-4)
    assert float(sdf.query_sdf(g, jnp.asarray([0.0, 0.0, 0.06]))) > 0


def test_exact_distance_gradients_finite_at_singular_points():
    """On a vertex, on an edge, on a face, and next to a zero-area face (float64)."""
    with jax.enable_x64(True):
        v = jnp.asarray([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [2, 2, 2], [2, 2, 2.0]])
        f = jnp.asarray([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3], [4, 5, 4]])
        fn = jax.grad(lambda p: sdf.signed_distance_exact(v, f, p))
        for p in ([0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.2, 0.2, 0.0], [2.0, 2.0, 2.5]):
            g = np.asarray(fn(jnp.asarray(p)))
            assert np.all(np.isfinite(g)), p
        # Away from the kinks, the gradient is the unit direction to the closest point.
        check_grads(lambda p: sdf.signed_distance_exact(v, f, p), (jnp.asarray([0.3, 0.2, -0.4]),),
                    order=1, modes=("rev",), eps=1e-6)
        g = np.asarray(fn(jnp.asarray([0.3, 0.2, -0.4])))
        np.testing.assert_allclose(g, [0, 0, -1], atol=1e-9)
