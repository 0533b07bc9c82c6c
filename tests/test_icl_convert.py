"""Converters of egocentric annotations into hoijax.icl's format, on fixture files written here
in each dataset's layout: ARCTIC (raw_seqs/<subject>/<seq>.mano.npy and .egocam.dist.npy,
meta/misc.json) and EgoExo4D (ego_pose hand annotation and camera_pose JSON per take). The
expected camera-frame geometry is computed independently (world MANO posed, then moved by the
extrinsics), not by inverting the converter's formula."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from hoijax import icl, mano
from hoijax.geometry import axis_angle_to_matrix

MODELS = icl.hand_models()
T_FRAMES = 4


def _rot(rng):
    return np.asarray(axis_angle_to_matrix(jnp.asarray(rng.normal(size=3))), np.float64)


def _inputs(frames, rng, texts=False):
    f = len(frames)
    return icl.EgocentricInputs(
        frame_index=np.asarray(frames), coarse=rng.normal(size=(f, 2, 61)).astype(np.float32) * 0.1,
        image_features=rng.normal(size=(f, 4, 8)).astype(np.float32),
        text_embedding=icl.embed_texts([f"frame {i}" for i in frames], 16))


@pytest.fixture(scope="module")
def arctic_root(tmp_path_factory):
    """An ARCTIC-layout folder: one subject, one sequence, both hands, a moving ego camera."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("arctic")
    seq_dir = root / "raw_seqs" / "s01"
    seq_dir.mkdir(parents=True)
    hands = {}
    for side in ("right", "left"):
        hands[side] = {"rot": rng.normal(size=(T_FRAMES, 3)) * 0.8,
                       "pose": rng.normal(size=(T_FRAMES, 45)) * 0.2,  # relative to the mean
                       "trans": rng.normal(size=(T_FRAMES, 3)) * 0.1 + [0.0, 0.0, 0.4],
                       "shape": rng.normal(size=10) * 0.5,
                       "fitting_err": np.full(T_FRAMES, 1e-3)}
    np.save(seq_dir / "box_grab_01.mano.npy", hands, allow_pickle=True)
    cam = {"R_k_cam_np": np.stack([_rot(rng) for _ in range(T_FRAMES)]),
           "T_k_cam_np": rng.normal(size=(T_FRAMES, 3, 1)) * 0.3,
           "intrinsics": np.array([[1400.0, 0, 1400], [0, 1400, 1000], [0, 0, 1]]),
           "dist8": np.zeros(8), "R0": np.eye(3), "T0": np.zeros(3),
           "ego_markers.ref": np.zeros((5, 3)), "ego_markers.label": ["M1"] * 5}
    np.save(seq_dir / "box_grab_01.egocam.dist.npy", cam, allow_pickle=True)
    (root / "meta").mkdir()
    (root / "meta" / "misc.json").write_text(json.dumps(
        {"s01": {"ioi_offset": 2, "gender": "male", "world2cam": [], "intris_mat": []}}))
    return root, hands, cam


def test_arctic_mano_moves_to_the_egocentric_camera(arctic_root):
    root, hands, cam = arctic_root
    seq = icl.read_arctic_sequence(root, "s01", "box_grab_01", MODELS)
    assert seq["gt"].shape == (T_FRAMES, 2, 61) and seq["ioi_offset"] == 2
    for k, side in enumerate(("right", "left")):
        h, model = hands[side], MODELS[k]
        # Independent route: ARCTIC's world MANO (relative pose, flat_hand_mean=False) posed in
        # the world, then x_cam = R x_world + T.
        world = mano.forward_batch(model, jnp.asarray(h["rot"]), jnp.asarray(h["pose"]),
                                   jnp.broadcast_to(jnp.asarray(h["shape"]), (T_FRAMES, 10)),
                                   jnp.asarray(h["trans"]), flat_hand_mean=False).vertices
        expect = (np.einsum("tij,tvj->tvi", cam["R_k_cam_np"], np.asarray(world))
                  + cam["T_k_cam_np"].reshape(T_FRAMES, 1, 3))
        got = np.asarray(icl.hands_forward_batch(MODELS, seq["gt"])[0][:, k])
        np.testing.assert_allclose(got, expect, atol=2e-5)
        # Articulation is stored absolute (MANO's mean pose added), shape unchanged.
        np.testing.assert_allclose(seq["gt"][:, k, 3:48],
                                   h["pose"] + np.asarray(model.hands_mean), atol=1e-5)
    rng = np.random.default_rng(1)
    inputs = _inputs([3, 1], rng)
    data = icl.arctic_to_icl(root, "s01", "box_grab_01", inputs, MODELS)
    np.testing.assert_array_equal(data.gt, seq["gt"][[3, 1]])
    np.testing.assert_array_equal(data.coarse, inputs.coarse)
    assert data.presence.all() and data.has_mano_gt.all() and data.keypoints_valid.all()
    np.testing.assert_allclose(data.keypoints_gt, seq["keypoints"][[3, 1]])
    with pytest.raises(icl.IclDataError, match="frame_index"):
        icl.arctic_to_icl(root, "s01", "box_grab_01", _inputs([T_FRAMES], rng), MODELS)
    with pytest.raises(icl.IclDataError, match="not found"):
        icl.read_arctic_sequence(root, "s02", "box_grab_01", MODELS)


def _egoexo_files(tmp_path, rng):
    """One take: frames 10, 11, 12 annotated; 12 has no ego extrinsics; frame 11's left hand is
    not annotated at all; frame 10's right hand lacks two joints."""
    world = {f: rng.normal(size=(2, 21, 3)) * 0.05 + [0.2, 1.0, 0.3] for f in (10, 11, 12)}
    ann = {}
    for f, pts in world.items():
        a3d = {}
        for s, side in enumerate(("right", "left")):
            if f == 11 and side == "left":
                continue
            for j, name in enumerate(icl.EGOEXO4D_JOINTS):
                if f == 10 and side == "right" and j in (4, 17):
                    continue
                x, y, z = pts[s, j]
                a3d[f"{side}_{name}"] = {"x": x, "y": y, "z": z, "num_views_for_3d": 3}
        ann[str(f)] = [{"annotation3D": a3d, "annotation2D": {"aria01": {}}}]
    extr = {str(f): np.concatenate([_rot(rng), rng.normal(size=(3, 1))], 1).tolist()
            for f in (10, 11)}
    cams = {"gp01": {"camera_intrinsics": np.eye(3).tolist(),
                     "camera_extrinsics": np.eye(3, 4).tolist()},
            "aria01": {"camera_intrinsics": np.eye(3).tolist(), "camera_extrinsics": extr}}
    base = tmp_path / "annotations" / "ego_pose" / "train"
    (base / "hand" / "annotation").mkdir(parents=True)
    (base / "camera_pose").mkdir(parents=True)
    a_path = base / "hand" / "annotation" / "take-uid.json"
    c_path = base / "camera_pose" / "take-uid.json"
    a_path.write_text(json.dumps(ann))
    c_path.write_text(json.dumps(cams))
    return a_path, c_path, world, extr


def test_egoexo4d_keypoints_in_the_ego_camera_with_missing_joints(tmp_path):
    rng = np.random.default_rng(2)
    a_path, c_path, world, extr = _egoexo_files(tmp_path, rng)
    take = icl.read_egoexo4d_take(a_path, c_path)
    np.testing.assert_array_equal(take["frames"], [10, 11])  # 12: no egocentric pose
    for i, f in enumerate((10, 11)):
        e = np.asarray(extr[str(f)])
        expect = world[f] @ e[:, :3].T + e[:, 3]
        ok = take["valid"][i]
        np.testing.assert_allclose(take["keypoints"][i][ok], expect[ok], atol=1e-5)
    assert take["valid"][0, 0].sum() == 19 and not take["valid"][0, 0, [4, 17]].any()
    np.testing.assert_array_equal(take["presence"], [[True, True], [True, False]])
    data = icl.egoexo4d_to_icl(a_path, c_path, _inputs([11, 10], rng))
    assert not data.has_mano_gt.any()
    np.testing.assert_array_equal(data.presence, [[True, False], [True, True]])
    np.testing.assert_array_equal(data.keypoints_valid[1], take["valid"][0])
    with pytest.raises(icl.IclDataError, match="12"):
        icl.egoexo4d_to_icl(a_path, c_path, _inputs([12], rng))
    with pytest.raises(icl.IclDataError, match="no camera"):
        icl.read_egoexo4d_take(a_path, c_path, ego_camera="aria02")
    # Round trip through the .npz format, validity included; older files without it load too.
    path = icl.save_icl_data(tmp_path / "egoexo.npz", data)
    back = icl.load_icl_data(path)
    np.testing.assert_array_equal(back.keypoints_valid, data.keypoints_valid)
    arrays = dict(np.load(path))
    del arrays["keypoints_valid"]
    np.savez(tmp_path / "old.npz", **arrays)
    old = icl.load_icl_data(tmp_path / "old.npz")
    np.testing.assert_array_equal(old.keypoints_valid, icl.all_joints_valid(data.presence))


def test_keypoint_loss_and_metrics_skip_unannotated_joints(tmp_path):
    """EgoExo4D frames supervise through the annotated joints only: garbage at a missing joint
    changes neither the loss nor the metrics."""
    rng = np.random.default_rng(3)
    a_path, c_path, _, _ = _egoexo_files(tmp_path, rng)
    data = icl.egoexo4d_to_icl(a_path, c_path, _inputs([10], rng))
    pn = icl.init_pointnet()
    kp = np.asarray(data.keypoints_gt[0])
    valid = np.asarray(data.keypoints_valid[0])
    junk = kp.copy()
    junk[~valid] = 7.0
    args = (data.coarse[0], data.gt[0], data.presence[0], MODELS, pn)
    a, ta = icl.icl_loss(*args, keypoints_gt=kp, has_mano_gt=False, keypoints_valid=valid)
    b, _ = icl.icl_loss(*args, keypoints_gt=junk, has_mano_gt=False, keypoints_valid=valid)
    c, _ = icl.icl_loss(*args, keypoints_gt=junk, has_mano_gt=False)
    assert float(ta["keypoint_l1"]) > 0 and float(a) == pytest.approx(float(b), rel=1e-6)
    assert float(c) > float(a) + 0.1
    m1 = icl.keypoint_metrics_arrays(data.coarse, kp[None], valid[None], data.presence, MODELS)
    m2 = icl.keypoint_metrics_arrays(data.coarse, junk[None], valid[None], data.presence, MODELS)
    np.testing.assert_allclose(m1["mpjpe_mm"], m2["mpjpe_mm"])


def test_inputs_file_with_precomputed_or_hashed_text(tmp_path):
    rng = np.random.default_rng(4)
    base = {"frame_index": np.array([0, 1]), "coarse": np.zeros((2, 2, 61), np.float32),
            "image_features": rng.normal(size=(2, 3, 5)).astype(np.float32)}
    np.savez(tmp_path / "a.npz", **base, text_embedding=np.ones((2, 7), np.float32))
    a = icl.load_egocentric_inputs(tmp_path / "a.npz")
    assert a.text_embedding.shape == (2, 7)  # any encoder's width
    np.savez(tmp_path / "b.npz", **base)
    b = icl.load_egocentric_inputs(tmp_path / "b.npz", texts=["left hand", "both hands"],
                                   text_dim=16)
    np.testing.assert_allclose(b.text_embedding[0], icl.hashed_text_embedding("left hand", 16))
    with pytest.raises(icl.IclDataError, match="text"):
        icl.load_egocentric_inputs(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", **{**base, "coarse": np.zeros((3, 2, 61))})
    with pytest.raises(icl.IclDataError, match="coarse"):
        icl.load_egocentric_inputs(tmp_path / "c.npz", texts=["a", "b"])
