"""EgoHandICL losses: zero at the ground truth, absent hands and missing MANO ground truth
handled, the PointNet perceptual term frozen and NaN-free at degenerate clouds, gradients
against finite differences in float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hoijax import icl

MODELS = icl.hand_models()
PN = icl.init_pointnet()


def _hands(seed=0):
    rng = np.random.default_rng(seed)
    gt = np.zeros((2, 61), np.float32)
    gt[:, 0:3] = rng.normal(size=(2, 3)) * 0.5
    gt[:, 3:48] = np.asarray(MODELS[0].hands_mean) + rng.normal(size=(2, 45)) * 0.2
    gt[1, 3:48] = np.asarray(MODELS[1].hands_mean) + rng.normal(size=45) * 0.2
    gt[:, 48:58] = rng.normal(size=(2, 10)) * 0.5
    gt[:, 58:61] = [[0.08, 0.0, 0.5], [-0.08, 0.0, 0.45]]
    return jnp.asarray(gt)


def test_loss_is_zero_at_the_ground_truth_and_positive_elsewhere():
    gt = _hands()
    pres = jnp.array([True, True])
    total, terms = icl.icl_loss(gt, gt, pres, MODELS, PN)
    for k, v in terms.items():
        assert float(v) == pytest.approx(0.0, abs=1e-7), k
    pred = gt.at[:, 3:48].add(0.1)
    total, terms = icl.icl_loss(pred, gt, pres, MODELS, PN)
    # L_mano: the paper's sum of squared parameter errors (45 entries × 0.1² per hand).
    assert float(terms["mano_params"]) == pytest.approx(0.01 * 45, rel=1e-4)
    _, t_tr = icl.icl_loss(gt.at[:, 58:61].add(0.02), gt, pres, MODELS, PN)
    assert float(t_tr["mano_params"]) == pytest.approx(3 * 0.02 ** 2, rel=1e-4)  # metres
    assert float(terms["vertex_l1"]) > 1e-4 and float(terms["perceptual_3d"]) > 0
    assert float(terms["keypoint_l1"]) == 0.0  # MANO ground truth known: no keypoint term
    w = icl.IclLossWeights()
    assert float(total) == pytest.approx(
        0.05 * float(terms["mano_params"]) + 5.0 * float(terms["vertex_l1"])
        + 0.01 * float(terms["perceptual_3d"]), rel=1e-5)
    # A pure depth error: invisible to the perceptual term (normalized clouds), not to L_V.
    _, t_depth = icl.icl_loss(gt.at[:, 60].add(0.05), gt, pres, MODELS, PN)
    assert float(t_depth["perceptual_3d"]) < 1e-8 and float(t_depth["vertex_l1"]) > 0.01
    assert w.vertex == 5.0 and w.mano == 0.05 and w.perceptual_3d == 0.01


def test_absent_hands_and_keypoint_only_frames():
    gt = _hands(1)
    pres = jnp.array([True, False])
    pred = gt.at[1].set(3.0)  # garbage in the absent slot
    total, terms = icl.icl_loss(pred, gt, pres, MODELS, PN)
    assert float(total) == pytest.approx(0.0, abs=1e-7)
    # Without MANO ground truth only the keypoint term supervises, against given keypoints.
    _, kp_gt = icl.hands_forward(MODELS, gt)
    pred = gt.at[0, 3:48].add(0.2)
    total, terms = icl.icl_loss(pred, gt * 0 + 9.0, pres, MODELS, PN, keypoints_gt=kp_gt,
                                has_mano_gt=False)
    assert float(terms["mano_params"]) == 0 and float(terms["vertex_l1"]) == 0
    assert float(terms["perceptual_3d"]) == 0 and float(terms["keypoint_l1"]) > 1e-4
    assert float(total) == pytest.approx(5.0 * float(terms["keypoint_l1"]), rel=1e-6)
    total0, _ = icl.icl_loss(gt, gt * 0 + 9.0, pres, MODELS, PN, keypoints_gt=kp_gt,
                             has_mano_gt=False)
    assert float(total0) == pytest.approx(0.0, abs=1e-7)


def test_loss_jits_vmaps_and_perceptual_term_matches_finite_differences():
    gt = _hands(2)
    pres = jnp.array([True, True])
    preds = jnp.stack([gt + 0.05, gt - 0.03])
    f = jax.jit(jax.vmap(lambda p: icl.icl_loss(p, gt, pres, MODELS, PN)[0]))
    batch = f(preds)
    for i in range(2):
        assert float(batch[i]) == pytest.approx(float(icl.icl_loss(preds[i], gt, pres, MODELS,
                                                                   PN)[0]), rel=1e-5)
    with jax.enable_x64(True):
        pn64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), PN)
        rng = np.random.default_rng(4)
        cloud = jnp.asarray(rng.normal(size=(20, 3)))
        target = jnp.asarray(rng.normal(size=(20, 3)))
        check_grads(lambda x: icl.perceptual_3d_loss(pn64, x, target)[0], (cloud,), order=1,
                    modes=("rev",), eps=1e-6)
    # The smooth terms (MANO L2 and perceptual; the L1 terms have kinks) through hoijax's MANO:
    # a central difference along a random direction (the loss computes in float32).
    w = icl.IclLossWeights(mano=1.0, vertex=0.0, perceptual_3d=1.0, keypoint=0.0)
    smooth = lambda p: icl.icl_loss(p, gt, pres, MODELS, PN, w)[0]  # noqa: E731
    p0 = gt + 0.05
    v = jnp.asarray(np.random.default_rng(5).normal(size=p0.shape), jnp.float32) * 3e-3
    fd = (smooth(p0 + v) - smooth(p0 - v)) / 2
    assert float(jnp.vdot(jax.grad(smooth)(p0), v)) == pytest.approx(float(fd), rel=0.05)


def test_perceptual_term_is_nan_free_at_degenerate_clouds_and_frozen():
    same = jnp.ones((16, 3)) * 0.3
    other = jnp.asarray(np.random.default_rng(0).normal(size=(16, 3)), jnp.float32)
    np.testing.assert_array_equal(icl.normalize_cloud(same), 0.0)
    for a, b in ((same, other), (same, same), (jnp.zeros((16, 3)), other)):
        val, g = jax.value_and_grad(lambda x, b=b: icl.perceptual_3d_loss(PN, x, b)[0])(a)
        assert np.isfinite(float(val)) and np.all(np.isfinite(np.asarray(g)))
    g_params = jax.grad(lambda prm: icl.perceptual_3d_loss(prm, other, same + other)[0])(PN)
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(g_params))
    # Invariant to translation and scale of both clouds (Uni3D-style normalization).
    a = icl.perceptual_3d_loss(PN, other, other * 0.5 + 0.1)[0]
    b = icl.perceptual_3d_loss(PN, other * 3 - 1, other * 1.5)[0]
    assert float(a) == pytest.approx(float(b), rel=1e-4, abs=1e-9)
    # A custom (e.g. pretrained) φ plugs in through its parameters.
    wide = icl.init_pointnet(jax.random.key(5), features=(8, 4))
    assert icl.pointnet_features(wide, other, features=(8, 4)).shape == (4,)
