"""EgoExo4D joint metrics of hoijax.icl against values computed by hand: MPJPE (wrist-aligned
and camera-frame, annotated joints only), the joints' P-MPJPE, joint F@10 / F@15; and the
per-hand arrays the evaluation builds from them."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from hoijax import icl
from hoijax.geometry import axis_angle_to_matrix


def _line_joints():
    """21 joints 30 mm apart along x: every nearest-neighbour distance is easy to state."""
    return np.stack([np.arange(21) * 0.03, np.zeros(21), np.full(21, 0.5)], axis=1)


def _hand_joints(seed=0):
    return np.random.default_rng(seed).normal(size=(21, 3)) * 0.04 + np.array([0, 0, 0.5])


def test_egoexo_mpjpe_by_hand():
    g = _line_joints()
    # A pure translation: 10 mm in the camera frame, nothing once the wrists are aligned.
    shifted = g + np.array([0.01, 0.0, 0.0])
    assert float(icl.egoexo_mpjpe_mm(shifted, g, wrist_aligned=False)) == pytest.approx(10.0,
                                                                                       rel=1e-5)
    assert float(icl.egoexo_mpjpe_mm(shifted, g)) == pytest.approx(0.0, abs=1e-4)
    # One joint 5 mm off (a 3-4-5 triangle): 5/21 mm over all joints, 2.5 mm over two.
    one = g.copy()
    one[5] += [0.0, 0.003, 0.004]
    assert float(icl.egoexo_mpjpe_mm(one, g)) == pytest.approx(5.0 / 21, rel=1e-4)
    valid = np.zeros(21, bool)
    valid[[0, 5]] = True
    assert float(icl.egoexo_mpjpe_mm(one, g, valid)) == pytest.approx(2.5, rel=1e-4)
    valid[5] = False
    assert float(icl.egoexo_mpjpe_mm(one, g, valid)) == pytest.approx(0.0, abs=1e-6)
    # The wrist 21 mm off: aligning wrists moves the 20 other joints 21 mm -> 20 mm mean.
    w = g.copy()
    w[0] += [0.021, 0.0, 0.0]
    assert float(icl.egoexo_mpjpe_mm(w, g)) == pytest.approx(20.0, rel=1e-4)
    assert float(icl.egoexo_mpjpe_mm(w, g, wrist_aligned=False)) == pytest.approx(1.0, rel=1e-4)
    assert float(icl.egoexo_mpjpe_mm(w, g, np.zeros(21, bool))) == 0.0  # nothing annotated


def test_joint_fscores_by_hand():
    g = _line_joints()
    p = g.copy()
    p[[3, 11]] += [0.0, 0.012, 0.0]  # 12 mm from their own joint, >= 28 mm from any other
    f = np.asarray(icl.joint_fscores(p, g, align=False))
    # Precision = recall = 19/21 at 10 mm, so F@10 = 19/21; everything is within 15 mm.
    np.testing.assert_allclose(f, [19 / 21, 1.0], rtol=1e-6)
    valid = np.ones(21, bool)
    valid[[3, 11]] = False
    np.testing.assert_allclose(np.asarray(icl.joint_fscores(p, g, valid, align=False)), [1, 1])
    # Precision and recall differ: 4 predicted joints dropped onto joint 0 (within 10 mm of it):
    # precision 1, recall 17/21 -> F = 2 * 17/21 / (1 + 17/21) = 34/38.
    q = g.copy()
    q[[5, 6, 7, 8]] = g[0] + [0.0, 0.0, 0.002]
    np.testing.assert_allclose(np.asarray(icl.joint_fscores(q, g, align=False))[0], 34 / 38,
                               rtol=1e-6)
    assert icl.JOINT_FSCORE_THRESHOLDS_M == (0.010, 0.015)


def test_joint_pa_mpjpe_and_aligned_fscores_ignore_similarity_transforms():
    g = _hand_joints()
    R = np.asarray(axis_angle_to_matrix(jnp.array([0.3, -0.5, 0.2])))
    p = 1.3 * g @ R.T + np.array([0.1, -0.05, 0.2])
    assert float(icl.joints_pa_mpjpe_mm(p, g)) == pytest.approx(0.0, abs=1e-3)
    np.testing.assert_allclose(np.asarray(icl.joint_fscores(p, g)), [1.0, 1.0])
    # A wild unannotated joint does not move the alignment fitted on the annotated ones.
    p_bad = p.copy()
    p_bad[7] += 0.5
    valid = np.ones(21, bool)
    valid[7] = False
    assert float(icl.joints_pa_mpjpe_mm(p_bad, g, valid)) == pytest.approx(0.0, abs=1e-3)
    assert float(icl.joints_pa_mpjpe_mm(p_bad, g)) > 5.0


def test_keypoint_metrics_arrays_per_hand():
    models = icl.hand_models()
    data, _ = icl.make_synthetic_icl(icl.SyntheticIclConfig(num_scenes=3, frames_per_scene=4,
                                                            num_patches=4, feature_dim=8,
                                                            text_dim=16, seed=5))
    gt = np.asarray(data.gt)
    pres = np.asarray(data.presence)
    a = icl.keypoint_metrics_arrays(gt, data.keypoints_gt, data.keypoints_valid, pres, models)
    assert set(a) == {"mpjpe_mm", "joints_pa_mpjpe_mm", "joint_f10", "joint_f15"}
    np.testing.assert_allclose(a["mpjpe_mm"][pres], 0.0, atol=1e-3)
    np.testing.assert_allclose(a["joint_f10"][pres], 1.0)
    assert np.all(np.isnan(a["mpjpe_mm"][~pres]))
    # Translating the prediction by 8 mm: camera-frame error, not EgoExo4D's wrist-aligned one.
    moved = gt.copy()
    moved[..., 58] += 0.008
    b = icl.keypoint_metrics_arrays(moved, data.keypoints_gt, data.keypoints_valid, pres, models)
    np.testing.assert_allclose(b["mpjpe_mm"][pres], 0.0, atol=1e-3)
    # Summaries name them like the paper's EgoExo4D table.
    s = icl.summarize_metrics(a)
    assert s["MPJPE_mm"] == pytest.approx(0.0, abs=1e-3) and s["joint_F@10"] == 1.0
    assert np.isnan(s["P-MPVPE_mm"])  # no mesh metrics in these arrays
