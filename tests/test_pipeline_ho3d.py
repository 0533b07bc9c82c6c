"""The real-data path end to end, on an HO-3D v3 fixture in the dataset's own layout (meta
pickles in the OpenGL frame, RGB PNGs, depth in HO-3D's two-channel encoding, a UV-textured YCB
model) plus a detector's and a segmenter's output files: convert (no ground truth in), compute
DINO features with small random weights (``hoijax features``), track, evaluate.

The fixture is a synthetic sequence written out in HO-3D's layout, so the tracker has something
consistent to track; nothing of it reaches the converted inputs except through the files a real
pipeline would have (detections, masks, depth, RGB, the object model)."""

from __future__ import annotations

import dataclasses
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from hoijax import data, features, mano
from hoijax import tracking as tr
from hoijax.cli.main import main
from hoijax.data import _ho3d

sys.path.insert(0, str(Path(__file__).parent))
from tiny_dino import TINY, write_weights  # noqa: E402

C = np.diag([1.0, -1.0, -1.0])
N = 6
OBJ = "006_mustard_bottle"
CONFIG = tr.TrackConfig(stride=2, hand_iters=5, object_iters=12, iof_iters=8, pool_points=128,
                        num_dino_points=32, hand_depth_points=32,
                        hand_fit=tr.HandFitConfig(enabled=False))


def _source() -> data.Sequence:
    return data.generate_sequence(data.SyntheticConfig(
        seed=5, num_frames=N, image_size=(48, 48), focal_factor=2.2, feature_stride=4,
        occlusion="light", object_kind="box"))


def _write_textured_obj(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    """The object as a YCB-style ``textured_simple.obj``: per-vertex UVs (a planar projection)
    into a striped texture, with its ``.mtl``."""
    lo, hi = verts.min(0), verts.max(0)
    uv = (verts[:, :2] - lo[:2]) / (hi[:2] - lo[:2])
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, :, 0] = np.where((np.arange(64) // 8) % 2 == 0, 230, 30)[None, :]
    stripes[:, :, 1] = 120
    Image.fromarray(stripes).save(path.parent / "texture_map.png")
    (path.parent / "textured_simple.mtl").write_text(
        "newmtl material_0\nKd 1 1 1\nmap_Kd texture_map.png\n")
    lines = ["mtllib textured_simple.mtl"]
    lines += [f"v {x:.9f} {y:.9f} {z:.9f}" for x, y, z in verts]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv]
    lines += ["usemtl material_0"]
    lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def _write_ho3d(root: Path, src: data.Sequence, model: mano.ManoModel) -> Path:
    seq_dir = root / "train" / "SEQ1"
    for d in ("meta", "rgb", "depth"):
        (seq_dir / d).mkdir(parents=True)
    g = src.gt
    h = {k: np.asarray(getattr(g.hand, k), np.float64)
         for k in ("betas", "hand_pose", "global_orient", "transl")}
    # OpenCV → OpenGL: the same root-joint-aware map (C is its own inverse).
    go_gl, t_gl = _ho3d.opengl_to_opencv_mano(model, h["global_orient"], h["transl"], h["betas"])
    T = np.asarray(g.T_cam_obj, np.float64)
    rng = np.random.default_rng(0)
    depth = np.asarray(src.depth_m, np.float64)
    for i in range(N):
        fid = f"{i:04d}"
        meta = {"handPose": np.concatenate([go_gl[i], h["hand_pose"][i]]).astype(np.float32),
                "handBeta": h["betas"][i].astype(np.float32), "handTrans": t_gl[i],
                "camMat": np.asarray(src.K, np.float64),
                "objRot": Rotation.from_matrix(C @ T[i, :3, :3]).as_rotvec().reshape(3, 1),
                "objTrans": C @ T[i, :3, 3], "objName": OBJ, "handJoints3D": np.zeros((21, 3))}
        with open(seq_dir / "meta" / f"{fid}.pkl", "wb") as fh:
            pickle.dump(meta, fh, protocol=2)
        rgb = rng.integers(0, 60, (48, 48, 3)).astype(np.uint8)
        rgb[np.asarray(src.object_mask[i])] = [200, 160, 40]
        rgb[np.asarray(src.hand_mask[i])] = [220, 170, 150]
        Image.fromarray(rgb).save(seq_dir / "rgb" / f"{fid}.png")
        raw = np.round(depth[i] / _ho3d.HO3D_DEPTH_SCALE_M).astype(np.int64)
        enc = np.stack([raw % 256, raw // 256, np.zeros_like(raw)], -1).astype(np.uint8)
        Image.fromarray(enc).save(seq_dir / "depth" / f"{fid}.png")
    # HO-3D's objects have no scale factor: the model file carries the true size.
    model_dir = root / "models" / OBJ
    model_dir.mkdir(parents=True)
    m = src.mesh
    verts = np.asarray(m.vertices, np.float64) * np.asarray(g.obj_scale, np.float64)
    _write_textured_obj(model_dir / "textured_simple.obj", verts,
                        np.asarray(m.faces)[np.asarray(m.face_valid)])
    return root


def _write_inputs(d: Path, src: data.Sequence) -> tuple[Path, Path]:
    """What a detector (keypoints with a dropped joint, a MANO estimate) and a segmenter write."""
    d.mkdir(parents=True, exist_ok=True)
    kp = np.asarray(src.keypoints_px, np.float64).copy()
    kp[np.asarray(src.keypoints_conf) == 0] = np.nan
    h = src.hand_init
    np.savez(d / "detections.npz", keypoints_px=kp, keypoints_conf=np.asarray(src.keypoints_conf),
             betas=np.asarray(h.betas), hand_pose=np.asarray(h.hand_pose),
             global_orient=np.asarray(h.global_orient), transl=np.asarray(h.transl))
    np.savez(d / "masks.npz", hand_mask=np.asarray(src.hand_mask),
             object_mask=np.asarray(src.object_mask))
    return d / "detections.npz", d / "masks.npz"


INPUT_FIELDS = ("K", "valid", "hand_mask", "object_mask", "keypoints_px", "keypoints_conf",
                "hand_init", "mesh", "depth_m", "rgb", "features", "T_cam_obj_init",
                "init_frame")


@pytest.fixture(scope="module")
def fixture(tmp_path_factory, synthetic_mano_dir):
    tmp = tmp_path_factory.mktemp("pipeline")
    model = mano.load_mano(synthetic_mano_dir / "MANO_RIGHT.pkl")
    src = _source()
    root = _write_ho3d(tmp / "ho3d", src, model)
    det, masks = _write_inputs(tmp / "inputs", src)
    return {"tmp": tmp, "root": root, "src": src, "det": det, "masks": masks,
            "mano": synthetic_mano_dir / "MANO_RIGHT.pkl"}


def _load(fx, root=None, **kw):
    kw = {"detections": fx["det"], "masks": fx["masks"], **kw}
    return data.load_ho3d(root or fx["root"], "SEQ1", root or fx["root"], fx["mano"], **kw)


def test_no_leak_altered_ground_truth_gives_identical_inputs(fixture):
    """Convert twice, the second time with every ground-truth pose in the meta pickles moved:
    the tracker's inputs are bit-identical, the ground truth is not. With an oracle input the
    metadata says so, and that input changes."""
    import shutil

    a = _load(fixture)
    root2 = fixture["tmp"] / "ho3d_altered"
    shutil.copytree(fixture["root"], root2)
    for p in sorted((root2 / "train" / "SEQ1" / "meta").glob("*.pkl")):
        with open(p, "rb") as fh:
            m = pickle.load(fh)
        m["handPose"] = m["handPose"] + 0.2
        m["handTrans"] = m["handTrans"] + 0.03
        m["objRot"] = m["objRot"] + 0.3
        m["objTrans"] = m["objTrans"] + 0.05
        with open(p, "wb") as fh:
            pickle.dump(m, fh, protocol=2)
    b = _load(fixture, root=root2)
    for f in INPUT_FIELDS:
        la = [np.asarray(x) for x in _leaves(getattr(a.sequence, f))]
        lb = [np.asarray(x) for x in _leaves(getattr(b.sequence, f))]
        assert len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb)), f
    assert not np.allclose(a.sequence.gt.T_cam_obj, b.sequence.gt.T_cam_obj)
    assert not np.allclose(a.sequence.gt.joints_cam, b.sequence.gt.joints_cam)
    assert a.meta["oracle"] == [] and "ground truth" not in a.meta["keypoints"]
    # The oracle switch: keypoints from ground truth, said in the metadata, and they move.
    oa = _load(fixture, oracle="keypoints")
    assert oa.meta["oracle"] == ["keypoints"] and "oracle" in oa.meta["keypoints"]
    assert oa.meta["hand_init"] == a.meta["hand_init"]  # the rest still from the files
    assert not np.allclose(oa.sequence.keypoints_px, a.sequence.keypoints_px)


def _leaves(x):
    import jax

    return jax.tree.leaves(x)


def test_convert_features_track_evaluate(fixture, tmp_path, monkeypatch, capsys):
    """Converted → saved → ``hoijax features`` (tiny random DINO, the model's texture found
    through ``meta["object_model"]``) → tracked with L_dino at weight 0 and 10 in one program →
    evaluated. L_dino is active on the converted data, and its weight changes the result."""
    conv = _load(fixture)
    seq_dir = data.save_sequence(conv.sequence, tmp_path / "SEQ1", meta=conv.meta)
    monkeypatch.setitem(features.PRESETS, "test_tiny", TINY)
    weights = write_weights(tmp_path / "dino.safetensors", 0)
    assert main(["features", str(seq_dir), "--weights", str(weights), "--preset", "test_tiny",
                 "--views", "4", "--render-size", "56", "--min-side", "224",
                 "--no-progress"]) == 0
    assert "no texture" not in capsys.readouterr().err
    seq = data.load_sequence(seq_dir)
    manifest = data.read_manifest(seq_dir)
    assert manifest["meta"]["features"]["texture"] is True
    assert manifest["meta"]["features"]["texture_sampling"] == "per pixel"
    assert seq.features is not None and seq.mesh.vertex_features is not None
    assert seq.features.shape[1:3] == (16, 16)  # 48-pixel frames upscaled to 224 for the ViT

    base = tr.TrackHyper()
    hypers = [dataclasses.replace(base, weights=dataclasses.replace(base.weights, dino=w))
              for w in (0.0, 10.0)]
    run = tr.track_sequences({"SEQ1": seq}, tr.ManoSource.from_dir(fixture["mano"].parent),
                             CONFIG, hypers, tr.RunOptions(sdf_resolution=12))
    assert not run.errors, run.errors
    off, on = run.results["SEQ1"]
    assert tr.term_activity(on)["dino"] > 0.5
    assert tr.term_activity(off)["mask"] > 0.5
    assert np.max(np.abs(np.asarray(on.T_cam_obj) - np.asarray(off.T_cam_obj))) > 1e-6
    assert bool(on.finite) and bool(off.finite)
    ev = tr.evaluate_run(run, {"SEQ1": seq})["SEQ1"][1]
    row = tr.sequence_row(ev)
    for k in ("mpjpe_mm", "adds_mm", "cd_h_cm2", "obj_cd_cm2", "obj_f5", "add_acc"):
        assert np.isfinite(row[k]), k
    # The tracker was given the true model: the object shape metrics are exact.
    assert row["obj_f10"] == 1.0
    table = tr.agile_table({"SEQ1": row}, tr.summarize([ev]))
    assert "| SEQ1 |" in table and "**mean**" in table
