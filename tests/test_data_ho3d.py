"""HO-3D v3 converter: fixture files in the public layout, converted and compared with an
independent smplx evaluation in the OpenGL frame followed by the toolkit's coordChangeMat."""

from __future__ import annotations

import pickle

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from hoijax import mano
from hoijax.data import _ho3d
from hoijax.data._errors import SequenceFormatError

C = np.diag([1.0, -1.0, -1.0])
H, W = 48, 64
K = np.array([[70.0, 0.0, 31.5], [0.0, 70.0, 23.5], [0.0, 0.0, 1.0]])
CUBE_OBJ = """# a 4 cm cube
v -0.02 -0.02 -0.02
v 0.02 -0.02 -0.02
v 0.02 0.02 -0.02
v -0.02 0.02 -0.02
v -0.02 -0.02 0.02
v 0.02 -0.02 0.02
v 0.02 0.02 0.02
v -0.02 0.02 0.02
vt 0 0
f 1/1 3/1 2/1
f 1/1 4/1 3/1
f 5/1 6/1 7/1 8/1
f 1/1 2/1 6/1 5/1
f 2/1 3/1 7/1 6/1
f 3/1 4/1 8/1 7/1
f 4/1 1/1 5/1 8/1
"""


def _meta(rng, i):
    return {
        "handPose": np.concatenate([Rotation.random(random_state=rng).as_rotvec() * 0.5,
                                    rng.normal(size=45) * 0.2]).astype(np.float32),
        "handBeta": (rng.normal(size=10) * 0.5).astype(np.float32),
        "handTrans": np.array([0.01 * i, -0.01, -0.45]),  # OpenGL: in front is −z
        "camMat": K,
        "objRot": Rotation.random(random_state=rng).as_rotvec().reshape(3, 1),
        "objTrans": np.array([0.03, 0.02 - 0.005 * i, -0.5]),
        "objName": "019_pitcher_base",
        "handJoints3D": np.zeros((21, 3)),
    }


def _write_pkl(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.fixture(scope="module")
def ho3d(tmp_path_factory, synthetic_mano_dir):
    root = tmp_path_factory.mktemp("ho3d")
    seq = root / "train" / "SEQ1"
    for d in ("meta", "rgb", "depth", "seg"):
        (seq / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    metas = {}
    for i in range(3):
        fid = f"{i:04d}"
        metas[fid] = _meta(rng, i)
        _write_pkl(seq / "meta" / f"{fid}.pkl", metas[fid])
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(
            seq / "rgb" / f"{fid}.png")
        raw = rng.integers(3000, 9000, (H, W))  # depth units (0.37–1.1 m)
        enc = np.stack([raw % 256, raw // 256, np.zeros_like(raw)], -1).astype(np.uint8)
        Image.fromarray(enc).save(seq / "depth" / f"{fid}.png")
        seg = np.zeros((H // 2, W // 2, 3), np.uint8)  # half resolution, like HO-3D
        seg[2:10, 3:12, 2] = 255  # hand: blue
        seg[12:20, 15:30, 1] = 255  # object: green
        Image.fromarray(seg).save(seq / "seg" / f"{fid}.png")
    # An unannotated frame (HO-3D stores None): skipped by default.
    _write_pkl(seq / "meta" / "0003.pkl", {**_meta(rng, 3), "handPose": None, "objRot": None})
    ycb = root / "ycb"
    (ycb / "models" / "019_pitcher_base").mkdir(parents=True)
    (ycb / "models" / "019_pitcher_base" / "textured_simple.obj").write_text(CUBE_OBJ)
    return {"root": root, "seq": seq, "ycb": ycb, "metas": metas, "mano_dir": synthetic_mano_dir}


def _smplx_gl(mano_dir, meta):
    """Reference: smplx MANO with flat_hand_mean=True in HO-3D's OpenGL frame (float64)."""
    import smplx
    import torch

    layer = smplx.MANO(str(mano_dir), is_rhand=True, use_pca=False, flat_hand_mean=True,
                       dtype=torch.float64)
    t = lambda x: torch.as_tensor(np.asarray(x, np.float64)[None])  # noqa: E731
    out = layer(global_orient=t(meta["handPose"][:3]), hand_pose=t(meta["handPose"][3:]),
                betas=t(meta["handBeta"]), transl=t(meta["handTrans"]))
    return out.vertices[0].detach().numpy(), out.joints[0].detach().numpy()


def test_conversion_reproduces_hand_object_and_images(ho3d):
    conv = _ho3d.load_ho3d(ho3d["root"], "SEQ1", ho3d["ycb"], ho3d["mano_dir"] / "MANO_RIGHT.pkl",
                           oracle="keypoints,hand,masks")
    seq = conv.sequence
    assert conv.meta["oracle"] == ["hand", "keypoints", "masks"]
    assert conv.meta["keypoints"] == "projected ground truth (oracle)"
    assert conv.meta["hand_init"] == "ground truth (oracle)"
    assert seq.T_cam_obj_init is None and conv.meta["init_pose"].startswith("none")
    assert conv.frame_ids == ["0000", "0001", "0002"]  # 0003 has no annotation
    assert seq.image_size == (H, W) and seq.side == "right"
    np.testing.assert_allclose(np.asarray(seq.K), K, atol=1e-6)
    obj_v, _ = _ho3d.read_obj(ho3d["ycb"] / "models" / "019_pitcher_base" / "textured_simple.obj")
    assert obj_v.shape == (8, 3) and seq.mesh.faces.shape == (12, 3)  # quads fan-triangulated
    for n, fid in enumerate(conv.frame_ids):
        m = ho3d["metas"][fid]
        verts_gl, joints_gl = _smplx_gl(ho3d["mano_dir"], m)
        np.testing.assert_allclose(np.asarray(seq.gt.verts_cam[n]), verts_gl @ C.T, atol=2e-6)
        tips = verts_gl[[744, 320, 443, 554, 671]]  # smplx's fingertip vertices
        kp = (np.concatenate([joints_gl, tips]) @ C.T)[np.array(mano.OPENPOSE_FROM_MANO)]
        np.testing.assert_allclose(np.asarray(seq.gt.joints_cam[n]), kp, atol=2e-6)
        # Object: the toolkit's v @ R^T + t in OpenGL, then coordChangeMat.
        R = Rotation.from_rotvec(m["objRot"].ravel()).as_matrix()
        obj_cv = (obj_v @ R.T + m["objTrans"]) @ C.T
        T = np.asarray(seq.gt.T_cam_obj[n], np.float64)
        np.testing.assert_allclose(obj_v @ T[:3, :3].T + T[:3, 3], obj_cv, atol=1e-6)
        # Keypoints: projected ground truth (OpenCV pinhole), confidence 1.
        uv = kp @ K.T
        np.testing.assert_allclose(np.asarray(seq.keypoints_px[n]), uv[:, :2] / uv[:, 2:],
                                   atol=2e-3)
        # The articulation stays absolute; the hand init is the ground truth (oracle).
        np.testing.assert_allclose(np.asarray(seq.gt.hand.hand_pose[n]), m["handPose"][3:],
                                   atol=1e-7)
        np.testing.assert_array_equal(np.asarray(seq.hand_init.hand_pose[n]),
                                      np.asarray(seq.gt.hand.hand_pose[n]))
    assert np.all(np.asarray(seq.keypoints_conf) == 1.0)
    # Images: RGB as stored; depth decoded as (R + 256 G) · scale; seg upsampled ×2.
    rgb0 = np.asarray(Image.open(ho3d["seq"] / "rgb" / "0000.png"))
    np.testing.assert_array_equal(np.asarray(seq.rgb[0]), rgb0)
    enc = np.asarray(Image.open(ho3d["seq"] / "depth" / "0001.png")).astype(np.float64)
    np.testing.assert_allclose(np.asarray(seq.depth_m[1]),
                               (enc[..., 0] + 256 * enc[..., 1]) * 0.00012498664727900177,
                               rtol=1e-6)
    hand_mask = np.asarray(seq.hand_mask[0])
    assert hand_mask.sum() == 4 * 8 * 9 and hand_mask[4:20, 6:24].all()
    assert np.asarray(seq.object_mask[2]).sum() == 4 * 8 * 15
    assert conv.meta["masks"] == "dataset segmentation (oracle)"


def test_opengl_to_opencv_keeps_the_mano_surface(synthetic_mano_dir):
    """transl' = C(J0 + t) − J0 is needed because MANO rotates about J0: the naive C·t is wrong."""
    model = mano.load_mano(synthetic_mano_dir / "MANO_RIGHT.pkl")
    rng = np.random.default_rng(1)
    go, t, b = rng.normal(size=(1, 3)), np.array([[0.02, 0.05, -0.4]]), rng.normal(size=(1, 10))
    go2, t2 = _ho3d.opengl_to_opencv_mano(model, go, t, b)
    pose = rng.normal(size=45) * 0.1
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    fwd = lambda g, tr: np.asarray(mano.forward(  # noqa: E731
        model, f32(g[0]), f32(pose), f32(b[0]), f32(tr[0]), flat_hand_mean=True).vertices)
    np.testing.assert_allclose(fwd(go2, t2), fwd(go, t) @ C.T, atol=2e-6)
    assert np.abs(fwd(go2, t @ C.T) - fwd(go, t) @ C.T).max() > 1e-3


def test_save_load_round_trip_and_rendered_masks(ho3d, tmp_path):
    fmt = pytest.importorskip("hoijax.data._format")
    conv = _ho3d.convert_ho3d(ho3d["root"], "SEQ1", ho3d["ycb"],
                              ho3d["mano_dir"] / "MANO_RIGHT.pkl", tmp_path / "out",
                              frame_ids=["0000", "0002"], use_seg=False, load_rgb=False,
                              oracle="keypoints,hand,masks")
    assert conv.meta["masks"] == "rendered from ground truth (oracle)"
    seq = conv.sequence
    # Rendered masks: the hand covers its projected wrist, the object its projected centre.
    for n in range(2):
        u, v = np.round(np.asarray(seq.keypoints_px[n, 9])).astype(int)  # middle-finger base
        assert np.asarray(seq.hand_mask[n])[v, u]
        c = np.asarray(seq.gt.T_cam_obj[n, :3, 3]) @ K.T
        assert np.asarray(seq.object_mask[n])[int(round(c[1] / c[2])), int(round(c[0] / c[2]))]
    back = fmt.load_sequence(tmp_path / "out")
    for name in ("K", "hand_mask", "object_mask", "keypoints_px", "depth_m"):
        np.testing.assert_array_equal(np.asarray(getattr(back, name)),
                                      np.asarray(getattr(seq, name)))
    for name in ("verts_cam", "joints_cam", "T_cam_obj"):
        np.testing.assert_allclose(np.asarray(getattr(back.gt, name)),
                                   np.asarray(getattr(seq.gt, name)), atol=1e-7)
    np.testing.assert_allclose(np.asarray(back.gt.hand.transl), np.asarray(seq.gt.hand.transl))
    np.testing.assert_allclose(np.asarray(back.mesh.vertices), np.asarray(seq.mesh.vertices),
                               atol=1e-7)


def _detections(rng, n=3):
    return {"keypoints_px": rng.uniform(0, 40, (n, 21, 2)),
            "keypoints_conf": rng.uniform(0.1, 1, (n, 21)),
            "betas": rng.normal(size=(n, 10)) * 0.3, "hand_pose": rng.normal(size=(n, 45)) * 0.2,
            "global_orient": rng.normal(size=(n, 3)), "transl": rng.normal(size=(n, 3)) * 0.1}


def test_default_needs_input_files_and_never_uses_ground_truth(ho3d, tmp_path):
    load = lambda **kw: _ho3d.load_ho3d(  # noqa: E731
        ho3d["root"], "SEQ1", ho3d["ycb"], ho3d["mano_dir"] / "MANO_RIGHT.pkl", load_rgb=False,
        load_depth=False, **kw)
    with pytest.raises(SequenceFormatError, match=r"SEQ1.*'keypoints_px'.*detections=.*oracle="
                                                  r".*keypoints.*also missing: hand_init, masks"):
        load()
    det = _detections(np.random.default_rng(2))
    np.savez(tmp_path / "det.npz", **det)
    with pytest.raises(SequenceFormatError, match=r"SEQ1.*'masks'.*masks=.*oracle=.*masks"):
        load(detections=tmp_path / "det.npz")
    # A detections file without the MANO estimate: the hand needs oracle "hand".
    np.savez(tmp_path / "kp.npz", keypoints_px=det["keypoints_px"],
             keypoints_conf=det["keypoints_conf"])
    with pytest.raises(SequenceFormatError, match=r"kp\.npz.*'betas'.*missing.*oracle='hand'"):
        load(detections=tmp_path / "kp.npz", oracle="masks")
    seq = load(detections=tmp_path / "kp.npz", oracle="masks,hand").sequence
    np.testing.assert_allclose(np.asarray(seq.keypoints_px), det["keypoints_px"], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(seq.hand_init.betas), np.asarray(seq.gt.hand.betas))
    with pytest.raises(ValueError, match="masks"):
        load(detections=tmp_path / "det.npz", masks=tmp_path / "m.npz", oracle="masks")


def test_detections_masks_and_init_pose_files_replace_the_ground_truth(ho3d, tmp_path):
    rng = np.random.default_rng(2)
    det = _detections(rng)
    det["keypoints_conf"][0, 5] = 0.0
    det["keypoints_px"][1, 7] = np.nan
    np.savez(tmp_path / "det.npz", **det)
    masks = tmp_path / "sam2"
    hand = rng.uniform(size=(3, H, W)) > 0.7
    obj = rng.uniform(size=(3, H, W)) > 0.6
    for sub, m in (("hand", hand), ("object", obj)):
        (masks / sub).mkdir(parents=True)
        for n, fid in enumerate(["0000", "0001", "0002"]):
            Image.fromarray((m[n] * 255).astype(np.uint8)).save(masks / sub / f"{fid}.png")
    T0 = np.eye(4)
    T0[:3, :3] = Rotation.from_rotvec([0.1, -0.2, 0.3]).as_matrix()
    T0[:3, 3] = [0.01, 0.02, 0.6]
    np.savetxt(tmp_path / "pose.txt", T0)
    conv = _ho3d.load_ho3d(ho3d["root"], "SEQ1", ho3d["ycb"], ho3d["mano_dir"] / "MANO_RIGHT.pkl",
                           detections=tmp_path / "det.npz", masks=masks,
                           init_pose=tmp_path / "pose.txt", init_frame=1, load_rgb=False,
                           load_depth=False, image_size=(H, W))
    seq, meta = conv.sequence, conv.meta
    assert meta["oracle"] == [] and meta["undetected_frames"] == 0 and meta["warnings"] == []
    assert meta["keypoints"] == meta["hand_init"] == f"detections: {tmp_path / 'det.npz'}"
    assert meta["masks"] == f"masks: {masks}" and meta["init_frame"] == 1
    conf = det["keypoints_conf"].copy()
    conf[1, 7] = 0.0
    np.testing.assert_allclose(np.asarray(seq.keypoints_conf), conf, rtol=1e-6)
    assert np.all(np.asarray(seq.keypoints_px[0, 5]) == 0)
    assert np.all(np.asarray(seq.keypoints_px[1, 7]) == 0)
    np.testing.assert_allclose(np.asarray(seq.keypoints_px[2]), det["keypoints_px"][2], rtol=1e-6)
    for k in ("betas", "hand_pose", "global_orient", "transl"):
        np.testing.assert_allclose(np.asarray(getattr(seq.hand_init, k)), det[k], rtol=1e-6,
                                   atol=1e-7)
    np.testing.assert_array_equal(np.asarray(seq.hand_mask), hand)
    np.testing.assert_array_equal(np.asarray(seq.object_mask), obj)
    np.testing.assert_allclose(np.asarray(seq.T_cam_obj_init), T0, atol=1e-7)
    assert int(seq.init_frame) == 1
    np.savez(tmp_path / "bad.npz", **{**det, "keypoints_px": det["keypoints_px"][:, :20]})
    with pytest.raises(SequenceFormatError, match=r"bad\.npz.*keypoints_px.*shape"):
        _ho3d.read_detections(tmp_path / "bad.npz", 3)


@pytest.mark.parametrize("edit, field, what", [
    (lambda m: m.pop("handBeta"), "handBeta", "missing key"),
    (lambda m: m.update(handPose=np.zeros(45)), "handPose", "expected shape"),
    (lambda m: m.update(camMat=np.eye(4)), "camMat", "expected shape"),
    (lambda m: m.update(objTrans=np.array([0.0, np.nan, -0.5])), "objTrans", "NaN"),
])
def test_bad_meta_names_file_and_field(tmp_path, edit, field, what):
    m = _meta(np.random.default_rng(3), 0)
    edit(m)
    path = tmp_path / "0007.pkl"
    _write_pkl(path, m)
    with pytest.raises(SequenceFormatError, match=rf"0007\.pkl.*'{field}'.*{what}") as e:
        _ho3d.read_ho3d_meta(path)
    assert e.value.field == field and e.value.path == path


def test_missing_object_model_names_the_file(ho3d, tmp_path):
    with pytest.raises(SequenceFormatError, match="textured_simple.obj.*mesh"):
        _ho3d.load_ho3d(ho3d["root"], "SEQ1", tmp_path, ho3d["mano_dir"] / "MANO_RIGHT.pkl",
                        oracle="keypoints,hand,masks")
