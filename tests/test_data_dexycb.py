"""DexYCB converter: fixture files in the public layout whose hand is computed independently with
smplx in manopth's convention (PCA-45, flat_hand_mean=False), converted and compared."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from hoijax import mano
from hoijax.data import _dexycb
from hoijax.data._errors import SequenceFormatError

H, W = 40, 56
SEQ = "20200709-weiy/20200709_141754"
SERIAL = "836212060125"
MANOPTH_TIPS = [745, 317, 444, 556, 673]


def _manopth_reference(mano_dir, pose_m, betas):
    """manopth's ManoLayer(flat_hand_mean=False, ncomps=45, use_pca=True) in metres, via smplx's
    identical PCA convention: vertices and 21 keypoints (manopth tips, OpenPose order)."""
    import smplx
    import torch

    # smplx silently turns PCA off at num_pca_comps=45 (then hand_pose is axis-angle), so the
    # coefficients go through smplx's own copy of the components; smplx adds hands_mean.
    layer = smplx.MANO(str(mano_dir), is_rhand=True, use_pca=True, num_pca_comps=45,
                       flat_hand_mean=False, dtype=torch.float64)
    assert not layer.use_pca
    t = lambda x: torch.as_tensor(np.asarray(x, np.float64)[None])  # noqa: E731
    articulation = np.asarray(pose_m[3:48], np.float64) @ np.asarray(layer.np_hand_components)
    out = layer(global_orient=t(pose_m[:3]), hand_pose=t(articulation), betas=t(betas),
                transl=t(pose_m[48:51]))
    v, j = out.vertices[0].detach().numpy(), out.joints[0].detach().numpy()[:16]
    return v, np.concatenate([j, v[MANOPTH_TIPS]])[np.array(mano.OPENPOSE_FROM_MANO)]


@pytest.fixture(scope="module")
def dexycb(tmp_path_factory, synthetic_mano_dir):
    root = tmp_path_factory.mktemp("dexycb")
    seq = root / SEQ
    cam = seq / SERIAL
    cam.mkdir(parents=True)
    (seq / "meta.yml").write_text(
        "ycb_ids: [2, 14]\nycb_grasp_ind: 1\nmano_sides: [right]\n"
        "mano_calib: [20200709-weiy]\nnum_frames: 4\n")
    calib = root / "calibration"
    (calib / "intrinsics").mkdir(parents=True)
    (calib / "intrinsics" / f"{SERIAL}_640x480.yml").write_text(
        "color: {fx: 60.5, fy: 61.0, ppx: 27.3, ppy: 19.8}\n"
        "depth: {fx: 1.0, fy: 1.0, ppx: 0.0, ppy: 0.0}\n")
    (calib / "mano_20200709-weiy").mkdir()
    rng = np.random.default_rng(0)
    betas = rng.normal(size=10) * 0.5
    (calib / "mano_20200709-weiy" / "mano.yml").write_text(
        "betas: [" + ", ".join(f"{b:.17g}" for b in betas) + "]\n")
    (root / "models" / "025_mug").mkdir(parents=True)
    (root / "models" / "025_mug" / "textured_simple.obj").write_text(
        "v 0 0 0\nv 0.05 0 0\nv 0 0.05 0\nv 0 0 0.05\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")
    frames = {}
    for f in range(4):
        pose_m = np.concatenate([Rotation.random(random_state=rng).as_rotvec() * 0.4,
                                 rng.normal(size=45) * 0.5, [0.02 * f, -0.01, 0.45]])
        if f == 0:
            pose_m[:] = 0.0  # no hand annotation: dropped
        pose_y = np.zeros((2, 3, 4), np.float32)
        for o in range(2):
            pose_y[o, :, :3] = Rotation.random(random_state=rng).as_matrix()
            pose_y[o, :, 3] = [0.01 * o, 0.02, 0.5 + 0.01 * f]
        verts, joint_3d = _manopth_reference(synthetic_mano_dir, pose_m, betas)
        seg = np.zeros((H, W), np.uint8)
        seg[5:15, 5:20] = 255
        seg[20:30, 30:50] = 14
        seg[30:35, 0:10] = 2  # the other object
        np.savez(cam / f"labels_{f:06d}.npz", seg=seg, pose_y=pose_y,
                 pose_m=pose_m[None].astype(np.float32),
                 joint_3d=(joint_3d[None] if f else -np.ones((1, 21, 3))).astype(np.float32),
                 joint_2d=np.zeros((1, 21, 2), np.float32))
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(
            cam / f"color_{f:06d}.jpg", quality=95)
        depth_mm = rng.integers(300, 1200, (H, W)).astype(np.uint16)
        Image.fromarray(depth_mm).save(cam / f"aligned_depth_to_color_{f:06d}.png")
        frames[f] = {"pose_m": pose_m.astype(np.float32).astype(np.float64), "pose_y": pose_y,
                     "depth_mm": depth_mm}
    return {"root": root, "cam": cam, "frames": frames, "betas": betas,
            "mano_dir": synthetic_mano_dir}


def test_conversion_matches_manopth_convention(dexycb):
    conv = _dexycb.load_dexycb(dexycb["root"], SEQ, SERIAL, dexycb["mano_dir"],
                               oracle="keypoints,hand,masks")
    seq = conv.sequence
    assert conv.meta["masks"] == "dataset segmentation (oracle)"
    assert conv.meta["oracle"] == ["hand", "keypoints", "masks"]
    assert conv.frame_ids == ["000001", "000002", "000003"] and conv.meta["object"] == "025_mug"
    np.testing.assert_allclose(np.asarray(seq.K),
                               [[60.5, 0, 27.3], [0, 61.0, 19.8], [0, 0, 1]], atol=1e-6)
    model = mano.load_mano(dexycb["mano_dir"] / "MANO_RIGHT.pkl")
    for n, f in enumerate((1, 2, 3)):
        fr = dexycb["frames"][f]
        verts, kp_manopth = _manopth_reference(dexycb["mano_dir"], fr["pose_m"], dexycb["betas"])
        np.testing.assert_allclose(np.asarray(seq.gt.verts_cam[n]), verts, atol=2e-6)
        # Our keypoints use smplx's fingertips; joints 0..15 agree with manopth's.
        kp = np.asarray(seq.gt.joints_cam[n])
        tips = np.array([4, 8, 12, 16, 20])
        np.testing.assert_allclose(np.delete(kp, tips, 0), np.delete(kp_manopth, tips, 0),
                                   atol=2e-6)
        np.testing.assert_allclose(kp[tips], verts[[744, 320, 443, 554, 671]], atol=2e-6)
        # Absolute articulation = PCA coefficients @ components + hands_mean.
        absolute = fr["pose_m"][3:48] @ np.asarray(model.hands_components, np.float64) \
            + np.asarray(model.hands_mean, np.float64)
        np.testing.assert_allclose(np.asarray(seq.gt.hand.hand_pose[n]), absolute, atol=2e-6)
        np.testing.assert_allclose(np.asarray(seq.gt.hand.transl[n]), fr["pose_m"][48:], atol=1e-7)
        np.testing.assert_allclose(np.asarray(seq.gt.T_cam_obj[n, :3]), fr["pose_y"][1], atol=1e-7)
        np.testing.assert_allclose(np.asarray(seq.depth_m[n]), fr["depth_mm"] / 1000.0, rtol=1e-6)
    assert np.asarray(seq.hand_mask).sum() == 3 * 150
    assert np.asarray(seq.object_mask).sum() == 3 * 200  # id 14 only, not the other object
    assert seq.rgb.shape == (3, H, W, 3)


def test_save_load_round_trip(dexycb, tmp_path):
    fmt = pytest.importorskip("hoijax.data._format")
    conv = _dexycb.convert_dexycb(dexycb["root"], SEQ, SERIAL, dexycb["mano_dir"],
                                  tmp_path / "out", frames=[2, 3], oracle="keypoints,hand,masks")
    back = fmt.load_sequence(tmp_path / "out")
    seq = conv.sequence
    for name in ("K", "hand_mask", "object_mask", "keypoints_px", "rgb", "depth_m"):
        np.testing.assert_array_equal(np.asarray(getattr(back, name)),
                                      np.asarray(getattr(seq, name)))
    for name in ("verts_cam", "joints_cam", "T_cam_obj"):
        np.testing.assert_allclose(np.asarray(getattr(back.gt, name)),
                                   np.asarray(getattr(seq.gt, name)), atol=1e-7)
    np.testing.assert_allclose(np.asarray(back.gt.hand.hand_pose),
                               np.asarray(seq.gt.hand.hand_pose))


def test_pca_convention_error_is_caught_by_joint_3d(dexycb, tmp_path):
    """Treating pose_m's 45 values as axis-angle (or dropping hands_mean) moves the joints by
    centimetres; the joint_3d check names the label file and field."""
    bad = _dexycb.manopth_to_absolute
    model = mano.load_mano(dexycb["mano_dir"] / "MANO_RIGHT.pkl")
    ok = bad(model, dexycb["frames"][1]["pose_m"][None])["hand_pose"]
    assert np.abs(ok - dexycb["frames"][1]["pose_m"][3:48]).max() > 0.1
    lab = dict(np.load(dexycb["cam"] / "labels_000002.npz"))
    lab["joint_3d"] = lab["joint_3d"] + np.float32(0.02)
    root = tmp_path / "copy"
    import shutil

    shutil.copytree(dexycb["root"], root)
    np.savez(root / SEQ / SERIAL / "labels_000002.npz", **lab)
    with pytest.raises(SequenceFormatError, match=r"labels_000002\.npz.*'joint_3d'"):
        _dexycb.load_dexycb(root, SEQ, SERIAL, dexycb["mano_dir"], frames=[1, 2],
                            load_rgb=False, load_depth=False, oracle="keypoints,hand,masks")


@pytest.mark.parametrize("edit, field", [
    (lambda lab: lab.pop("pose_m"), "pose_m"),
    (lambda lab: lab.update(pose_m=np.zeros((1, 48))), "pose_m"),
    (lambda lab: lab.update(pose_y=np.zeros((3, 3, 4))), "pose_y"),
])
def test_bad_label_names_file_and_field(tmp_path, edit, field):
    lab = {"pose_m": np.zeros((1, 51)), "pose_y": np.zeros((2, 3, 4)),
           "joint_3d": np.zeros((1, 21, 3)), "seg": np.zeros((4, 4), np.uint8)}
    edit(lab)
    np.savez(tmp_path / "labels_000009.npz", **lab)
    with pytest.raises(SequenceFormatError, match=rf"labels_000009\.npz.*'{field}'") as e:
        _dexycb.read_dexycb_label(tmp_path / "labels_000009.npz", 2)
    assert e.value.field == field


def test_bad_meta_and_intrinsics_name_file_and_key(dexycb, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(dexycb["root"], root)
    (root / SEQ / "meta.yml").write_text("ycb_ids: [2, 14]\nmano_sides: [right]\n")
    with pytest.raises(SequenceFormatError, match=r"meta\.yml.*'ycb_grasp_ind'.*missing"):
        _dexycb.load_dexycb(root, SEQ, SERIAL, dexycb["mano_dir"], oracle="all")
    path = tmp_path / "intr.yml"
    path.write_text("color: {fx: 1.0, fy: 1.0, ppx: 0.5}\n")
    with pytest.raises(SequenceFormatError, match=r"intr\.yml.*'ppy'"):
        _dexycb.read_intrinsics(path)


def test_inputs_come_from_files_unless_oracle(dexycb, tmp_path):
    """No ground truth by default: missing files are errors naming the camera folder; given
    files (masks as an npz, detections with WiLoR-style rotation matrices and a hand_pose
    relative to the mean) replace the annotation; oracle "pose" gives the true pose."""
    with pytest.raises(SequenceFormatError, match=rf"{SERIAL}.*'keypoints_px'.*oracle="):
        _dexycb.load_dexycb(dexycb["root"], SEQ, SERIAL, dexycb["mano_dir"])
    rng = np.random.default_rng(5)
    model = mano.load_mano(dexycb["mano_dir"] / "MANO_RIGHT.pkl")
    rel = rng.normal(size=(3, 45)) * 0.2
    go = Rotation.random(3, random_state=rng)
    np.savez(tmp_path / "det.npz", keypoints_px=rng.uniform(0, 40, (3, 21, 2)),
             keypoints_conf=np.ones((3, 21)), betas=np.zeros((3, 10)),
             hand_pose=Rotation.from_rotvec(rel.reshape(-1, 3)).as_matrix().reshape(3, 15, 3, 3),
             global_orient=go.as_matrix()[:, None], transl=np.full((3, 3), 0.1),
             flat_hand_mean=np.array(False))
    hand = rng.uniform(size=(3, H, W)) > 0.5
    np.savez(tmp_path / "masks.npz", hand_mask=hand.astype(np.uint8),
             object_mask=np.ones((3, H, W), bool))
    conv = _dexycb.load_dexycb(dexycb["root"], SEQ, SERIAL, dexycb["mano_dir"],
                               detections=tmp_path / "det.npz", masks=tmp_path / "masks.npz",
                               oracle="pose", init_frame=2, load_rgb=False)
    seq, meta = conv.sequence, conv.meta
    assert meta["oracle"] == ["pose"] and meta["init_pose"] == "ground truth at frame 2 (oracle)"
    np.testing.assert_array_equal(np.asarray(seq.hand_mask), hand)
    np.testing.assert_allclose(np.asarray(seq.hand_init.hand_pose),
                               rel + np.asarray(model.hands_mean), atol=1e-5)
    np.testing.assert_allclose(np.asarray(seq.hand_init.global_orient), go.as_rotvec(),
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(seq.T_cam_obj_init[:3]), dexycb["frames"][3]["pose_y"][1],
                               atol=1e-7)
    assert int(seq.init_frame) == 2


# ------------------------------------------------------------------- TIGeR examples (crops)

CROP = 48
TETRA = np.array([[0, 0, 0], [0.05, 0, 0], [0, 0.05, 0], [0, 0, 0.05]])


def test_tiger_examples_from_dexycb(dexycb):
    """Crops centred on the object with K shifted by the window's corner, pixels copied from
    the image, the visible mask from ``seg``, the amodal mask against the projected
    tetrahedron's convex hull, ground-truth points on the posed model's surface."""
    from scipy.spatial import ConvexHull

    from hoijax import tiger

    data = tiger.load_dexycb_tiger(dexycb["root"], SEQ, SERIAL, dexycb["mano_dir"],
                                   crop_px=CROP, num_points=64)
    tiger.validate_tiger_data(data)
    assert data.num_examples == 3 and data.crop_px == CROP
    conv = _dexycb.load_dexycb(dexycb["root"], SEQ, SERIAL, dexycb["mano_dir"],
                               oracle="keypoints,hand,masks", load_depth=False)
    K = np.asarray(conv.sequence.K, np.float64)
    yy, xx = np.mgrid[0:CROP, 0:CROP]
    for n, f in enumerate((1, 2, 3)):
        Kc = data.K[n].astype(np.float64)
        x0, y0 = K[0, 2] - Kc[0, 2], K[1, 2] - Kc[1, 2]
        assert x0 == round(x0) and y0 == round(y0)
        np.testing.assert_allclose(Kc[[0, 1], [0, 1]], K[[0, 1], [0, 1]])
        x0, y0 = int(round(x0)), int(round(y0))
        c = data.center_cam[n].astype(np.float64)
        uv = Kc[:2, :2] @ (c[:2] / c[2]) + Kc[:2, 2]
        assert np.abs(uv - CROP / 2).max() <= 0.5 + 1e-4  # centred on the object
        img = np.asarray(Image.open(dexycb["cam"] / f"color_{f:06d}.jpg").convert("RGB"))
        seg = np.load(dexycb["cam"] / f"labels_{f:06d}.npz")["seg"]
        inside = (yy + y0 >= 0) & (yy + y0 < H) & (xx + x0 >= 0) & (xx + x0 < W)
        assert inside.any() and not inside.all()  # 48 rows: the window leaves the 40-row image
        sy, sx = (yy + y0)[inside], (xx + x0)[inside]
        np.testing.assert_array_equal(data.rgb[n][inside], img[sy, sx])
        assert not data.rgb[n][~inside].any() and not data.visible_mask[n][~inside].any()
        np.testing.assert_array_equal(data.visible_mask[n][inside], seg[sy, sx] == 14)
        # Ground-truth points: centred, and on the tetrahedron's surface in the object frame.
        pose = dexycb["frames"][f]["pose_y"][1].astype(np.float64)
        np.testing.assert_allclose(data.points_obj[n].mean(0), 0.0, atol=1e-6)
        local = (data.points_obj[n] + c - pose[:, 3]) @ pose[:, :3]
        slack = np.stack([local[:, 0], local[:, 1], local[:, 2], 0.05 - local.sum(1)], 1)
        assert slack.min() > -1e-5 and np.abs(slack.min(1)).max() < 1e-5
        # Amodal mask: pixel centres (integer coordinates) inside the projected hull.
        cam = TETRA @ pose[:, :3].T + pose[:, 3]
        proj = cam[:, :2] / cam[:, 2:] * Kc[[0, 1], [0, 1]] + Kc[:2, 2]
        eq = ConvexHull(proj).equations
        d = (np.stack([xx, yy], -1).reshape(-1, 2) @ eq[:, :2].T + eq[:, 2]).max(1)
        far = np.abs(d) > 1e-3
        np.testing.assert_array_equal(data.amodal_mask[n].reshape(-1)[far], d[far] < 0)
        assert data.amodal_mask[n].sum() >= 5
        np.testing.assert_allclose(data.hand_joints[n], np.asarray(conv.sequence.gt.joints_cam[n]),
                                   atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(data.prior_obj, axis=-1), 0.05, rtol=1e-5)
    assert (data.prior_source == tiger.PRIOR_SOURCES.index("sphere")).all()


def test_tiger_prior_folder_and_batch_with_a_bad_sequence(dexycb, tmp_path):
    """A folder prior is found by the YCB model's name, sampled and centred; a folder without
    it names the object; in a batch the bad camera is reported and the rest is written."""
    import trimesh

    from hoijax import tiger

    (tmp_path / "priors").mkdir()
    box = trimesh.creation.box(extents=(0.04, 0.06, 0.08))
    box.apply_translation((0.3, 0.0, 0.0))
    box.export(tmp_path / "priors" / "025_mug.ply")
    from hoijax.cli.main import main

    with pytest.warns(UserWarning, match=rf"{SEQ} / 000000.*skipped"):
        code = main(["tiger-data", "--dataset", "dexycb", "--root", str(dexycb["root"]),
                     "--sequence", f"{SEQ}:{SERIAL}", f"{SEQ}:000000",
                     "--out", str(tmp_path / "out.npz"),
                     "--mano-dir", str(dexycb["mano_dir"]), "--prior", str(tmp_path / "priors"),
                     "--crop-px", str(CROP), "--num-points", "64"])
    assert code == 0
    back = tiger.load_tiger_data(tmp_path / "out.npz")
    assert back.num_examples == 3
    direct = tiger.load_dexycb_tiger(dexycb["root"], SEQ, SERIAL, dexycb["mano_dir"],
                                     prior=tmp_path / "priors", crop_px=CROP, num_points=64)
    for name in ("prior_obj", "points_obj", "rgb", "amodal_mask", "visible_mask", "K"):
        np.testing.assert_array_equal(getattr(back, name), getattr(direct, name))
    assert (back.prior_source == -1).all()
    p = back.prior_obj[0].astype(np.float64)
    np.testing.assert_allclose(p.mean(0), 0.0, atol=1e-6)
    # On the box's surface, moved from x = 0.3 m to the origin (the sample's centroid is
    # within a few millimetres of the box's centre).
    ratio = np.abs(p / np.array([0.02, 0.03, 0.04])).max(1)
    np.testing.assert_allclose(ratio, 1.0, atol=0.15)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SequenceFormatError, match=r"empty.*'prior_obj'.*025_mug"):
        tiger.load_dexycb_tiger(dexycb["root"], SEQ, SERIAL, dexycb["mano_dir"],
                                prior=tmp_path / "empty", crop_px=CROP, num_points=64)


def test_tiger_hidden_object_is_kept_and_warned(dexycb, tmp_path):
    """An object absent from ``seg`` in most frames: the frames stay (R_occ = 1, the last
    occlusion bin) with an empty visible mask, and a warning names the sequence and frames."""
    import shutil

    from hoijax import tiger

    root = tmp_path / "copy"
    shutil.copytree(dexycb["root"], root)
    for f in (2, 3):
        lab = dict(np.load(root / SEQ / SERIAL / f"labels_{f:06d}.npz"))
        lab["seg"] = np.where(lab["seg"] == 14, 0, lab["seg"]).astype(np.uint8)
        np.savez(root / SEQ / SERIAL / f"labels_{f:06d}.npz", **lab)
    with pytest.warns(UserWarning, match=rf"{SEQ} / {SERIAL}.*hidden in 2 of 3.*000002, 000003"):
        data = tiger.load_dexycb_tiger(root, SEQ, SERIAL, dexycb["mano_dir"], crop_px=CROP,
                                       num_points=64)
    assert data.num_examples == 3 and data.visible_mask[0].any()
    assert not data.visible_mask[1:].any() and data.amodal_mask[1:].any(axis=(1, 2)).all()
    np.testing.assert_allclose(tiger.occlusion_rate(data)[1:], 1 - 1 / (
        data.amodal_mask[1:].sum((1, 2)) + 1))
