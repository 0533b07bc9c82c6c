"""External models' outputs as the tracker's inputs (hoijax.data._inputs) and the oracle switch
of the dataset converters' shared assemble_sequence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from hoijax import mano
from hoijax.data import (
    ORACLE_INPUTS,
    SparseMaskWarning,
    parse_oracle,
    read_detections,
    read_init_pose,
    read_masks,
)
from hoijax.data._errors import SequenceFormatError
from hoijax.data._ho3d import assemble_sequence
from hoijax.data._inputs import MaskInputs, check_input_sources

N = 7


@pytest.fixture(scope="module")
def model(synthetic_mano_dir):
    return mano.load_mano(synthetic_mano_dir / "MANO_RIGHT.pkl")


def _dets(seed=0, n=N):
    rng = np.random.default_rng(seed)
    return {"keypoints_px": rng.uniform(0, 60, (n, 21, 2)),
            "keypoints_conf": rng.uniform(0.2, 1.0, (n, 21)),
            "betas": rng.normal(size=(n, 10)), "hand_pose": rng.normal(size=(n, 45)) * 0.3,
            "global_orient": Rotation.random(n, random_state=rng).as_rotvec(),
            "transl": rng.normal(size=(n, 3))}


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


# ---------------------------------------------------------------- oracle


def test_parse_oracle():
    assert ORACLE_INPUTS == ("keypoints", "hand", "masks", "pose")
    for empty in (None, "", "none", [], "None"):
        assert parse_oracle(empty) == frozenset()
    assert parse_oracle("keypoints,hand") == {"keypoints", "hand"}
    assert parse_oracle(" Keypoints , pose ") == {"keypoints", "pose"}
    assert parse_oracle(["masks"]) == {"masks"}
    assert parse_oracle(("hand", "hand")) == {"hand"}
    assert parse_oracle("all") == set(ORACLE_INPUTS)
    assert isinstance(parse_oracle("all"), frozenset)
    with pytest.raises(ValueError, match="'gt'.*keypoints, hand, masks, pose"):
        parse_oracle("keypoints,gt")
    with pytest.raises(ValueError, match="mask"):
        parse_oracle(["mask"])


def test_missing_inputs_name_the_switch(tmp_path):
    with pytest.raises(SequenceFormatError, match=r"seq.*'keypoints_px'.*detections=.*"
                                                  r"oracle=\"keypoints\"") as e:
        check_input_sources(tmp_path / "seq", frozenset())
    assert e.value.field == "keypoints_px" and "also missing: hand_init, masks" in str(e.value)
    with pytest.raises(SequenceFormatError, match=r"'hand_init'.*oracle=\"hand\""):
        check_input_sources(tmp_path, frozenset({"keypoints", "masks"}))
    with pytest.raises(SequenceFormatError, match=r"'masks'.*masks=.*oracle=\"masks\""):
        check_input_sources(tmp_path, frozenset({"keypoints", "hand"}))
    check_input_sources(tmp_path, frozenset({"keypoints", "hand", "masks"}))  # pose optional
    check_input_sources(tmp_path, frozenset(), detections="d.npz", masks="m.npz")
    with pytest.raises(ValueError, match="init_pose.*pose"):
        check_input_sources(tmp_path, parse_oracle("all"), init_pose="p.txt")


# ---------------------------------------------------------------- detections


def test_nan_keypoints_and_undetected_frames_hold_nearest_mano(tmp_path):
    d = _dets()
    d["keypoints_px"][2, 4] = np.nan  # one missing joint in a detected frame
    d["keypoints_px"][5, 0, 1] = np.nan
    detected = np.array([False, True, False, True, False, True, True])
    d["transl"][3, 1] = np.nan  # NaN MANO: frame 3 undetected too
    d["betas"][6, 0] = np.nan  # and frame 6
    out = read_detections(_save(tmp_path / "d.npz", detected=detected, **d), N,
                          require_mano=True)
    # Detected frames: 1, 5. Nearest (earlier on a tie): 0←1, 2←1, 3←1 (tie 1/5), 4←5, 6←5.
    np.testing.assert_array_equal(out["detected"], [0, 1, 0, 0, 0, 1, 0])
    source = [1, 1, 1, 1, 5, 5, 5]
    for k in ("betas", "hand_pose", "global_orient", "transl"):
        np.testing.assert_array_equal(out[k], d[k][source], err_msg=k)
    conf = np.where(out["detected"][:, None], d["keypoints_conf"], 0.0)
    conf[5, 0] = 0.0
    np.testing.assert_array_equal(out["keypoints_conf"], conf)
    np.testing.assert_array_equal(out["keypoints_px"][5, 0], [0.0, 0.0])
    np.testing.assert_array_equal(out["keypoints_px"][1], d["keypoints_px"][1])
    assert np.all(out["keypoints_px"][~out["detected"]] == 0)
    assert np.all(np.isfinite(out["keypoints_px"]))
    # NaN keypoint in an otherwise detected frame: that joint only.
    d2 = _dets(1, 3)
    d2["keypoints_px"][1, 4, 0] = np.nan
    out2 = read_detections(_save(tmp_path / "d2.npz", **d2), 3)
    assert out2["keypoints_conf"][1, 4] == 0 and out2["keypoints_conf"][1, 3] > 0
    assert np.all(out2["detected"])


def test_rotation_matrix_forms_equal_axis_angle(tmp_path):
    d = _dets(2, 4)
    d["hand_pose"][3] = np.nan  # undetected frame: not converted, held from frame 2
    ref = read_detections(_save(tmp_path / "aa.npz", **d), 4)
    hp = Rotation.from_rotvec(np.nan_to_num(d["hand_pose"]).reshape(-1, 3)).as_matrix()
    hp = hp.reshape(4, 15, 3, 3)
    hp[3] = np.nan
    go = Rotation.from_rotvec(d["global_orient"]).as_matrix()
    for name, g in (("n133", go[:, None]), ("n33", go)):
        out = read_detections(_save(tmp_path / f"{name}.npz", **{**d, "hand_pose": hp,
                                                                "global_orient": g}), 4)
        for k in ("hand_pose", "global_orient", "betas", "transl"):
            np.testing.assert_allclose(out[k], ref[k], atol=1e-9, err_msg=f"{name} {k}")
    np.testing.assert_array_equal(ref["hand_pose"][3], d["hand_pose"][2])
    bad = hp.copy()
    bad[1, 7] *= 1.1  # scaled: not a rotation
    with pytest.raises(SequenceFormatError, match=r"bad\.npz.*'hand_pose'.*frame 1.*rotation"):
        read_detections(_save(tmp_path / "bad.npz", **{**d, "hand_pose": bad}), 4)


def test_flat_hand_mean_false_adds_hands_mean(tmp_path, model):
    d = _dets(3, 2)
    path = _save(tmp_path / "rel.npz", flat_hand_mean=np.array(False), **d)
    out = read_detections(path, 2, model=model)
    mean = np.asarray(model.hands_mean, np.float64)
    assert np.abs(mean).max() > 0.05  # the check means something
    np.testing.assert_allclose(out["hand_pose"], d["hand_pose"] + mean, atol=1e-7)
    np.testing.assert_array_equal(out["global_orient"], d["global_orient"])
    with pytest.raises(ValueError, match=r"rel\.npz.*flat_hand_mean.*model"):
        read_detections(path, 2)
    out = read_detections(_save(tmp_path / "abs.npz", flat_hand_mean=np.array(True), **d), 2)
    np.testing.assert_array_equal(out["hand_pose"], d["hand_pose"])


@pytest.mark.parametrize("edit, field, what", [
    (lambda d: d.update(keypoints_px=d["keypoints_px"][:, :20]), "keypoints_px", r"shape"),
    (lambda d: d.pop("keypoints_conf"), "keypoints_conf", "missing key"),
    (lambda d: d["keypoints_conf"].__setitem__((4, 2), 1.5), "keypoints_conf",
     r"frame 4, joint 2.*\[0, 1\]"),
    (lambda d: d.update(betas=d["betas"][:, :8]), "betas", r"expected shape \(7, 10\)"),
    (lambda d: d.update(global_orient=np.zeros((N, 4))), "global_orient", "shape"),
    (lambda d: d.pop("transl"), "transl", "missing key"),
    (lambda d: d.update(detected=np.ones(N - 1, bool)), "detected", r"shape"),
    (lambda d: d.update(flat_hand_mean=np.zeros(3, bool)), "flat_hand_mean", "scalar"),
])
def test_bad_detections_name_file_and_field(tmp_path, edit, field, what):
    d = _dets(4)
    edit(d)
    path = _save(tmp_path / "det_17.npz", **d)
    with pytest.raises(SequenceFormatError, match=rf"det_17\.npz.*'{field}'.*{what}") as e:
        read_detections(path, N)
    assert e.value.field == field and e.value.path == path


def test_missing_mano_and_no_detected_frame(tmp_path):
    d = _dets(5, 3)
    kp_only = _save(tmp_path / "kp.npz", keypoints_px=d["keypoints_px"],
                    keypoints_conf=d["keypoints_conf"])
    out = read_detections(kp_only, 3)
    assert "betas" not in out and np.all(out["detected"])
    with pytest.raises(SequenceFormatError, match=r"kp\.npz.*'betas'.*missing.*oracle='hand'"):
        read_detections(kp_only, 3, require_mano=True)
    with pytest.raises(SequenceFormatError, match=r"'hand_pose'.*missing"):  # partial set
        read_detections(_save(tmp_path / "part.npz", keypoints_px=d["keypoints_px"],
                              keypoints_conf=d["keypoints_conf"], betas=d["betas"]), 3)
    d["betas"][0] = np.nan
    with pytest.raises(SequenceFormatError, match=r"none\.npz.*'detected'.*no frame"):
        read_detections(_save(tmp_path / "none.npz", detected=np.array([True, False, False]),
                              **{**d, "transl": np.full((3, 3), np.nan)}), 3)
    with pytest.raises(SequenceFormatError, match=r"nofile\.npz.*'keypoints_px'.*not found"):
        read_detections(tmp_path / "nofile.npz", 3)


# ---------------------------------------------------------------- masks


def test_read_masks_npz_and_png_folder(tmp_path):
    rng = np.random.default_rng(6)
    hand = rng.uniform(size=(3, 8, 10)) > 0.5
    obj = rng.uniform(size=(3, 8, 10)) > 0.5
    out = read_masks(_save(tmp_path / "m.npz", hand_mask=hand.astype(np.uint8) * 3,
                           object_mask=obj), 3, (8, 10))
    assert out.hand_mask.dtype == bool and out.warnings == [] and not out.sparse_object_mask
    np.testing.assert_array_equal(out.hand_mask, hand)
    np.testing.assert_array_equal(out.object_mask, obj)
    folder = tmp_path / "sam2"
    (folder / "hand").mkdir(parents=True)
    (folder / "object").mkdir()
    ids = ["000010", "000011", "000012"]
    for n, stem in enumerate(ids):
        Image.fromarray(hand[n].astype(np.uint8)).save(folder / "hand" / f"{stem}.png")  # 0/1
        rgb = np.zeros((8, 10, 3), np.uint8)
        rgb[obj[n], 1] = 200  # any nonzero channel
        Image.fromarray(rgb).save(folder / "object" / f"{stem}.png")
    out = read_masks(folder, 3, (8, 10), ids)
    np.testing.assert_array_equal(out.hand_mask, hand)
    np.testing.assert_array_equal(out.object_mask, obj)
    (folder / "object" / "000012.png").unlink()
    with pytest.raises(SequenceFormatError, match=r"object/000012\.png.*'object_mask'.*frame 2"):
        read_masks(folder, 3, (8, 10), ids)
    with pytest.raises(SequenceFormatError, match=r"000010\.png.*'hand_mask'.*frame 0.*size"):
        read_masks(folder, 3, (8, 12), ids)
    with pytest.raises(SequenceFormatError, match=r"m2\.npz.*'object_mask'.*\(3, 8, 10\)"):
        read_masks(_save(tmp_path / "m2.npz", hand_mask=hand, object_mask=obj[:2]), 3, (8, 10))
    with pytest.raises(SequenceFormatError, match=r"m3\.npz.*'hand_mask'.*float"):
        read_masks(_save(tmp_path / "m3.npz", hand_mask=hand * 0.5, object_mask=obj), 3, (8, 10))
    with pytest.raises(SequenceFormatError, match=r"m4\.npz.*'object_mask'.*missing"):
        read_masks(_save(tmp_path / "m4.npz", hand_mask=hand), 3, (8, 10))


def test_sparse_object_masks_warn_and_flag(tmp_path):
    hand = np.ones((5, 4, 4), bool)
    obj = np.zeros((5, 4, 4), bool)
    obj[[1, 3], 2, 2] = True  # empty in 3 of 5 frames
    with pytest.warns(SparseMaskWarning, match=r"sparse\.npz.*3 of 5.*frame 0"):
        out = read_masks(_save(tmp_path / "sparse.npz", hand_mask=hand, object_mask=obj), 5,
                         (4, 4))
    assert out.sparse_object_mask and len(out.warnings) == 1 and "3 of 5" in out.warnings[0]
    assert issubclass(SparseMaskWarning, UserWarning)
    obj[0, 0, 0] = True  # empty in 2 of 5: fine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = read_masks(_save(tmp_path / "ok.npz", hand_mask=hand, object_mask=obj), 5, (4, 4))
    assert out.warnings == [] and not out.sparse_object_mask


# ---------------------------------------------------------------- initial pose


def _pose():
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec([0.3, -0.1, 0.7]).as_matrix()
    T[:3, 3] = [0.05, -0.02, 0.55]
    return T


def test_read_init_pose_accepts_txt_and_npy(tmp_path):
    T = _pose()
    np.savetxt(tmp_path / "ob_in_cam.txt", T)
    np.save(tmp_path / "pose.npy", T)
    np.testing.assert_allclose(read_init_pose(tmp_path / "ob_in_cam.txt"), T, atol=1e-12)
    np.testing.assert_array_equal(read_init_pose(tmp_path / "pose.npy"), T)


@pytest.mark.parametrize("edit, what", [
    (lambda T: T[:3], r"4×4.*\(3, 4\)"),
    (lambda T: np.where(np.eye(4) == 1, np.nan, T), "NaN"),
    (lambda T: T @ np.diag([1.0, 1.0, 1.01, 1.0]), "orthonormal"),
    (lambda T: T @ np.diag([1.0, 1.0, -1.0, 1.0]), "determinant"),
    (lambda T: np.vstack([T[:3], [[0.0, 0.0, 0.1, 1.0]]]), "last row"),
])
def test_read_init_pose_rejects(tmp_path, edit, what):
    np.savetxt(tmp_path / "bad_pose.txt", edit(_pose()))
    with pytest.raises(SequenceFormatError, match=rf"bad_pose\.txt.*'T_cam_obj_init'.*{what}"):
        read_init_pose(tmp_path / "bad_pose.txt")


def test_read_init_pose_missing_or_unknown_file(tmp_path):
    with pytest.raises(SequenceFormatError, match=r"nope\.txt.*not found"):
        read_init_pose(tmp_path / "nope.txt")
    (tmp_path / "pose.json").write_text("[]")
    with pytest.raises(SequenceFormatError, match=r"pose\.json.*suffix"):
        read_init_pose(tmp_path / "pose.json")


# ---------------------------------------------------------------- assemble_sequence


@pytest.fixture(scope="module")
def scene(model):
    rng = np.random.default_rng(7)
    n = 4
    gt = {"betas": rng.normal(size=(n, 10)) * 0.3, "hand_pose": rng.normal(size=(n, 45)) * 0.2,
          "global_orient": rng.normal(size=(n, 3)), "transl": np.tile([0.0, 0.0, 0.5], (n, 1))}
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = Rotation.random(n, random_state=rng).as_matrix()
    T[:, :3, 3] = [[0.01 * i, 0.0, 0.6] for i in range(n)]
    masks = MaskInputs(np.zeros((n, 12, 16), bool), np.ones((n, 12, 16), bool), ["note"])
    kw = dict(model=model, K=np.array([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]]),
              image_size=(12, 16), gt_params=gt, T_cam_obj=T,
              obj_verts=np.eye(3) * 0.02, obj_faces=np.array([[0, 1, 2]]), rgb=None,
              depth_m=None, where="SEQ", masks=masks)
    return kw


def test_oracle_pose_and_sources(scene, tmp_path):
    T = scene["T_cam_obj"]
    seq, info = assemble_sequence(**scene, oracle=parse_oracle("keypoints,hand,pose"),
                                  init_frame=2)
    np.testing.assert_allclose(np.asarray(seq.T_cam_obj_init), T[2], atol=1e-7)
    assert int(seq.init_frame) == 2 and info["init_frame"] == 2
    assert info["oracle"] == ["hand", "keypoints", "pose"]
    assert info["init_pose"] == "ground truth at frame 2 (oracle)"
    assert info["masks"] == "masks: given" and info["warnings"] == ["note"]
    np.testing.assert_array_equal(np.asarray(seq.hand_init.betas), np.asarray(seq.gt.hand.betas))
    assert np.all(np.asarray(seq.keypoints_conf) == 1.0)

    # No oracle: everything from the detections; a given pose lands at init_frame.
    d = _dets(8, 4)
    d["betas"][0] = np.nan
    dets = read_detections(_save(tmp_path / "d.npz", **d), 4)
    seq, info = assemble_sequence(**scene, detections=dets, init_pose=_pose(), init_frame=3,
                                  sources={"detections": "d.npz", "init_pose": "p.txt"})
    assert info["oracle"] == [] and info["undetected_frames"] == 1
    assert info["keypoints"] == info["hand_init"] == "detections: d.npz"
    assert info["init_pose"] == "init_pose: p.txt at frame 3"
    assert any("1 of 4 frames without a detection" in w for w in info["warnings"])
    np.testing.assert_allclose(np.asarray(seq.T_cam_obj_init), _pose(), atol=1e-7)
    np.testing.assert_allclose(np.asarray(seq.hand_init.betas),
                               np.stack([d["betas"][1], *d["betas"][1:]]), rtol=1e-6)
    assert np.all(np.asarray(seq.keypoints_conf[0]) == 0)
    np.testing.assert_allclose(np.asarray(seq.keypoints_px[1:]), d["keypoints_px"][1:],
                               rtol=1e-6)
    assert not np.allclose(np.asarray(seq.hand_init.betas), np.asarray(seq.gt.hand.betas))

    # Neither: no initial pose at all.
    seq, info = assemble_sequence(**scene, detections=dets)
    assert seq.T_cam_obj_init is None and seq.init_frame is None and info["init_frame"] is None
    with pytest.raises(SequenceFormatError, match=r"SEQ.*'keypoints_px'.*oracle="):
        assemble_sequence(**scene)
    with pytest.raises(ValueError, match="init_frame 4"):
        assemble_sequence(**scene, detections=dets, oracle={"pose"}, init_frame=4)
