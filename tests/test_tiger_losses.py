"""TIGeR's losses: reference values, float64 finite-difference gradients, degenerate inputs."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
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
        # Each loss compiled once (op-by-op float64 evaluation costs more than the compile).
        fns = [
            (lambda x: tiger.rec_loss(x, j(b)), a),
            (lambda x: tiger.mask_loss(x, j(mask)), logits),
            (lambda x: tiger.keypoint_loss(x, j(kp_g)), kp_p),
            (lambda x: tiger.proj_loss(x, j(b), j(center), jnp.asarray(mapping), j(K)), a),
            (lambda x: tiger.weight_loss(jax.nn.softmax(x, -1), jnp.asarray(patch), j(a),
                                         jnp.asarray(mapping), j(uv), 256), att_logits),
        ]
        for f, x in fns:
            check_grads(jax.jit(f), (j(x),), order=1, modes="rev", eps=1e-6)


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
        jax.jit(jax.grad(lambda x: tiger.rec_loss(x, jnp.asarray(b))))(same),
        jax.jit(jax.grad(lambda x: tiger.proj_loss(x, x[:20], jnp.array([0, 0, 0.5]), mapping,
                                                   jnp.asarray(K))))(same),
        jax.jit(jax.grad(lambda x: tiger.mask_loss(x, empty)))(jnp.zeros((8, 8))),
        jax.jit(jax.grad(lambda x: tiger.weight_loss(
            jax.nn.softmax(x, -1), jnp.zeros(4, jnp.int32), same, mapping,
            jnp.full((20, 2), 128.0), 256)))(jnp.zeros((4, 16))),
    ]
    for g in grads:
        assert np.isfinite(np.asarray(g)).all()
    # An empty mask is an ordinary target: confident "background" is cheap, "object" dear.
    assert float(tiger.mask_loss(jnp.full((8, 8), -5.0), empty)) < 0.01
    assert float(tiger.mask_loss(jnp.full((8, 8), 5.0), empty)) > 4.0


def test_eq7_sums_the_terms_with_lambda_proj_on_crop_normalised_projections():
    # λ_proj applies to L_proj in crop-normalised units × 10⁴ (the m² → cm² factor of L_rec):
    # the same pixel error weighs half as much on a crop twice as large.
    from hoijax.tiger._losses import PROJ_SCALE

    rng = np.random.default_rng(3)
    a, b = _clouds(rng, 24, 20)
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    out = tiger.TigerOutput(
        points_obj=f(a), attention1=jnp.full((4, 16), 1 / 16), attention2=jnp.full((4, 16), 1 / 16),
        patch2_index=jnp.arange(4), mask_logits=f(rng.normal(size=(4, 4))),
        hand_uv_px=jnp.zeros((21, 2)), hand_joints_cam=f(rng.normal(0, 0.03, (21, 3)) + [0, 0, 0.5]),
        obj_center_uv_px=jnp.zeros(2), obj_center_cam=f([0.01, 0.0, 0.5]))
    tgt = tiger.TigerTarget(points_obj=f(b), center_cam=f([0.0, 0.01, 0.5]),
                            hand_joints_cam=f(rng.normal(0, 0.03, (21, 3)) + [0, 0, 0.5]),
                            mask=f(rng.uniform(size=(4, 4)) > 0.5),
                            mapping=jnp.asarray(rng.integers(0, 24, 20)), K=f(K))
    w = tiger.TigerLossWeights(rec=1.0, mask=0.5, hand=2.0, center=3.0, weight=0.1, proj=0.01)
    run = jax.jit(tiger.tiger_loss, static_argnums=(4,))
    for crop in (256, 512):
        total, t = run(out, tgt, f(a), w, crop)
        expect = (t["rec"] + 0.5 * t["mask"] + 2.0 * t["hand"] + 3.0 * t["center"]
                  + 0.1 * t["weight"] + 0.01 * PROJ_SCALE / crop * t["proj"])
        np.testing.assert_allclose(float(total), float(expect), rtol=1e-5)
    assert PROJ_SCALE == 1e4 and float(t["proj"]) > 1.0  # pixels, a non-trivial error


def test_refined_proj_mapping_is_the_nearest_refined_point_without_gradient_through_it():
    # proj_mapping="refined": J(i) is the refined point nearest to V_i, recomputed from the
    # prediction (a NumPy brute force here), and L_proj's gradient is that of the fixed-mapping
    # loss at that J (the choice itself carries none); all points equal stays finite.
    rng = np.random.default_rng(4)
    a, b = _clouds(rng, 24, 20)
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    near = np.argmin(((b[:, None] - a[None]) ** 2).sum(-1), axis=1)
    out = tiger.TigerOutput(
        points_obj=f(a), attention1=jnp.full((4, 16), 1 / 16), attention2=jnp.full((4, 16), 1 / 16),
        patch2_index=jnp.arange(4), mask_logits=jnp.zeros((4, 4)),
        hand_uv_px=jnp.zeros((21, 2)), hand_joints_cam=jnp.zeros((21, 3)) + f([0, 0, 0.5]),
        obj_center_uv_px=jnp.zeros(2), obj_center_cam=f([0.0, 0.0, 0.5]))
    prior_map = (near + 1) % 24  # a different (the prior's) mapping
    tgt = tiger.TigerTarget(points_obj=f(b), center_cam=f([0.0, 0.01, 0.5]),
                            hand_joints_cam=jnp.zeros((21, 3)) + f([0, 0, 0.5]),
                            mask=jnp.zeros((4, 4)), mapping=jnp.asarray(prior_map), K=f(K))
    w = tiger.TigerLossWeights()

    def proj_term(points, mode):
        o = dataclasses.replace(out, points_obj=points)
        return tiger.tiger_loss(o, tgt, f(a), w, 256, mode)[1]["proj"]

    def fixed(points, mapping):
        return tiger.proj_loss(points, tgt.points_obj, tgt.center_cam, jnp.asarray(mapping), tgt.K)

    np.testing.assert_allclose(float(proj_term(f(a), "refined")), float(fixed(f(a), near)),
                               rtol=1e-6)
    np.testing.assert_allclose(float(proj_term(f(a), "prior")), float(fixed(f(a), prior_map)),
                               rtol=1e-6)
    g = jax.grad(proj_term)(f(a), "refined")
    np.testing.assert_allclose(np.asarray(g), np.asarray(jax.grad(fixed)(f(a), near)),
                               rtol=1e-5, atol=1e-7)
    same = jnp.full((24, 3), 0.01)
    assert np.isfinite(np.asarray(jax.grad(proj_term)(same, "refined"))).all()
    with pytest.raises(ValueError, match="proj_mapping"):
        proj_term(f(a), "nearest")
