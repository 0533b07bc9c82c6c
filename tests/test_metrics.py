"""Metrics with known answers: zero for identical inputs, closed-form values for known offsets,
invariance to the transforms each alignment removes, and the aggregation and success rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hoijax import metrics


def _rot(rng, angle_deg=None):
    if angle_deg is None:
        return Rotation.random(random_state=rng).as_matrix()
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return Rotation.from_rotvec(np.deg2rad(angle_deg) * axis).as_matrix()


def _plane(side_m, n_side, z):
    """Mesh of a square (two triangles) and a regular grid of points on it."""
    h = side_m / 2
    verts = np.array([[-h, -h, z], [h, -h, z], [h, h, z], [-h, h, z]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    g = np.linspace(-h, h, n_side)
    xx, yy = np.meshgrid(g, g)
    grid = np.stack([xx.ravel(), yy.ravel(), np.full(xx.size, z)], -1)
    return verts, faces, grid


def _blob_mesh():
    """An irregular closed mesh (no symmetry): a perturbed octahedron subdivided once."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.04)
    v = np.asarray(mesh.vertices) * np.array([1.6, 1.0, 0.6])
    v = v + 0.01 * np.stack([np.sin(9 * v[:, 1] / 0.04), v[:, 0] / 0.04, v[:, 2] ** 2 / 0.002], -1)
    return v, np.asarray(mesh.faces)


# ---------------------------------------------------------------- nearest neighbours, Chamfer


def test_nearest_neighbours_match_brute_force_with_chunks_and_mask():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(301, 3)) * 0.1 + 0.5
    r = rng.normal(size=(157, 3)) * 0.1 + 0.5
    valid = rng.random(157) > 0.3
    d2, idx = metrics.nearest_neighbors(q, r, valid, chunk=64)  # 301 = 4·64 + 45: padded chunk
    full = ((q[:, None] - r[None]) ** 2).sum(-1)
    full[:, ~valid] = np.inf
    np.testing.assert_array_equal(np.asarray(idx), full.argmin(1))
    np.testing.assert_allclose(np.asarray(d2), full.min(1), rtol=1e-4, atol=1e-12)


def test_identical_clouds_give_zero_cd_and_unit_fscore():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(500, 3)) * 0.05 + np.array([0.0, 0.0, 0.6])
    out = jax.jit(metrics.compare_clouds)(p, p, jnp.array([0.005, 0.01]))
    assert float(out.cd_cm2) == 0.0
    np.testing.assert_array_equal(np.asarray(out.fscore), [1.0, 1.0])


def test_parallel_grids_d_apart_give_twice_d_squared():
    """HOLD's CD is the *sum* of both directional means: two copies of a grid d apart → 2d²."""
    d = 0.003  # 0.3 cm, smaller than the 1 cm grid spacing so the match is the copy above
    _, _, grid = _plane(0.2, 21, 0.5)
    cd = metrics.chamfer_cm2(grid, grid + np.array([0.0, 0.0, d]))
    np.testing.assert_allclose(float(cd), 2 * (d * 100) ** 2, rtol=1e-4)


def test_sampled_parallel_planes_d_apart_give_twice_d_squared_within_tolerance():
    d = 0.02
    v0, f, _ = _plane(0.3, 2, 0.5)
    v1 = v0 + np.array([0.0, 0.0, d])
    k0, k1 = jax.random.split(jax.random.key(0))
    a = metrics.sample_surface(k0, v0, f, 10_000)
    b = metrics.sample_surface(k1, v1, f, 10_000)
    assert np.allclose(np.asarray(a)[:, 2], 0.5) and np.all(np.abs(np.asarray(a)[:, :2]) <= 0.15)
    cd = float(metrics.chamfer_cm2(a, b))
    # In-plane sample spacing (~3 mm) adds a little to d; nothing else should.
    assert 2 * (d * 100) ** 2 <= cd <= 2 * (d * 100) ** 2 * 1.05


def test_far_cloud_has_zero_fscore_and_mask_excludes_padding():
    rng = np.random.default_rng(2)
    p = rng.normal(size=(200, 3)) * 0.02
    out = metrics.compare_clouds(p, p + 1.0, jnp.array([0.005, 0.01]))
    np.testing.assert_array_equal(np.asarray(out.fscore), [0.0, 0.0])
    # Padded points far away must not count once masked.
    padded = np.concatenate([p, np.full((50, 3), 7.0)])
    valid = np.arange(250) < 200
    masked = metrics.compare_clouds(padded, p, jnp.array([0.005]), pred_valid=valid)
    assert float(masked.cd_cm2) == 0.0 and float(masked.fscore[0]) == 1.0
    unmasked = metrics.compare_clouds(padded, p, jnp.array([0.005]))
    assert float(unmasked.cd_cm2) > 1e3


def test_fscore_counts_precision_and_recall_separately():
    """3 of 4 predicted points near the GT (P = 3/4), both GT points matched (R = 1)."""
    gt = np.array([[0.0, 0, 0], [0.1, 0, 0]])
    pred = np.array([[0.0, 0, 0.001], [0.1, 0, 0.001], [0.1, 0.001, 0], [0.5, 0, 0]])
    out = metrics.compare_clouds(pred, gt, jnp.array([0.005]))
    np.testing.assert_allclose(float(out.precision[0]), 0.75)
    np.testing.assert_allclose(float(out.recall[0]), 1.0)
    np.testing.assert_allclose(float(out.fscore[0]), 2 * 0.75 / 1.75, rtol=1e-6)


# ---------------------------------------------------------------- hand


def test_mpjpe_is_root_relative_and_known():
    rng = np.random.default_rng(3)
    gt = rng.normal(size=(21, 3)) * 0.04
    assert float(metrics.mpjpe_mm(gt + np.array([0.3, -0.2, 0.5]), gt)) < 1e-4
    pred = gt.copy()
    pred[7] += np.array([0.0, 0.021, 0.0])  # one joint 21 mm off → mean 1 mm
    np.testing.assert_allclose(float(metrics.mpjpe_mm(pred, gt)), 1.0, rtol=1e-5)


def test_procrustes_metrics_undo_a_similarity_transform():
    rng = np.random.default_rng(4)
    joints = rng.normal(size=(21, 3)) * 0.04
    verts = rng.normal(size=(778, 3)) * 0.04
    R, s, t = _rot(rng), 1.37, np.array([0.1, -0.05, 0.4])
    sim = lambda x: s * x @ R.T + t  # noqa: E731
    out = jax.jit(metrics.hand_metrics)(sim(joints), joints, sim(verts), verts)
    assert float(out.pa_mpjpe_mm) < 1e-3 and float(out.pa_mpvpe_mm) < 1e-3
    assert float(out.f5) == 1.0 and float(out.f15) == 1.0
    assert float(out.mpjpe_mm) > 10.0  # the unaligned error is not removed
    # A 10 mm non-rigid perturbation survives the alignment.
    noisy = verts + 0.01 * rng.choice([-1.0, 1.0], size=verts.shape) / np.sqrt(3)
    assert float(metrics.pa_mpvpe_mm(noisy, verts)) > 8.0
    f5, f15 = np.asarray(metrics.hand_fscores(noisy, verts))
    assert f5 < 0.5 and f15 > 0.9


# ---------------------------------------------------------------- object shape, CD_h, MRRPE


def test_object_icp_with_scale_recovers_a_similarity_and_needs_the_multi_start():
    v, f = _blob_mesh()
    pts = np.asarray(metrics.sample_surface(jax.random.key(1), v, f, 600))
    rng = np.random.default_rng(5)
    R = _rot(rng, 150.0)  # far from identity: the identity start alone cannot reach it
    pred = 0.8 * pts @ R.T + np.array([0.05, 0.02, 0.7])
    out = metrics.align_shapes(pred, pts, num_iters=30)
    assert float(out.metrics.cd_cm2) < 1e-4
    np.testing.assert_array_equal(np.asarray(out.metrics.fscore), [1.0, 1.0])
    np.testing.assert_allclose(float(out.transform.scale), 1 / 0.8, rtol=1e-3)
    only_identity = metrics.align_shapes(pred, pts, num_iters=30,
                                         init_rotations=np.eye(3)[None])
    assert float(only_identity.metrics.cd_cm2) > 100 * float(out.metrics.cd_cm2)


def test_cd_h_ignores_shared_motion_and_sees_relative_offset():
    pts = np.array([[0.0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]]) + 0.5
    root = np.array([0.45, 0.5, 0.48])
    shift = np.array([0.03, -0.2, 0.1])
    assert float(metrics.cd_h_cm2(pts + shift, root + shift, pts, root)) == pytest.approx(0, abs=1e-8)
    d = 0.004  # object moves 4 mm relative to the hand → 2 d² cm²
    cd = metrics.cd_h_cm2(pts + np.array([d, 0, 0]), root, pts, root)
    np.testing.assert_allclose(float(cd), 2 * (d * 100) ** 2, rtol=1e-4)


def test_mrrpe_ho_uses_bbox_centre_and_relative_vector():
    obj = np.array([[0.0, 0, 0], [0.1, 0.02, 0.04], [0.04, 0.1, 0.0]]) + 0.4
    root = np.array([0.3, 0.35, 0.5])
    # The same relative layout, translated: 0 error.
    assert float(metrics.mrrpe_ho_mm(root + 1, obj + 1, root, obj)) < 1e-3
    # Hand root moved 5 mm, object not: 5 mm.
    np.testing.assert_allclose(
        float(metrics.mrrpe_ho_mm(root + np.array([0, 0, 0.005]), obj, root, obj)), 5.0, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(metrics.bbox_center(obj)), [0.45, 0.45, 0.42], atol=1e-9)


# ---------------------------------------------------------------- pose errors, success rule


def test_rotation_and_translation_errors_of_known_transforms():
    rng = np.random.default_rng(6)
    R = _rot(rng)
    for angle in (0.0, 1e-3, 37.0, 179.9):
        dR = _rot(rng, angle)
        np.testing.assert_allclose(float(metrics.rotation_error_deg(dR @ R, R)), angle, atol=2e-3)
    g = jax.grad(lambda x: metrics.rotation_error_deg(jnp.asarray(R) + x, jnp.asarray(R)))(
        jnp.zeros((3, 3)))
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_allclose(
        float(metrics.translation_error_mm(np.array([0.1, 0.2, 0.3]), np.array([0.1, 0.23, 0.34]))),
        50.0, rtol=1e-5)


def test_add_s_le_add_and_zero_for_a_symmetric_rotation():
    n = 360
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = np.stack([0.05 * np.cos(ang), 0.05 * np.sin(ang), np.zeros(n)], -1)  # symmetric in z
    T_gt = np.eye(4)
    T_gt[:3, 3] = [0.0, 0.0, 0.6]
    T_sym = T_gt.copy()
    T_sym[:3, :3] = Rotation.from_euler("z", 40, degrees=True).as_matrix()  # a symmetry (n | 360/40)
    add, adds = float(metrics.add_mm(T_sym, T_gt, ring)), float(metrics.adds_mm(T_sym, T_gt, ring))
    assert adds < 1e-3
    np.testing.assert_allclose(add, 2 * 50.0 * np.sin(np.deg2rad(20)), rtol=1e-4)
    rng = np.random.default_rng(7)
    pts = rng.normal(size=(300, 3)) * 0.03
    for _ in range(5):
        T = np.eye(4)
        T[:3, :3] = _rot(rng, 20.0)
        T[:3, 3] = [0.01, 0.0, 0.6]
        a, s = float(metrics.add_mm(T, T_gt, pts)), float(metrics.adds_mm(T, T_gt, pts))
        assert 0 < s <= a
    np.testing.assert_allclose(float(metrics.object_diameter_mm(ring)), 100.0, rtol=1e-4)


def test_success_rule_threshold_and_valid_mask():
    diameter = 100.0  # → a frame is lost above 10 mm
    adds = np.full(20, 5.0)
    adds[:6] = 50.0  # 30 % lost: not more than 30 % → success
    assert not bool(metrics.tracking_failed(adds, diameter))
    adds[6] = 50.0  # 35 % lost → failure
    assert bool(metrics.tracking_failed(adds, diameter))
    valid = np.ones(20, bool)
    valid[:4] = False  # 3 lost of 16 valid frames (19 %) → success
    assert not bool(metrics.tracking_failed(adds, diameter, valid))
    adds[10] = np.nan  # NaN counts as lost: 4/16 = 25 % → still success
    assert not bool(metrics.tracking_failed(adds, diameter, valid))
    # Thresholds are traced: one compiled function, vmapped over a grid of rules.
    grid = jax.vmap(lambda f: metrics.tracking_failed(adds, diameter, valid, f))(
        jnp.array([0.01, 0.1, 1.0]))
    np.testing.assert_array_equal(np.asarray(grid), [True, False, False])
    np.testing.assert_allclose(float(metrics.success_rate(np.array([True, False, False, False]))),
                               0.75)


def test_aggregate_means_frames_then_sequences_with_padding():
    values = np.array([[1.0, 2.0, 3.0, 99.0], [10.0, np.nan, 20.0, 30.0]])
    valid = np.array([[True, True, True, False], [True, True, True, True]])
    np.testing.assert_allclose(metrics.sequence_means(values, valid), [2.0, 20.0])
    assert metrics.aggregate(values, valid) == pytest.approx(11.0)  # not the frame mean 12.2
    out = metrics.aggregate_dict({"a": values, "cd0": np.array([1.0, 3.0])}, valid)
    assert out == pytest.approx({"a": 11.0, "cd0": 2.0})
    with pytest.warns(UserWarning, match="left out"):
        assert metrics.aggregate(values, np.array([[False] * 4, [True] * 4])) == pytest.approx(20.0)


def test_per_frame_metrics_vmap_over_a_padded_batch():
    rng = np.random.default_rng(8)
    gt = rng.normal(size=(2, 5, 21, 3)) * 0.04
    pred = gt + rng.normal(size=gt.shape) * 0.005
    per_frame = jax.jit(jax.vmap(jax.vmap(metrics.mpjpe_mm)))(pred, gt)
    assert per_frame.shape == (2, 5)
    ref = np.linalg.norm((pred - pred[..., :1, :]) - (gt - gt[..., :1, :]), axis=-1).mean(-1) * 1000
    np.testing.assert_allclose(np.asarray(per_frame), ref, rtol=1e-4)
