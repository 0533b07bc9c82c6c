"""Benchmark v2: its distribution and splits, and each of its controls doing what it says
(contact grasps without penetration, motion at the asked peak speed, in-hand sliding, an
occluder hiding the asked fraction, mask/depth/keypoint/feature damage)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from hoijax import data, sdf
from hoijax.cli.main import main
from hoijax.data import _synthetic as syn

# One size and one object for the generated sequences, so the generator compiles once.
BASE = data.SyntheticConfig(seed=11, num_frames=10, image_size=(64, 64), object_kind="torus",
                            grasp="contact", feature_stride=8, occlusion="light",
                            motion_rot_deg_per_s=90.0, motion_trans_m_per_s=0.3, speed=1.5)


@pytest.fixture(scope="module")
def plain():
    return data.generate_sequence(BASE)


@pytest.fixture(scope="module")
def damaged():
    return data.generate_sequence(dataclasses.replace(
        BASE, keypoint_outliers=0.3, mask_damage=1.0, feature_correlation=0.7))


def test_v2_configs_cover_the_distribution_with_disjoint_splits():
    dev = data.benchmark_v2_configs(32, "dev", frames=10)
    held = data.benchmark_v2_configs(32, "heldout", frames=10)
    assert dev == data.benchmark_v2_configs(32, "dev", frames=10)  # a function of the seed
    assert not {c.seed for c in dev} & {c.seed for c in held}
    assert [c.seed for c in held] == [data.HELDOUT_SEED + i for i in range(32)]
    for cfgs in (dev, held):
        assert {c.object_kind for c in cfgs} == set(data.ALL_OBJECT_KINDS)
        assert {c.image_size for c in cfgs} == {(128, 128), (256, 256)}
        assert {c.occlusion for c in cfgs} == {"light", "medium", "heavy"}
        fast = [c for c in cfgs if c.motion_rot_deg_per_s >= 45]
        assert len(fast) == 16 and max(c.motion_rot_deg_per_s for c in fast) <= 90
        assert max(c.motion_trans_m_per_s for c in cfgs) <= 0.5
        assert sum(c.occluder > 0 for c in cfgs) >= 10 and sum(c.slide_m > 0 for c in cfgs) == 8
        assert all(0.3 <= c.distance_m <= 1.0 and c.grasp == "contact" for c in cfgs)
        assert all(0.6 <= c.feature_correlation <= 0.95 for c in cfgs)
    with pytest.raises(ValueError, match="split"):
        data.benchmark_v2_configs(2, "test")
    mesh = data.make_object_trimesh("can")
    with_mesh = data.benchmark_v2_configs(4, "dev", meshes=[mesh])
    assert [c.object_mesh is mesh for c in with_mesh] == [True, False, True, False]


@pytest.mark.parametrize("kind", data.EXTRA_OBJECT_KINDS)
def test_new_objects_are_watertight_metric_and_small(kind):
    m = data.make_object_trimesh(kind, seed=2)
    assert m.is_watertight and len(m.faces) < 4096
    assert 0.015 < m.extents.max() < 0.25 and np.all(np.diff(m.extents) <= 1e-9)


def test_contact_grasp_touches_without_penetrating(plain):
    v = np.asarray(plain.mesh.vertices, np.float64)
    f = np.asarray(plain.mesh.faces)
    onset = int(plain.gt.onset_frame)
    T = np.asarray(plain.gt.T_cam_obj[onset], np.float64)
    hand = (np.asarray(plain.gt.verts_cam[onset], np.float64) - T[:3, 3]) @ T[:3, :3]
    d = np.asarray(sdf.signed_distance_exact(v, f, hand))
    assert d.min() > -0.003  # the search's 2 mm on a 40³ grid, checked exactly
    assert (d < 0.005).sum() >= 20  # palm and fingers on the surface


def test_motion_reaches_the_asked_peak_speeds(plain):
    onset = int(plain.gt.onset_frame)
    m = data.motion_summary(np.asarray(plain.gt.T_cam_obj), onset, fps=30.0)
    assert m["peak_rot_deg_per_s"] == pytest.approx(90.0, rel=0.03)
    assert 0.0 < m["peak_trans_m_per_s"] <= 0.3 * 1.001  # reduced only to stay in view
    c = np.asarray(plain.gt.T_cam_obj)[:, :3, 3]
    assert np.all(np.abs(c[:, :2] / c[:, 2:]) <= 0.35 / BASE.focal_factor + 1e-6)
    assert data.motion_summary(np.asarray(plain.gt.T_cam_obj)[:1], 0)["peak_rot_deg_per_s"] == 0


def test_in_hand_slide_moves_the_hand_along_the_object(plain):
    slid = data.generate_sequence(dataclasses.replace(BASE, slide_m=0.015))

    def wrist_in_object(seq):
        T = np.asarray(seq.gt.T_cam_obj, np.float64)
        j = np.asarray(seq.gt.joints_cam[:, 0], np.float64)
        return np.einsum("nji,nj->ni", T[:, :3, :3], j - T[:, :3, 3])

    onset = int(plain.gt.onset_frame)
    still, moved = wrist_in_object(plain), wrist_in_object(slid)
    assert np.abs(still[onset:] - still[onset]).max() < 2e-5  # a rigid grasp
    assert np.linalg.norm(moved[-1] - moved[onset]) == pytest.approx(0.015, abs=2e-4)
    np.testing.assert_allclose(np.asarray(slid.gt.T_cam_obj), np.asarray(plain.gt.T_cam_obj))


def test_damage_leaves_geometry_and_hits_what_it_names(plain, damaged):
    np.testing.assert_array_equal(np.asarray(plain.gt.verts_cam), np.asarray(damaged.gt.verts_cam))
    np.testing.assert_array_equal(np.asarray(plain.hand_mask), np.asarray(damaged.hand_mask))
    # Keypoints: about 30 % of the detected ones are confident outliers.
    det = np.asarray(plain.keypoints_conf) > 0
    moved = np.linalg.norm(np.asarray(damaged.keypoints_px) - np.asarray(plain.keypoints_px),
                           axis=-1) > 1e-3
    assert moved[det].mean() == pytest.approx(0.3, abs=0.06)
    assert np.all(np.asarray(damaged.keypoints_conf)[moved] >= 0.7)
    # Masks: every non-empty frame changed, none destroyed.
    a, b = np.asarray(plain.object_mask), np.asarray(damaged.object_mask)
    inter, union = (a & b).sum((1, 2)), (a | b).sum((1, 2))
    seen = a.sum((1, 2)) > 20
    iou = inter[seen] / union[seen]
    assert np.mean(iou < 1) > 0.5 and np.median(iou) > 0.3
    # Features on the object differ, the background is the same.
    fa, fb = np.asarray(plain.features), np.asarray(damaged.features)
    small = a.reshape(len(a), 8, 8, 8, 8).any((2, 4))
    assert np.abs(fa - fb)[small].max() > 0.1
    np.testing.assert_allclose(fa[~small], fb[~small], atol=1e-5)


def test_mask_damage_erodes_dilates_punches_and_adds_blobs():
    yy, xx = np.mgrid[:64, :64]
    masks = np.stack([(yy - 32) ** 2 + (xx - 30 - t) ** 2 < 144 for t in range(40)])
    np.testing.assert_array_equal(syn._damage_masks(masks, 0.0, np.random.default_rng(0)), masks)
    out = syn._damage_masks(masks, 1.0, np.random.default_rng(0))
    blobs = [ndimage.label(m)[1] for m in out]
    holes = [ndimage.binary_fill_holes(m).sum() - m.sum() for m in out]
    grown = (out & ~masks).sum((1, 2))
    assert max(blobs) >= 2 and max(holes) > 0 and grown.max() > 0
    assert (masks & ~out).sum((1, 2)).max() > 0


def test_occluder_hides_the_asked_fraction_and_stays_still():
    yy, xx = np.mgrid[:64, :64]
    obj = np.stack([(yy - 32) ** 2 + (xx - 20 - t) ** 2 < 100 for t in range(30)])
    occ = syn._occluder_mask(obj, 5, 0.4, np.random.default_rng(1))
    assert occ.shape == (64, 64)
    hidden = (obj[5:] & occ).sum((1, 2)) / obj[5:].sum((1, 2))
    assert np.median(hidden) == pytest.approx(0.4, abs=0.03)


def test_heavy_occlusion_with_an_occluder_hides_most_of_the_object():
    seq = data.generate_sequence(dataclasses.replace(BASE, occluder=0.5, occlusion="medium"))
    ref = data.generate_sequence(dataclasses.replace(BASE, occlusion="medium"))
    onset = int(seq.gt.onset_frame)
    before = np.asarray(ref.gt.occlusion_ratio)[onset:].mean()
    after = np.asarray(seq.gt.occlusion_ratio)[onset:].mean()
    assert after > before + 0.2  # the occluder's share is in the ground-truth ratio
    assert (np.asarray(seq.object_mask).sum() < 0.7 * np.asarray(ref.object_mask).sum())


def test_sensor_depth_noise_quantisation_and_holes():
    rng = np.random.default_rng(0)
    depth = np.zeros((2, 64, 64))
    depth[0], depth[1] = 0.5, 1.0
    out = syn._sensor_depth(depth, 0.002, rng)
    s0, s1 = (np.std(out[i] - depth[i]) for i in (0, 1))
    assert s0 == pytest.approx(0.002, rel=0.1) and s1 / s0 == pytest.approx(4.0, rel=0.1)
    np.testing.assert_allclose(out * 1000, np.round(out * 1000), atol=1e-6)
    step = np.full((1, 64, 64), 0.5)
    step[:, :, 32:] = 0.8
    lost = syn._sensor_depth(step, 0.0, rng) == 0
    assert lost[:, :, 31:33].mean() == pytest.approx(0.7, abs=0.15)
    assert not lost[:, :, :30].any() and not lost[:, :, 34:].any()
    blobs = syn._blobs((3, 64, 64), 0.1, rng)
    assert blobs.mean((1, 2)) == pytest.approx([0.1] * 3, abs=0.01)


@pytest.mark.parametrize("rho", [0.6, 0.9])
def test_feature_correlation(rho):
    v = np.asarray(data.make_object_trimesh("bottle").vertices)
    f = data.vertex_features(v, 16, seed=4)
    seen = syn._seen_features(f, v, rho, seed=4)
    assert np.mean(np.sum(f * seen, -1)) == pytest.approx(rho, abs=0.1)
    assert syn._seen_features(f, v, 1.0, seed=4) is f
    with pytest.raises(ValueError, match="feature_correlation"):
        syn._seen_features(f, v, 1.5, seed=4)


def test_generate_v2_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "v2"
    assert main(["generate", str(out), "--benchmark", "v2", "--split", "heldout",
                 "--sequences", "1", "--frames", "4", "--image-size", "64"]) == 0
    assert "°/s" in capsys.readouterr().out
    ref = data.benchmark_v2_configs(1, "heldout", frames=4, image_sizes=(64,))
    for i, cfg in enumerate(ref):
        d = out / f"seq_{i:03d}"
        meta = json.loads((d / "manifest.json").read_text())["meta"]
        assert meta["config"]["seed"] == data.HELDOUT_SEED + i
        assert meta["config"]["grasp"] == "contact" and "peak_rot_deg_per_s" in meta["motion"]
        seq = data.load_sequence(d)
        np.testing.assert_allclose(seq.gt.T_cam_obj, data.generate_sequence(cfg).gt.T_cam_obj,
                                   atol=1e-6)
    assert main(["generate", str(tmp_path / "x"), "--benchmark", "v2", "--seed", "3"]) == 2
    assert "--split" in capsys.readouterr().err
