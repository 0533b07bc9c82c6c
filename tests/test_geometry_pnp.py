"""Tests for hoijax.geometry translation-only PnP."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from hoijax.geometry import project
from hoijax.geometry import translation_pnp as _translation_pnp

# One compile per shape and setting instead of op-by-op dispatch in every test.
translation_pnp = jax.jit(_translation_pnp, static_argnames=("num_refine_steps",))

K_NP = np.array([[615.0, 0.0, 318.0], [0.0, 612.0, 243.0], [0.0, 0.0, 1.0]])


def _hand(seed: int, n: int = 21) -> np.ndarray:
    """Hand-sized keypoints (about 0.1 m across) around the origin, already rotated."""
    return np.random.default_rng(seed).uniform(-0.05, 0.05, (n, 3))


def _translations(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-0.1, 0.1, n), rng.uniform(-0.1, 0.1, n), rng.uniform(0.4, 0.8, n)], -1)


def test_noiseless_keypoints_give_translation_within_1mm():
    pnp = jax.jit(jax.vmap(lambda p, uv: translation_pnp(p, uv, K_NP)))
    points = np.stack([_hand(i) for i in range(8)])
    t_true = _translations(100, 8)
    uv = jax.vmap(project, in_axes=(None, 0))(jnp.asarray(K_NP), jnp.asarray(points + t_true[:, None]))
    result = pnp(jnp.asarray(points), uv)
    assert np.all(result.valid)
    np.testing.assert_allclose(result.translation, t_true, atol=1e-3)
    # Much tighter in fact: the algebraic error vanishes at the true translation.
    np.testing.assert_allclose(result.translation, t_true, atol=2e-5)
    assert float(jnp.max(result.reprojection_error_px)) < 0.01


def test_confidence_weights_remove_corrupted_keypoints():
    points = _hand(1)
    t_true = np.array([0.05, -0.03, 0.6])
    uv = np.array(project(K_NP, points + t_true))
    corrupted = np.array([2, 7, 11, 19])
    uv[corrupted] += np.array([[80.0, -40.0], [-60.0, 90.0], [120.0, 10.0], [-30.0, -70.0]])
    weights = np.ones(21)
    weights[corrupted] = 0.0
    result = translation_pnp(points, uv, K_NP, weights)
    assert bool(result.valid)
    np.testing.assert_allclose(result.translation, t_true, atol=1e-3)
    # The corrupted keypoints do matter when they are trusted.
    unweighted = translation_pnp(points, uv, K_NP)
    assert float(jnp.linalg.norm(unweighted.translation - t_true)) > 5e-3
    # Residuals still reported for the zero-weight keypoints: they are the outliers.
    assert float(result.reprojection_error_px[corrupted].min()) > 30.0


def test_nan_in_zero_weight_keypoint_is_harmless():
    points = _hand(2)
    t_true = np.array([-0.02, 0.04, 0.5])
    uv = np.array(project(K_NP, points + t_true))
    weights = np.ones(21)
    weights[[3, 8]] = 0.0
    clean = translation_pnp(points, uv, K_NP, weights)
    uv_nan, points_nan = uv.copy(), points.copy()
    uv_nan[3] = np.nan
    points_nan[8, 1] = np.inf
    dirty = translation_pnp(points_nan, uv_nan, K_NP, weights)
    assert np.all(np.isfinite(dirty.translation)) and np.all(np.isfinite(dirty.reprojection_error_px))
    np.testing.assert_allclose(dirty.translation, clean.translation, atol=1e-6)

    def loss(p, q):
        return jnp.sum(translation_pnp(p, q, K_NP, weights, num_refine_steps=1).translation)

    g_points, g_uv = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(points_nan), jnp.asarray(uv_nan))
    assert np.all(np.isfinite(g_points)) and np.all(np.isfinite(g_uv))
    np.testing.assert_array_equal(g_uv[3], 0.0)
    np.testing.assert_array_equal(g_points[8], 0.0)


def test_undetermined_inputs_fall_back_and_flag_invalid():
    points = jnp.asarray(_hand(3))
    uv = project(K_NP, points + jnp.array([0.0, 0.0, 0.5]))
    fallback = jnp.array([0.1, 0.2, 0.7])

    @jax.jit
    def solve_and_grad(w):
        def loss(p, q):
            result = translation_pnp(p, q, K_NP, w, fallback_translation=fallback, num_refine_steps=1)
            return jnp.sum(result.translation)

        result = translation_pnp(points, uv, K_NP, w, fallback_translation=fallback, num_refine_steps=1)
        return result, jax.grad(loss, argnums=(0, 1))(points, uv)

    for w in [jnp.zeros(21), jnp.zeros(21).at[5].set(1.0)]:  # no keypoint; a single ray
        result, grads = solve_and_grad(w)
        assert not bool(result.valid)
        np.testing.assert_allclose(result.translation, fallback)
        assert all(np.all(np.isfinite(g)) for g in grads)


def test_solution_behind_camera_is_flagged():
    points = _hand(4)
    t_behind = np.array([0.0, 0.0, -0.5])
    cam = points + t_behind
    hom = cam @ K_NP.T
    uv = hom[:, :2] / hom[:, 2:]  # pinhole images of points behind the camera
    result = translation_pnp(points, uv, K_NP)
    np.testing.assert_allclose(result.translation, t_behind, atol=1e-4)
    assert not bool(result.valid)


def test_refinement_lowers_reprojection_error_on_noisy_keypoints():
    points = _hand(5)
    t_true = np.array([0.03, 0.01, 0.45])
    # A strongly varying depth makes the algebraic and the pixel error disagree.
    points[:, 2] *= 3.0
    uv = np.asarray(project(K_NP, points + t_true)) + np.random.default_rng(6).normal(scale=2.0, size=(21, 2))
    w = np.random.default_rng(7).uniform(0.2, 1.0, 21)
    algebraic = translation_pnp(points, uv, K_NP, w)
    refined = translation_pnp(points, uv, K_NP, w, num_refine_steps=2)

    def cost(r):
        return float(np.sum(w * np.asarray(r.reprojection_error_px) ** 2))

    assert cost(refined) < cost(algebraic)
    np.testing.assert_allclose(refined.translation, t_true, atol=5e-3)


def test_gradients_float64():
    with jax.enable_x64(True):
        points = jnp.asarray(_hand(8))
        uv = project(jnp.asarray(K_NP), points + jnp.array([0.02, -0.01, 0.55]))
        uv = uv + jnp.asarray(np.random.default_rng(9).normal(scale=1.5, size=(21, 2)))
        w = jnp.asarray(np.random.default_rng(10).uniform(0.1, 1.0, 21))
        K = jnp.asarray(K_NP)
        check_grads(
            jax.jit(lambda p, q: translation_pnp(p, q, K, w).translation), (points, uv), order=1, modes=("fwd", "rev")
        )
        check_grads(
            jax.jit(lambda p, q: translation_pnp(p, q, K, w, num_refine_steps=1).translation),
            (points, uv),
            order=1,
            modes=("rev",),
            eps=1e-6,
        )
