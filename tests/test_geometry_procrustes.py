"""Tests for hoijax.geometry similarity Procrustes (Umeyama) and PA alignment."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from hoijax.geometry import procrustes_align, similarity_transform


def _umeyama_numpy(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Independent reference: Umeyama 1991 with the covariance built the other way round."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    U, D, Vt = np.linalg.svd(xs.T @ xd / len(src))  # Sigma^T
    d = np.sign(np.linalg.det(Vt.T @ U.T))
    S = np.diag([1.0, 1.0, d])
    R = Vt.T @ S @ U.T
    scale = np.trace(np.diag(D) @ S) / (xs**2).sum(1).mean()
    return scale, R, mu_d - scale * R @ mu_s


def _joints(seed: int, n: int = 21) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.05, size=(n, 3))


def test_recovers_exact_similarity():
    src = _joints(0)
    R_true = Rotation.from_rotvec([0.3, -1.2, 2.0]).as_matrix()
    dst = 1.3 * src @ R_true.T + np.array([0.1, -0.2, 0.6])
    scale, R, t = similarity_transform(jnp.asarray(src), jnp.asarray(dst))
    np.testing.assert_allclose(scale, 1.3, rtol=1e-5)
    np.testing.assert_allclose(R, R_true, atol=1e-5)
    np.testing.assert_allclose(t, [0.1, -0.2, 0.6], atol=1e-5)
    np.testing.assert_allclose(procrustes_align(src, dst), dst, atol=1e-5)


def test_matches_numpy_reference_and_excludes_reflections():
    src = _joints(1)
    # A mirrored, noisy target: the best proper rotation needs the reflection fix.
    dst = src * np.array([-1.0, 1.0, 1.0]) * 0.8 + np.random.default_rng(2).normal(scale=0.01, size=src.shape)
    scale, R, t = similarity_transform(jnp.asarray(src), jnp.asarray(dst))
    ref_scale, ref_R, ref_t = _umeyama_numpy(src, dst)
    np.testing.assert_allclose(np.linalg.det(np.asarray(R)), 1.0, atol=1e-5)
    np.testing.assert_allclose(scale, ref_scale, rtol=1e-4)
    np.testing.assert_allclose(R, ref_R, atol=1e-4)
    np.testing.assert_allclose(t, ref_t, atol=1e-5)


def test_weights_ignore_corrupted_points():
    src = _joints(3)
    R_true = Rotation.from_rotvec([0.5, 0.2, -0.4]).as_matrix()
    dst = 0.9 * src @ R_true.T + 0.3
    dst[:4] += 1.0
    w = np.ones(21)
    w[:4] = 0.0
    scale, R, _ = similarity_transform(jnp.asarray(src), jnp.asarray(dst), jnp.asarray(w))
    np.testing.assert_allclose(scale, 0.9, rtol=1e-4)
    np.testing.assert_allclose(R, R_true, atol=1e-4)
    scale_unweighted, _, _ = similarity_transform(jnp.asarray(src), jnp.asarray(dst))
    assert abs(float(scale_unweighted) - 0.9) > 0.05


def test_aligned_squared_error_gradient_matches_finite_differences_float64():
    with jax.enable_x64(True):
        src = jnp.asarray(_joints(4, 8))
        dst = jnp.asarray(_joints(5, 8))  # unrelated point sets: the fit is far from exact
        w = jnp.asarray(np.random.default_rng(6).uniform(0.5, 1.5, 8))

        def squared_error(s, d):
            return jnp.sum(w * jnp.sum((procrustes_align(s, d, w) - d) ** 2, axis=-1))

        check_grads(jax.jit(squared_error), (src, dst), order=1, modes=("fwd", "rev"), eps=1e-6)
        # Finite differences re-solve the alignment at every perturbed input; matching them
        # shows the frozen (s, R, t) lose nothing for the squared error (envelope theorem).
        g = jax.grad(squared_error)(src, dst)
        assert float(jnp.abs(g).max()) > 1e-3


def test_degenerate_inputs_have_finite_values_and_gradients():
    dst = jnp.asarray(_joints(7), jnp.float32)
    src_equal = jnp.ones((21, 3), jnp.float32) * 0.2

    def err(s, d, w=None):
        return jnp.sum((procrustes_align(s, d, w) - d) ** 2)

    aligned = procrustes_align(src_equal, dst)
    np.testing.assert_allclose(aligned, np.broadcast_to(np.asarray(dst).mean(0), (21, 3)), atol=1e-6)
    grads = jax.grad(err, argnums=(0, 1))(src_equal, dst)
    assert all(np.all(np.isfinite(g)) for g in grads)

    # Coplanar and collinear sources (repeated singular values) and all-zero weights.
    line = jnp.outer(jnp.linspace(-1.0, 1.0, 21), jnp.array([1.0, 2.0, 0.5]))
    for src, w in [(line, None), (dst.at[:, 2].set(0.0), None), (dst, jnp.zeros(21))]:
        value = err(src, dst, w)
        grads = jax.grad(err, argnums=(0, 1))(src, dst, w)
        assert np.isfinite(value)
        assert all(np.all(np.isfinite(g)) for g in grads)


def test_vmap_matches_loop():
    src = jnp.asarray(np.stack([_joints(i) for i in range(3)]))
    dst = jnp.asarray(np.stack([_joints(10 + i) for i in range(3)]))
    batched = jax.jit(jax.vmap(procrustes_align))(src, dst)
    for i in range(3):
        np.testing.assert_allclose(batched[i], procrustes_align(src[i], dst[i]), atol=1e-5)
