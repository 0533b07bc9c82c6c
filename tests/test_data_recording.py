"""One's own recording folder (hoijax.data.load_recording, ``hoijax import-recording``): a
synthetic sequence written out in the documented layout, as a user's tools would write it,
reads back as the same inputs with no ground truth; bad files are named."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
import trimesh
from PIL import Image

from hoijax import data
from hoijax.cli.main import main


@pytest.fixture(scope="module")
def source():
    import dataclasses

    seq = data.generate_sequence(data.SyntheticConfig(num_frames=4, image_size=(48, 64), seed=3))
    rgb = np.random.default_rng(0).integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    return dataclasses.replace(seq, rgb=jnp.asarray(rgb))  # the generator renders no colour images


def _write_recording(d, seq):
    n = seq.valid.shape[0]
    (d / "rgb").mkdir(parents=True)
    (d / "depth").mkdir()
    for i in range(n):
        Image.fromarray(np.asarray(seq.rgb[i])).save(d / "rgb" / f"frame_{i:03d}.png")
        mm = np.round(np.asarray(seq.depth_m[i]) * 1000).astype(np.uint16)
        Image.fromarray(mm).save(d / "depth" / f"frame_{i:03d}.png")
    np.savetxt(d / "K.txt", np.asarray(seq.K))
    m = seq.mesh
    trimesh.Trimesh(np.asarray(m.vertices), np.asarray(m.faces)[np.asarray(m.face_valid)],
                    process=False).export(d / "object.ply")
    h = seq.hand_init
    kp = np.asarray(seq.keypoints_px).copy()
    kp[np.asarray(seq.keypoints_conf) == 0] = np.nan  # a detector's missing joints
    np.savez(d / "detections.npz", keypoints_px=kp, keypoints_conf=np.asarray(seq.keypoints_conf),
             betas=np.asarray(h.betas), hand_pose=np.asarray(h.hand_pose),
             global_orient=np.asarray(h.global_orient), transl=np.asarray(h.transl))
    np.savez(d / "masks.npz", hand_mask=np.asarray(seq.hand_mask),
             object_mask=np.asarray(seq.object_mask))
    np.savetxt(d / "init_pose.txt", np.asarray(seq.gt.T_cam_obj[1], np.float64))
    return d


def test_recording_reads_back_as_the_same_inputs(source, tmp_path):
    d = _write_recording(tmp_path / "rec", source)
    seq, stems, meta = data.load_recording(d, init_frame=1)
    assert stems == [f"frame_{i:03d}" for i in range(4)] and seq.gt is None
    np.testing.assert_array_equal(seq.rgb, source.rgb)
    np.testing.assert_array_equal(seq.hand_mask, source.hand_mask)
    np.testing.assert_array_equal(seq.object_mask, source.object_mask)
    np.testing.assert_allclose(seq.K, source.K, rtol=1e-6)
    src_depth = np.asarray(source.depth_m)
    np.testing.assert_allclose(seq.depth_m, np.where(src_depth > 0, src_depth, 0), atol=5.1e-4)
    conf = np.asarray(source.keypoints_conf)
    np.testing.assert_array_equal(seq.keypoints_conf, conf)
    np.testing.assert_allclose(np.asarray(seq.keypoints_px)[conf > 0],
                               np.asarray(source.keypoints_px)[conf > 0], rtol=1e-6)
    for k in ("betas", "hand_pose", "global_orient", "transl"):
        np.testing.assert_allclose(getattr(seq.hand_init, k), getattr(source.hand_init, k),
                                   rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(seq.mesh.vertices, source.mesh.vertices[:len(seq.mesh.vertices)],
                               rtol=1e-6)
    np.testing.assert_allclose(seq.T_cam_obj_init, source.gt.T_cam_obj[1], atol=1e-6)
    assert int(seq.init_frame) == 1
    assert meta["oracle"] == [] and meta["frame_ids"] == stems and meta["mesh"] == "object.ply"


def test_import_recording_cli_and_errors_name_file_field_frame(source, tmp_path, capsys):
    d = _write_recording(tmp_path / "rec", source)
    out = tmp_path / "seq"
    assert main(["import-recording", str(d), "--out", str(out)]) == 0
    assert "hoijax features" in capsys.readouterr().out
    back = data.load_sequence(out)
    np.testing.assert_array_equal(back.rgb, source.rgb)
    assert back.gt is None and back.T_cam_obj_init is not None
    assert json.loads((out / "manifest.json").read_text())["meta"]["oracle"] == []
    # A depth frame of another size: file, field and frame named; nothing written.
    Image.fromarray(np.zeros((10, 10), np.uint16)).save(d / "depth" / "frame_002.png")
    assert main(["import-recording", str(d), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "frame_002.png" in err and "depth_m" in err and "frame 2" in err
    assert not (tmp_path / "bad").exists()
    (d / "K.txt").unlink()
    with pytest.raises(data.SequenceFormatError, match="K.txt.*'K'|K.txt"):
        data.load_recording(d)
    np.savetxt(d / "K.txt", -np.eye(3))
    with pytest.raises(data.SequenceFormatError, match="fx, fy > 0"):
        data.load_recording(d)
    np.savetxt(d / "K.txt", np.asarray(source.K))
    (d / "detections.npz").unlink()
    with pytest.raises(data.SequenceFormatError, match="detections.npz"):
        data.load_recording(d)
