"""The metric-depth terms: the rendered object against a depth map, and depth points against
a surface. Reference values, minima at the truth, finite-difference gradients, and finite
values and zero gradients at their degenerate inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from hoijax import geometry, losses, render

H, W = 48, 64
K = np.array([[120.0, 0.0, 32.0], [0.0, 120.0, 24.0], [0.0, 0.0, 1.0]], np.float32)
SETTINGS = render.RasterSettings(H, W, pairs_per_face=32)
T_GT = np.array([0.01, -0.005, 0.4], np.float32)


@pytest.fixture(scope="module")
def sphere():
    ico = trimesh.creation.icosphere(subdivisions=2, radius=0.04)
    return np.asarray(ico.vertices, np.float32), np.asarray(ico.faces, np.int32)


def _render(verts, faces, t):
    return render.rasterize(jnp.asarray(verts) + t, jnp.asarray(faces), K, SETTINGS)


def _observed(sphere):
    verts, faces = sphere
    r = _render(verts, faces, jnp.asarray(T_GT))
    return r.depth, r.mask


def test_depth_loss_zero_at_truth_and_pseudo_huber_value(sphere):
    verts, faces = sphere
    depth, mask = _observed(sphere)
    hand = jnp.zeros((H, W), bool)
    at_truth = losses.depth_loss(_render(verts, faces, jnp.asarray(T_GT)), depth, mask, hand)
    assert float(at_truth[0]) < 1e-10
    assert int(at_truth[1]["num_pixels"]) == int(mask.sum())
    # A depth map 2 cm behind everywhere: residual -2 (units of 1 cm), sqrt(1 + 4) - 1.
    shifted = losses.depth_loss(_render(verts, faces, jnp.asarray(T_GT)), depth + 0.02, mask,
                                hand)
    np.testing.assert_allclose(float(shifted[0]), np.sqrt(5.0) - 1.0, rtol=1e-5)
    np.testing.assert_allclose(float(shifted[1]["median_abs_m"]), 0.02, atol=1e-6)


def test_depth_loss_minimal_at_true_depth_and_fd_gradient(sphere):
    verts, faces = sphere
    depth, mask = _observed(sphere)
    hand = jnp.zeros((H, W), bool).at[:, : W // 2].set(True)  # the left half is "hand"

    def f(dz):
        t = jnp.asarray(T_GT) + jnp.array([0.0, 0.0, 1.0]) * dz
        return losses.depth_loss(_render(verts, faces, t), depth, mask, hand)[0]

    values = [float(f(dz)) for dz in (-0.01, -0.003, 0.0, 0.003, 0.01)]
    assert values[2] < 1e-10
    assert values[0] > values[1] > values[2] < values[3] < values[4]
    # The gradient along z matches a central difference away from the minimum (moving along
    # z changes which pixels the sphere covers, so the step is small).
    g = float(jax.grad(f)(0.004))
    h = 2e-4
    fd = (float(f(0.004 + h)) - float(f(0.004 - h))) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=0.1)
    assert g > 0


def test_depth_loss_degenerate_inputs_are_finite(sphere):
    verts, faces = sphere
    depth, mask = _observed(sphere)
    nan_depth = jnp.where(mask, jnp.nan, depth)  # every object pixel missing

    for d, m, hand in ((nan_depth, mask, None), (depth, jnp.zeros_like(mask), None),
                       (depth, mask, jnp.ones_like(mask))):
        def f(t, d=d, m=m, hand=hand):
            return losses.depth_loss(_render(verts, faces, t), d, m, hand)[0]

        value, grad = jax.value_and_grad(f)(jnp.asarray(T_GT) + 0.01)
        assert float(value) == 0.0
        assert np.all(np.asarray(grad) == 0.0)


def test_point_to_surface_reference_value_and_gradient(sphere):
    verts, faces = sphere
    v = jnp.asarray(verts)
    n = geometry.vertex_normals(v, jnp.asarray(faces))
    # Points 4 mm out along each vertex normal: nearest vertex is their own, residual 0.4 cm.
    pts = v + 0.004 * n
    ok = jnp.ones(pts.shape[0], bool)
    value, aux = losses.point_to_surface_loss(pts, ok, v, n)
    np.testing.assert_allclose(float(value), np.sqrt(1 + 0.16) - 1, rtol=1e-4)
    assert int(aux["num_points"]) == pts.shape[0]
    at_surface = losses.point_to_surface_loss(v, ok, v, n)[0]
    assert float(at_surface) < 1e-12

    def f(t):
        return losses.point_to_surface_loss(pts, ok, v + t, n)[0]

    t0 = jnp.array([0.001, -0.002, 0.0015])
    g = np.asarray(jax.grad(f)(t0))
    h = 1e-4
    fd = np.array([(float(f(t0 + h * e)) - float(f(t0 - h * e))) / (2 * h)
                   for e in np.eye(3, dtype=np.float32)])
    np.testing.assert_allclose(g, fd, rtol=0.05, atol=1e-3)


def test_point_to_surface_invalid_points_give_zero(sphere):
    verts, faces = sphere
    v = jnp.asarray(verts)
    n = geometry.vertex_normals(v, jnp.asarray(faces))
    pts = jnp.full((16, 3), jnp.nan)

    def f(t):
        return losses.point_to_surface_loss(pts, jnp.ones(16, bool), v + t, n)[0]

    value, grad = jax.value_and_grad(f)(jnp.zeros(3))
    assert float(value) == 0.0 and np.all(np.asarray(grad) == 0.0)
    value = losses.point_to_surface_loss(v[:16] + 0.01, jnp.zeros(16, bool), v, n)[0]
    assert float(value) == 0.0
