"""Tests for hoijax.geometry rotation / rigid-transform helpers (on top of jaxlie)."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from hoijax.geometry import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    se3_from_rotation_translation,
    transform_points,
)


def _hat(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def test_axis_angle_to_matrix_matches_scipy_batched():
    rng = np.random.default_rng(0)
    aa = rng.normal(size=(4, 5, 3))
    R = axis_angle_to_matrix(jnp.asarray(aa))
    assert R.shape == (4, 5, 3, 3)
    ref = Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix().reshape(4, 5, 3, 3)
    np.testing.assert_allclose(R, ref, atol=1e-5)


def test_matrix_to_axis_angle_round_trip():
    rng = np.random.default_rng(1)
    axes = rng.normal(size=(20, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    angles = rng.uniform(0.0, np.pi - 0.1, 20)
    aa = axes * angles[:, None]
    R = Rotation.from_rotvec(aa).as_matrix()
    np.testing.assert_allclose(matrix_to_axis_angle(jnp.asarray(R)), aa, atol=1e-4)
    # Angle above pi comes back as the equivalent rotation with angle below pi.
    aa_big = np.array([0.0, 0.0, 1.5 * np.pi])
    np.testing.assert_allclose(matrix_to_axis_angle(axis_angle_to_matrix(aa_big)), [0, 0, -0.5 * np.pi], atol=1e-5)


def test_gradients_at_zero_rotation_are_finite_and_correct():
    weights = jnp.asarray(np.random.default_rng(2).normal(size=(3, 3)), jnp.float32)
    g = jax.jit(jax.grad(lambda aa: jnp.sum(weights * axis_angle_to_matrix(aa))))(jnp.zeros(3))
    # dR/d(aa_k) at zero is hat(e_k).
    expected = [np.sum(np.asarray(weights) * _hat(e)) for e in np.eye(3)]
    np.testing.assert_allclose(g, expected, atol=1e-6)

    J = jax.jit(jax.jacobian(lambda aa: matrix_to_axis_angle(axis_angle_to_matrix(aa))))(jnp.zeros(3))
    np.testing.assert_allclose(J, np.eye(3), atol=1e-6)
    g_log = jax.jit(jax.grad(lambda R: jnp.sum(matrix_to_axis_angle(R))))(jnp.eye(3))
    assert np.all(np.isfinite(g_log))


def test_rotation_gradients_float64():
    with jax.enable_x64(True):
        aa = jnp.array([0.3, -0.5, 0.8])
        check_grads(jax.jit(axis_angle_to_matrix), (aa,), order=1, modes=("fwd", "rev"))
        R = axis_angle_to_matrix(aa)
        check_grads(jax.jit(matrix_to_axis_angle), (R,), order=1, modes=("rev",))


def test_se3_transform_points_matches_numpy():
    rng = np.random.default_rng(3)
    R = Rotation.from_rotvec(rng.normal(size=3)).as_matrix()
    t = rng.normal(size=3)
    pts = rng.normal(size=(6, 2, 3))
    T = se3_from_rotation_translation(jnp.asarray(R), jnp.asarray(t))
    out = transform_points(T, jnp.asarray(pts))
    assert out.shape == (6, 2, 3)
    np.testing.assert_allclose(out, pts @ R.T + t, atol=1e-5)
    np.testing.assert_allclose(transform_points(T.inverse(), out), pts, atol=1e-5)
    np.testing.assert_allclose(T.rotation().as_matrix(), R, atol=1e-6)

    # Batched transforms broadcast against the points' leading axes (right-aligned).
    Rs = Rotation.from_rotvec(rng.normal(size=(4, 3))).as_matrix()
    ts = rng.normal(size=(4, 3))
    Ts = se3_from_rotation_translation(jnp.asarray(Rs), jnp.asarray(ts))
    p4 = rng.normal(size=(4, 3))
    np.testing.assert_allclose(transform_points(Ts, jnp.asarray(p4)), np.einsum("bij,bj->bi", Rs, p4) + ts, atol=1e-5)
    # Same as jaxlie's own action.
    np.testing.assert_allclose(transform_points(Ts, jnp.asarray(p4)), Ts @ jnp.asarray(p4), atol=1e-5)
