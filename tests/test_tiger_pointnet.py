"""PointNet++ sampling, grouping and interpolation against NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hoijax import tiger


def _fps_reference(p: np.ndarray, k: int) -> np.ndarray:
    idx = [0]
    dist = np.full(len(p), np.inf)
    for _ in range(1, k):
        dist = np.minimum(dist, ((p - p[idx[-1]]) ** 2).sum(1))
        idx.append(int(np.argmax(dist)))
    return np.asarray(idx)


def _ball_reference(p: np.ndarray, c: np.ndarray, r: float, k: int) -> np.ndarray:
    out = np.zeros((len(c), k), int)
    for i, ci in enumerate(c):
        inside = np.flatnonzero(((p - ci) ** 2).sum(1) < r * r)[:k]
        if len(inside):
            out[i] = np.r_[inside, np.full(k - len(inside), inside[0])]
    return out


def test_fps_matches_numpy_reference():
    p = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    got = np.asarray(tiger.farthest_point_sample(jnp.asarray(p), 32))
    np.testing.assert_array_equal(got, _fps_reference(p, 32))
    assert len(set(got.tolist())) == 32  # distinct points on a generic cloud


def test_ball_query_matches_numpy_reference():
    rng = np.random.default_rng(1)
    p = rng.uniform(-1, 1, size=(300, 3)).astype(np.float32)
    c = p[_fps_reference(p, 20)]
    for r, k in ((0.3, 8), (0.6, 16), (5.0, 4)):
        got = np.asarray(tiger.ball_query(jnp.asarray(p), jnp.asarray(c), r, k))
        np.testing.assert_array_equal(got, _ball_reference(p, c, r, k))


def test_three_nn_interpolation_matches_numpy_and_reproduces_coarse_values():
    rng = np.random.default_rng(2)
    coarse = rng.normal(size=(10, 3))
    fine = rng.normal(size=(40, 3))
    feat = rng.normal(size=(10, 5))
    with jax.enable_x64(True):
        got = np.asarray(tiger.three_nn_interpolate(jnp.asarray(coarse), jnp.asarray(feat),
                                                    jnp.asarray(fine)))
        at_coarse = np.asarray(tiger.three_nn_interpolate(
            jnp.asarray(coarse), jnp.asarray(feat), jnp.asarray(coarse)))
    d2 = ((fine[:, None] - coarse[None]) ** 2).sum(-1)
    nn = np.argsort(d2, 1)[:, :3]
    w = 1 / (np.take_along_axis(d2, nn, 1) + 1e-8)
    ref = np.einsum("nk,nkc->nc", w / w.sum(1, keepdims=True), feat[nn])
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    np.testing.assert_allclose(at_coarse, feat, atol=1e-6)  # a coinciding point dominates


def test_degenerate_cloud_groups_without_nan():
    p = jnp.ones((64, 3))
    idx = tiger.farthest_point_sample(p, 8)
    np.testing.assert_array_equal(np.asarray(idx), 0)
    g = tiger.ball_query(p, p[idx], 0.1, 4)
    np.testing.assert_array_equal(np.asarray(g), np.arange(4)[None].repeat(8, 0))
    f = tiger.three_nn_interpolate(p[idx], jnp.arange(16.0).reshape(8, 2), p)
    assert np.isfinite(np.asarray(f)).all()
