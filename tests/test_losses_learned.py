"""Losses of the learned models: MANO parameter MSE, vertex L1 and the masked Chamfer distance,
against NumPy references, with padding masks, gradients and jit/vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hoijax import losses


def _chamfer_ref(a, b):
    d2 = np.sum((a[:, None] - b[None]) ** 2, -1)
    return d2.min(1).mean() + d2.min(0).mean()


def test_chamfer_matches_reference_and_ignores_padding():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 3)), rng.normal(size=(20, 3))
    val, terms = losses.chamfer_distance(a, b)
    assert float(val) == pytest.approx(_chamfer_ref(a, b), rel=1e-5)
    assert float(terms["chamfer_a_to_b"]) + float(terms["chamfer_b_to_a"]) == pytest.approx(
        float(val), rel=1e-6)
    # Padding with far-away junk changes nothing once masked.
    a_pad = np.concatenate([a, np.full((5, 3), 100.0)])
    b_pad = np.concatenate([b, np.full((7, 3), -100.0)])
    ma = np.arange(35) < 30
    mb = np.arange(27) < 20
    val_pad, _ = jax.jit(losses.chamfer_distance)(a_pad, b_pad, ma, mb)
    assert float(val_pad) == pytest.approx(float(val), rel=1e-5)
    # Identical clouds: 0. No valid target: 0, finite gradient.
    assert float(losses.chamfer_distance(a, a)[0]) == 0.0
    g = jax.grad(lambda x: losses.chamfer_distance(x, b, None, np.zeros(20, bool))[0])(
        jnp.asarray(a))
    assert np.all(np.asarray(g) == 0)


def test_chamfer_gradient_matches_finite_differences_and_vmaps():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        a, b = jnp.asarray(rng.normal(size=(12, 3))), jnp.asarray(rng.normal(size=(9, 3)))
        mb = jnp.arange(9) < 7
        check_grads(lambda x: losses.chamfer_distance(x, b, None, mb)[0], (a,), order=1,
                    modes=("rev",), eps=1e-6)
        batch = jax.vmap(lambda x, y: losses.chamfer_distance(x, y)[0])(
            jnp.stack([a, a + 1.0]), jnp.stack([b, b]))
        assert float(batch[0]) == pytest.approx(_chamfer_ref(np.asarray(a), np.asarray(b)))
        assert float(batch[1]) == pytest.approx(_chamfer_ref(np.asarray(a) + 1, np.asarray(b)))


def test_mano_param_and_vertex_losses_match_references_with_masks():
    rng = np.random.default_rng(2)
    p, q = rng.normal(size=(4, 48)), rng.normal(size=(4, 48))
    mask = np.array([True, False, True, True])
    val, _ = losses.mano_param_loss(p, q, mask)
    assert float(val) == pytest.approx(np.mean((p - q)[mask] ** 2), rel=1e-5)
    v, w = rng.normal(size=(4, 778, 3)), rng.normal(size=(4, 778, 3))
    val, _ = losses.vertex_loss(v, w, mask)
    assert float(val) == pytest.approx(np.mean(np.abs(v - w)[mask]), rel=1e-5)
    assert float(losses.vertex_loss(v, w, np.zeros(4, bool))[0]) == 0.0
    # Mismatched shapes fail loudly (jaxtyping at test time, the function's own check otherwise).
    with pytest.raises((ValueError, TypeError)):
        losses.mano_param_loss(p, q[:, :45])
    with jax.enable_x64(True):
        check_grads(lambda x: losses.mano_param_loss(x, jnp.asarray(q), mask)[0],
                    (jnp.asarray(p),), order=1, modes=("rev",))
