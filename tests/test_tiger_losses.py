"""TIGeR's losses: reference values, float64 finite-difference gradients, degenerate inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from hoijax import metrics, tiger

K = np.array([[300.0, 0, 127.5], [0, 300.0, 127.5], [0, 0, 1]])


def _clouds(rng, p=24, q=20):
    return rng.normal(scale=0.03, size=(p, 3)), rng.normal(scale=0.03, size=(q, 3))


def test_rec_loss_is_holds_chamfer_in_cm2():
    a, b = _clouds(np.random.default_rng(0))
    with jax.enable_x64(True):
        got = float(tiger.rec_loss(jnp.asarray(a), jnp.asarray(b)))
        ref = float(metrics.chamfer_cm2(jnp.asarray(a), jnp.asarray(b)))
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    assert float(tiger.rec_loss(jnp.asarray(b), jnp.asarray(b))) == 0.0


def test_loss_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    a, b = _clouds(rng)
    center = np.array([0.01, -0.02, 0.5])
    mapping = rng.integers(0, len(a), size=len(b))
    logits = rng.normal(size=(8, 8))
    mask = (rng.uniform(size=(8, 8)) > 0.5).astype(float)
    kp_p, kp_g = rng.normal(size=(21, 3)), rng.normal(size=(21, 3))
    att_logits = rng.normal(size=(4, 16))
    patch = np.array([0, 5, 9, 13])
    uv = rng.uniform(0, 256, size=(len(b), 2))
    with jax.enable_x64(True):
        j = lambda x: jnp.asarray(x, jnp.float64)  # noqa: E731
        check_grads(lambda x: tiger.rec_loss(j(x), j(b)), (j(a),), order=1, modes="rev", eps=1e-6)
        check_grads(lambda x: tiger.mask_loss(j(x), j(mask)), (j(logits),), order=1, modes="rev", eps=1e-6)
        check_grads(lambda x: tiger.keypoint_loss(j(x), j(kp_g)), (j(kp_p),), order=1, modes="rev", eps=1e-6)
        check_grads(lambda x: tiger.proj_loss(j(x), j(b), j(center), jnp.asarray(mapping), j(K)),
                    (j(a),), order=1, modes="rev", eps=1e-6)
        check_grads(lambda x: tiger.weight_loss(jax.nn.softmax(j(x), -1), jnp.asarray(patch), j(a),
                                                jnp.asarray(mapping), j(uv), 256),
                    (j(att_logits),), order=1, modes="rev", eps=1e-6)


def test_weight_loss_prefers_attention_peaked_at_the_projection():
    grid, crop = 4, 256
    cells = np.asarray(tiger.cell_centers_px(grid, crop))
    prior = np.zeros((2, 3))
    prior[1, 0] = 1.0  # two prior points, each its own patch
    uv = cells[[5, 10]]  # ground-truth point i projects to cell 5 / 10
    mapping = np.array([0, 1])
    # Attention peaked at the projection (the cross-entropy's minimiser: the target itself).
    right = np.exp(-0.5 * ((cells[None] - uv[:, None]) ** 2).sum(-1) / (crop / grid) ** 2)
    wrong = right[::-1]
    flat = np.full((2, 16), 1 / 16)
    loss = lambda w: float(tiger.weight_loss(  # noqa: E731
        jnp.asarray(w / w.sum(1, keepdims=True)), jnp.arange(2), jnp.asarray(prior),
        jnp.asarray(mapping), jnp.asarray(uv), crop))
    assert loss(right) < loss(flat) < loss(wrong)


def test_degenerate_inputs_give_finite_losses_and_gradients():
    rng = np.random.default_rng(2)
    _, b = _clouds(rng)
    same = jnp.full((24, 3), 0.01)  # all prior / predicted points equal
    mapping = jnp.zeros(len(b), jnp.int32)
    empty = jnp.zeros((8, 8))
    grads = [
        jax.grad(lambda x: tiger.rec_loss(x, jnp.asarray(b)))(same),
        jax.grad(lambda x: tiger.proj_loss(x, x[:20], jnp.array([0, 0, 0.5]), mapping,
                                           jnp.asarray(K)))(same),
        jax.grad(lambda x: tiger.mask_loss(x, empty))(jnp.zeros((8, 8))),
        jax.grad(lambda x: tiger.weight_loss(jax.nn.softmax(x, -1), jnp.zeros(4, jnp.int32),
                                             same, mapping, jnp.full((20, 2), 128.0), 256))(
            jnp.zeros((4, 16))),
    ]
    for g in grads:
        assert np.isfinite(np.asarray(g)).all()
    # An empty mask is an ordinary target: confident "background" is cheap, "object" dear.
    assert float(tiger.mask_loss(jnp.full((8, 8), -5.0), empty)) < 0.01
    assert float(tiger.mask_loss(jnp.full((8, 8), 5.0), empty)) > 4.0
