"""AGILE's evaluation protocol (hoijax.tracking._evaluate) on hand-made results with known
errors: ADD / ADD-S and their accuracy at 10 % of the diameter, the failure rule, HOLD's object
CD / F-scores with the ground truth's own mesh, the summary and the Table 1 layout. No tracker
runs here: the results are built directly, so every expected number is known in advance."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from hoijax import data, mano, metrics
from hoijax import tracking as tr

N = 10


@pytest.fixture(scope="module")
def model():
    return mano.synthetic_mano("right")


def _obj(mesh: trimesh.Trimesh, scale=1.0) -> data.ObjectMesh:
    return data.ObjectMesh(vertices=jnp.asarray(mesh.vertices * scale, jnp.float32),
                           faces=jnp.asarray(mesh.faces, jnp.int32),
                           face_valid=jnp.ones(len(mesh.faces), bool))


def _poses(n=N, seed=0) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    T = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    T[:, :3, :3] = Rotation.random(n, random_state=seed).as_matrix()
    T[:, :3, 3] = [0.0, 0.0, 0.5]
    return T


def _sequence(model, mesh: trimesh.Trimesh, *, gt_mesh=None, gt_scale=(1.0, 1.0, 1.0)):
    z = lambda *s: jnp.zeros(s, jnp.float32)  # noqa: E731
    hand = data.HandParams(betas=z(N, 10), hand_pose=z(N, 45), global_orient=z(N, 3),
                           transl=jnp.tile(jnp.asarray([0.0, 0.0, 0.45]), (N, 1)))
    seq = data.Sequence(
        K=jnp.asarray([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]]), valid=jnp.ones(N, bool),
        hand_mask=jnp.zeros((N, 64, 64), bool), object_mask=jnp.zeros((N, 64, 64), bool),
        keypoints_px=z(N, 21, 2), keypoints_conf=jnp.ones((N, 21)), hand_init=hand,
        mesh=_obj(mesh),
        gt=data.GroundTruth(hand=hand, joints_cam=z(N, 21, 3), verts_cam=z(N, 778, 3),
                            T_cam_obj=jnp.asarray(_poses()),
                            obj_scale=jnp.asarray(gt_scale, jnp.float32),
                            obj_mesh=None if gt_mesh is None else _obj(gt_mesh)),
        side="right")
    # The ground-truth joints are the ones the result below predicts: MPJPE 0.
    kp = tr.hand_keypoints(_result(seq), seq.hand_init, model)
    return dataclasses.replace(seq, gt=dataclasses.replace(seq.gt, joints_cam=kp))


def _result(seq, *, T=None, scale=None, processed=None) -> tr.TrackResult:
    i32 = lambda x: jnp.asarray(x, jnp.int32)  # noqa: E731
    return tr.TrackResult(
        T_cam_obj=seq.gt.T_cam_obj if T is None else jnp.asarray(T, jnp.float32),
        obj_scale=seq.gt.obj_scale if scale is None else jnp.asarray(scale, jnp.float32),
        hand_scale=jnp.float32(1.0), hand_transl=seq.hand_init.transl,
        processed=jnp.ones(N, bool) if processed is None else jnp.asarray(processed),
        onset=i32(0), anchor=i32(0), onset_found=jnp.bool_(True), hand_iters=i32(np.zeros(N)),
        object_iters=i32(np.zeros(N)), terms=jnp.zeros((N, len(tr.STEP_TERMS))),
        step_frame=i32(np.zeros(1)), step_active=jnp.zeros(1, bool), object_trace=None,
        iof_trace=None, finite=jnp.bool_(True))


def test_add_accuracy_and_failure_follow_the_translation_offsets(model):
    """A pure translation error of length t moves every point by t: ADD = ADD-S bound, and
    ADD = t exactly. Frames at 0.05 d pass, frames at 0.2 d miss, so the accuracies are the
    fractions of each, and the sequence fails exactly when fewer than 70 % pass."""
    seq = _sequence(model, trimesh.creation.box(extents=(0.08, 0.05, 0.03)))
    d_mm = tr.evaluate_sequence(_result(seq), seq, model, shape=False)["diameter_mm"]
    assert d_mm == pytest.approx(1000 * np.sqrt(0.08**2 + 0.05**2 + 0.03**2), rel=0.03)
    for misses in (2, 3, 4):
        off = np.where(np.arange(N) < misses, 0.2, 0.05) * d_mm / 1000
        T = np.asarray(seq.gt.T_cam_obj).copy()
        T[:, 0, 3] += off
        ev = tr.evaluate_sequence(_result(seq, T=T), seq, model, shape=False)
        np.testing.assert_allclose(ev["per_frame"]["add_mm"], 1000 * off, rtol=1e-4)
        assert np.all(ev["per_frame"]["adds_mm"] <= ev["per_frame"]["add_mm"] + 1e-3)
        assert ev["add_acc"] == pytest.approx(1 - misses / N)
        # ADD-S can be below ADD (nearest point), never above: at least as many frames pass.
        assert ev["adds_acc"] >= ev["add_acc"]
        assert ev["failed"] == (ev["adds_acc"] < 0.7)
        assert ev["mean"]["mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)


def test_adds_and_the_symmetry_aware_errors_forgive_a_symmetry_that_add_does_not(model):
    """A cylinder turned by 90° about its axis: ADD is of the order of its radius, ADD-S is the
    sampling gap only; so ADD accuracy drops to 0 while ADD-S accuracy stays 1."""
    cyl = trimesh.creation.cylinder(radius=0.04, height=0.02, sections=64)
    seq = _sequence(model, cyl)
    Rz = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    T = np.asarray(seq.gt.T_cam_obj).copy()
    T[:, :3, :3] = T[:, :3, :3] @ Rz
    ev = tr.evaluate_sequence(_result(seq, T=T), seq, model, shape=False)
    assert ev["mean"]["add_mm"] > 30.0 and ev["mean"]["adds_mm"] < 5.0
    assert ev["add_acc"] == 0.0 and ev["adds_acc"] == 1.0 and not ev["failed"]
    # The symmetry-aware errors see no error either: the turn is in the cylinder's group
    # (discretized to 1 % of the diameter), while the plain rotation error is the 90°.
    assert ev["symmetry"].startswith("continuous")
    np.testing.assert_allclose(ev["per_frame"]["rot_err_deg"], 90.0, atol=0.1)
    assert np.all(ev["per_frame"]["rot_sym_err_deg"] < 1.2)
    assert np.all(ev["per_frame"]["mssd_mm"] < 0.02 * ev["diameter_mm"])
    # A box has only half turns: the same quarter turn stays an error there, and MSSD is the
    # largest displacement of a surface point (at a corner: the displacement is linear in the
    # point), minimized over the four elements of the group.
    box = _sequence(model, trimesh.creation.box(extents=(0.08, 0.05, 0.03)))
    ev = tr.evaluate_sequence(_result(box, T=T), box, model, shape=False)
    assert ev["symmetry"] == "finite, order 4"
    np.testing.assert_allclose(ev["per_frame"]["rot_sym_err_deg"], 90.0, atol=0.1)
    corners = np.array([[x, y, z] for x in (-0.04, 0.04) for y in (-0.025, 0.025)
                        for z in (-0.015, 0.015)])
    group = [np.diag(d) for d in ((1, 1, 1), (-1, -1, 1), (-1, 1, -1), (1, -1, -1))]
    expect = min(np.linalg.norm(corners @ Rz.T.astype(float) - corners @ S.T, axis=-1).max()
                 for S in group)
    np.testing.assert_allclose(ev["per_frame"]["mssd_mm"], 1000 * expect, rtol=2e-3)


def test_object_shape_metrics_use_the_ground_truths_own_mesh_and_both_scales(model):
    """HOLD's CD / F-scores compare the tracked mesh (scaled by the result) with the true mesh
    (scaled by the ground truth):
    - the same surface at another size, compensated by the scales: CD 0, F 1, ADD 0;
    - an anisotropic scale error (no similarity undoes it): CD > 0, and it matches
      metrics.object_shape_metrics on the same points;
    - another true shape (a box for a sphere): CD clearly larger, F@5 < 1."""
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.04)
    seq = _sequence(model, sphere, gt_mesh=sphere.copy().apply_scale(0.5),
                    gt_scale=(2.0, 2.0, 2.0))
    T = np.asarray(seq.gt.T_cam_obj).copy()
    T[:, :3, 3] += 0.003  # the pose error does not enter the ICP-aligned shape metrics
    ev = tr.evaluate_sequence(_result(seq, T=T, scale=(1.0, 1.0, 1.0)), seq, model)
    assert ev["obj_cd_cm2"] == pytest.approx(0.0, abs=1e-6)
    assert ev["obj_f5"] == 1.0 and ev["obj_f10"] == 1.0
    assert ev["mean"]["add_mm"] == pytest.approx(1000 * np.sqrt(3) * 0.003, rel=1e-3)

    stretched = tr.evaluate_sequence(_result(seq, scale=(1.3, 1.0, 0.8)), seq, model)
    assert stretched["obj_cd_cm2"] > 0.05 and stretched["obj_scale_err_pct"] == pytest.approx(30)
    m = tr.object_shape_at(_result(seq, scale=(1.3, 1.0, 0.8)), seq, 0)
    assert float(m.cd_cm2) == pytest.approx(stretched["obj_cd_cm2"], rel=1e-5)

    boxed = _sequence(model, sphere, gt_mesh=trimesh.creation.box(extents=(0.08,) * 3))
    other = tr.evaluate_sequence(_result(boxed), boxed, model)
    assert other["obj_cd_cm2"] > stretched["obj_cd_cm2"] and other["obj_f5"] < 1.0
    # Independent check: the same comparison with freshly sampled points (another key) and
    # the metrics function directly agrees up to sampling noise.
    p = metrics.sample_surface(jax.random.PRNGKey(7), boxed.mesh.vertices, boxed.mesh.faces,
                               1000)
    g = metrics.sample_surface(jax.random.PRNGKey(8), boxed.gt.obj_mesh.vertices,
                               boxed.gt.obj_mesh.faces, 1000)
    ref = metrics.object_shape_metrics(p, g, icp_points=500)
    assert other["obj_cd_cm2"] == pytest.approx(float(ref.cd_cm2), rel=0.3)


def test_unprocessed_and_non_finite_frames(model):
    """Only processed frames count; a non-finite pose is a miss (never a NaN accuracy); a
    sequence without a processed frame has NaN per-sequence numbers, which summarize skips."""
    seq = _sequence(model, trimesh.creation.box(extents=(0.08, 0.05, 0.03)))
    T = np.asarray(seq.gt.T_cam_obj).copy()
    T[[1, 3], 0, 3] = np.nan
    T[[0, 2, 4, 6, 8], 1, 3] += 0.004  # the interpolated frames: 4 mm off
    processed = np.arange(N) % 2 == 1  # frames 1, 3 (NaN) and 5, 7, 9 (exact)
    ev = tr.evaluate_sequence(_result(seq, T=T, processed=processed), seq, model)
    assert ev["processed_frames"] == 5 and ev["adds_acc"] == pytest.approx(3 / 5)
    # Every frame is scored; the interpolated ones apart from the processed ones.
    assert ev["interpolated_frames"] == 5
    np.testing.assert_array_equal(ev["processed"], processed)
    assert ev["mean_interpolated"]["add_mm"] == pytest.approx(4.0, rel=1e-3)
    assert ev["mean"]["add_mm"] == pytest.approx(0.0, abs=1e-3)  # NaN frames left out
    np.testing.assert_allclose(ev["per_frame"]["trans_err_mm"][[0, 2]], 4.0, rtol=1e-3)
    assert ev["failed"]  # 2 of 5 lost > 30 %
    assert np.isnan(ev["obj_cd_cm2"])  # the first processed frame's pose is not finite
    none = tr.evaluate_sequence(_result(seq, processed=np.zeros(N, bool)), seq, model)
    assert np.isnan(none["add_acc"]) and np.isnan(none["obj_f5"])
    s = tr.summarize([ev, none])
    assert s["adds_acc_mean"] == pytest.approx(3 / 5) and s["success_rate"] == 0.0
    # Medians over processed frames only (frames 5, 7, 9: exact), not the interpolated 4 mm.
    assert s["trans_err_mm_median"] == pytest.approx(0.0, abs=1e-3)
    # ... and the mean of the sequences' interpolated means: 4 mm here, 0 in `none`.
    assert s["trans_err_mm_interpolated_mean"] == pytest.approx(2.0, rel=1e-3)


def test_summary_and_agile_table(model):
    seq = _sequence(model, trimesh.creation.icosphere(subdivisions=1, radius=0.04))
    good = tr.evaluate_sequence(_result(seq), seq, model)
    T = np.asarray(seq.gt.T_cam_obj).copy()
    T[:, 2, 3] += 0.05  # 5 cm off in depth: every frame misses
    bad = tr.evaluate_sequence(_result(seq, T=T, scale=(1.1, 1.1, 1.1)), seq, model)
    s = tr.summarize([good, bad])
    assert s["success_rate"] == 0.5 and s["add_acc_mean"] == pytest.approx(0.5)
    assert s["obj_scale_err_pct_mean"] == pytest.approx(5.0, rel=1e-4)
    # An evaluation read back from an older metrics.json lacks the new numbers: NaN, skipped.
    old = {k: v for k, v in good.items() if k not in tr.PER_SEQUENCE_METRICS}
    old["mean"] = {k: v for k, v in good["mean"].items() if k != "add_mm"}
    assert tr.summarize([old, bad])["add_acc_mean"] == bad["add_acc"]
    rows = {"good": tr.sequence_row(good), "bad": tr.sequence_row(bad)}
    table = tr.agile_table(rows, s).splitlines()
    assert [h for h, _, _ in tr.AGILE_COLUMNS] == [c.strip() for c in table[0].split("|")[2:-1]]
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in table[2:]}
    col = {k: i for i, (_, k, _) in enumerate(tr.AGILE_COLUMNS)}
    assert cells["good"][col["success"]] == "100.0" and cells["bad"][col["success"]] == "0.0"
    assert cells["**mean**"][col["success"]] == "50.0"
    assert cells["good"][col["obj_f5"]] == "100.0"
    assert float(cells["**mean**"][col["mpjpe_mm"]]) == pytest.approx(
        s["mpjpe_mm_mean"], abs=0.051)
    assert cells["bad"][col["add_acc"]] == "0.0"
