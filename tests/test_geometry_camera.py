"""Tests for hoijax.geometry camera projection, unprojection and depth back-projection."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hoijax.geometry import Camera, depth_to_points, project, unproject

K_NP = np.array([[600.0, 1.5, 320.0], [0.0, 610.0, 240.0], [0.0, 0.0, 1.0]])


def _points(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.stack([rng.uniform(-0.3, 0.3, n), rng.uniform(-0.2, 0.2, n), rng.uniform(0.3, 2.0, n)], -1)


def test_project_matches_homogeneous_reference():
    pts = _points(np.random.default_rng(0), 50)
    hom = pts @ K_NP.T
    expected = hom[:, :2] / hom[:, 2:]
    np.testing.assert_allclose(project(jnp.asarray(K_NP), jnp.asarray(pts)), expected, rtol=1e-5)


def test_project_unproject_round_trip():
    pts = _points(np.random.default_rng(1), 50)
    K = jnp.asarray(K_NP)
    uv_px = project(K, pts)
    np.testing.assert_allclose(unproject(K, uv_px, pts[:, 2]), pts, rtol=1e-5, atol=1e-6)
    uv_grid = np.random.default_rng(2).uniform(0, 640, (7, 3, 2))
    depth_m = np.random.default_rng(3).uniform(0.2, 3.0, (7, 3))
    back = project(K, unproject(K, uv_grid, depth_m))
    assert back.shape == (7, 3, 2)
    np.testing.assert_allclose(back, uv_grid, rtol=1e-5, atol=1e-3)


def test_depth_to_points_matches_numpy_loop():
    rng = np.random.default_rng(4)
    H, W = 5, 7
    depth = rng.uniform(0.4, 1.2, (H, W))
    depth[0, 0] = 0.0
    depth[1, 2] = -0.3
    depth[2, 3] = np.nan
    depth[3, 4] = np.inf
    mask = rng.uniform(size=(H, W)) > 0.2
    points, valid = depth_to_points(jnp.asarray(K_NP), jnp.asarray(depth), jnp.asarray(mask))
    assert points.shape == (H * W, 3) and valid.shape == (H * W,)

    K_inv = np.linalg.inv(K_NP)
    ref_points = np.zeros((H * W, 3))
    ref_valid = np.zeros(H * W, bool)
    for row in range(H):
        for col in range(W):
            d = depth[row, col]
            ok = bool(mask[row, col]) and np.isfinite(d) and d > 0
            ref_valid[row * W + col] = ok
            if ok:
                ref_points[row * W + col] = d * (K_inv @ np.array([col, row, 1.0]))
    np.testing.assert_array_equal(valid, ref_valid)
    np.testing.assert_allclose(points, ref_points, rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(points))

    # Without a mask every positive finite depth is valid.
    _, valid_all = depth_to_points(jnp.asarray(K_NP), jnp.asarray(depth))
    assert int(valid_all.sum()) == H * W - 4


def test_vmap_and_jit_match_eager():
    rng = np.random.default_rng(5)
    Ks = np.stack([K_NP, K_NP * np.array([[1.1], [0.9], [1.0]])])
    pts = np.stack([_points(rng, 10), _points(rng, 10)])
    batched = jax.vmap(project)(jnp.asarray(Ks), jnp.asarray(pts))
    for i in range(2):
        np.testing.assert_allclose(batched[i], project(Ks[i], pts[i]), rtol=1e-6)

    depths = rng.uniform(0.5, 1.0, (3, 4, 6))
    pts_b, valid_b = jax.jit(jax.vmap(depth_to_points, in_axes=(None, 0)))(jnp.asarray(K_NP), jnp.asarray(depths))
    for i in range(3):
        p, v = depth_to_points(K_NP, depths[i])
        np.testing.assert_allclose(pts_b[i], p, rtol=1e-6)
        np.testing.assert_array_equal(valid_b[i], v)

    cam = Camera(K=jnp.asarray(K_NP), height=4, width=6)

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def proj(camera, p):
        return camera.project(p)

    p0 = jnp.asarray(pts[0])
    np.testing.assert_allclose(proj(cam, p0), project(K_NP, pts[0]), rtol=1e-6)
    cam2 = Camera(K=cam.K * 1.01, height=4, width=6)  # new K values, same structure: no retrace
    np.testing.assert_allclose(proj(cam2, p0), project(cam2.K, p0), rtol=1e-6)


def test_camera_methods_and_shape_check():
    cam = Camera.from_intrinsics(600.0, 610.0, 320.0, 240.0, height=48, width=64)
    np.testing.assert_allclose(cam.K, [[600, 0, 320], [0, 610, 240], [0, 0, 1]])
    p, v = cam.depth_to_points(jnp.ones((48, 64)))
    assert p.shape == (48 * 64, 3) and bool(v.all())
    np.testing.assert_allclose(cam.unproject(cam.project(p[:5]), p[:5, 2]), p[:5], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        cam.depth_to_points(jnp.ones((48, 65)))
    inside = cam.in_image(jnp.array([[0.0, 0.0], [63.4, 47.4], [-0.6, 10.0], [10.0, 47.6]]))
    np.testing.assert_array_equal(inside, [True, True, False, False])


@pytest.mark.parametrize("z", [0.0, -0.5, 1e-9, 1e-4])
def test_project_at_or_behind_near_plane_is_finite(z):
    K = jnp.asarray(K_NP, jnp.float32)
    points = jnp.array([[0.1, -0.2, z], [0.0, 0.0, z]], jnp.float32)
    uv = project(K, points)
    assert np.all(np.isfinite(uv))
    # Clamped to the near plane.
    np.testing.assert_allclose(uv, project(K, points.at[:, 2].set(1e-4)), rtol=1e-6)
    grads = jax.grad(lambda p, k: jnp.sum(project(k, p)), argnums=(0, 1))(points, K)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_project_and_unproject_gradients_float64():
    with jax.enable_x64(True):
        K = jnp.asarray(K_NP, jnp.float64)
        pts = jnp.asarray(_points(np.random.default_rng(6), 4), jnp.float64)
        check_grads(jax.jit(project), (K, pts), order=2, modes=("fwd", "rev"))
        uv = jnp.asarray(np.random.default_rng(7).uniform(0, 600, (4, 2)))
        depth = jnp.asarray(np.random.default_rng(8).uniform(0.3, 1.0, 4))
        check_grads(jax.jit(unproject), (K, uv, depth), order=1, modes=("fwd", "rev"))
