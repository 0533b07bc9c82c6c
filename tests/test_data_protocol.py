"""AGILE's evaluation protocol as data (hoijax.data._protocol) and ``hoijax track --dataset``'s
conversion step, on a small HO-3D layout written here (no tracking: that is test_cli's)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hoijax import data
from hoijax.cli.main import main
from hoijax.cli._track import Track, convert_protocol

K = np.array([[70.0, 0.0, 31.5], [0.0, 70.0, 23.5], [0.0, 0.0, 1.0]])
CUBE = "\n".join([*(f"v {x} {y} {z}" for x in (-.02, .02) for y in (-.02, .02) for z in (-.02, .02)),
                  "f 1 3 2", "f 2 3 4", "f 5 6 7", "f 6 8 7", "f 1 2 5", "f 2 6 5",
                  "f 3 7 4", "f 4 7 8", "f 1 5 3", "f 3 5 7", "f 2 4 6", "f 4 8 6"]) + "\n"


def test_tables_are_agiles():
    """Supplementary Tables 3 and 4, as printed: 18 HO-3D sequences with their IOF indices,
    20 DexYCB sequences of camera 836212060125."""
    ho3d, dex = data.AGILE_HO3D, data.AGILE_DEXYCB
    assert len(ho3d) == 18 and len(dex) == 20
    assert len({e.sequence for e in ho3d}) == 18 and len({e.sequence for e in dex}) == 20
    iof = {e.sequence: e.iof for e in ho3d}
    assert iof["ABF12"] == 100 and iof["BB12"] == 200 and iof["MDF14"] == 250
    assert iof["GPMF12"] == 105 and iof["SMu1"] == 20 and iof["MC1"] == 0
    assert sum(iof.values()) == 1495  # the table's column, summed by hand
    assert dict((e.sequence, e.object) for e in ho3d)["ShSu10"] == "sugar box"
    assert all(e.iof is None and e.sequence.endswith("/836212060125") for e in dex)
    assert dex[2].sequence == "20200813-subject-02/20200813_154204/836212060125"
    assert dex[2].object == "bleach cleanser"
    assert dex[2].name == "20200813-subject-02__20200813_154204__836212060125"
    assert data.agile_protocol("ho3d", ["SM2", "MC4"]) == tuple(
        e for e in ho3d if e.sequence in ("MC4", "SM2"))
    with pytest.raises(ValueError, match="ABF99"):
        data.agile_protocol("ho3d", ["ABF99"])
    with pytest.raises(ValueError, match="dexycb"):
        data.agile_protocol("arctic")


def test_protocol_frames_start_at_the_iof_cap_and_stride():
    bb12 = data.agile_protocol("ho3d", ["BB12"])[0]  # IOF 200
    f = data.protocol_frames(bb12, 1500)
    assert f[0] == 200 and f[-1] == 200 + 1020 and len(f) == 205  # 1024 frames, every 5th
    assert np.all(np.diff(f) == 5)
    short = data.protocol_frames(bb12, 800)
    assert short == list(range(200, 800, 5))
    dex = data.AGILE_DEXYCB[0]
    assert data.protocol_frames(dex, 80) == list(range(0, 80, 5))
    with pytest.raises(ValueError, match="IOF index 200"):
        data.protocol_frames(bb12, 150)


def _write_ho3d(root, name="MC1", n=11):
    rng = np.random.default_rng(0)
    seq = root / "train" / name / "meta"
    seq.mkdir(parents=True)
    for i in range(n):
        meta = {"handPose": np.concatenate([Rotation.random(random_state=rng).as_rotvec() * .5,
                                            rng.normal(size=45) * 0.2]).astype(np.float32),
                "handBeta": np.zeros(10, np.float32),
                "handTrans": np.array([0.01 * i, -0.01, -0.45]), "camMat": K,
                "objRot": Rotation.random(random_state=rng).as_rotvec().reshape(3, 1),
                "objTrans": np.array([0.03, 0.02, -0.5]), "objName": "003_cracker_box",
                "handJoints3D": np.zeros((21, 3))}
        with open(seq / f"{i:04d}.pkl", "wb") as fh:
            pickle.dump(meta, fh, protocol=2)
    model_dir = root / "models" / "003_cracker_box"
    model_dir.mkdir(parents=True)
    (model_dir / "textured_simple.obj").write_text(CUBE)
    return root


@pytest.fixture()
def ho3d_root(tmp_path):
    return _write_ho3d(tmp_path / "ho3d")


def test_load_protocol_sequence_converts_the_protocol_frames(ho3d_root, synthetic_mano_dir):
    mc1 = data.agile_protocol("ho3d", ["MC1"])[0]
    conv = data.load_protocol_sequence(mc1, ho3d_root, synthetic_mano_dir,
                                       oracle="keypoints,hand,masks", load_rgb=False,
                                       load_depth=False, image_size=(48, 64))
    assert conv.frame_ids == ["0000", "0005", "0010"]
    assert conv.sequence.valid.shape == (3,)
    p = conv.meta["protocol"]
    assert p["sequence"] == "MC1" and p["stride"] == 5 and p["iof"] == 0
    assert conv.meta["oracle"] == ["hand", "keypoints", "masks"]
    # Without oracle the detections are needed, under INPUTS/<name>/detections.npz.
    with pytest.raises(data.SequenceFormatError, match="oracle"):
        data.load_protocol_sequence(mc1, ho3d_root, synthetic_mano_dir,
                                    inputs_dir=ho3d_root / "inputs", load_rgb=False)
    (ho3d_root / "inputs" / "MC1" / "masks").mkdir(parents=True)
    (ho3d_root / "inputs" / "MC1" / "init_pose.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0.5\n"
                                                                 "0 0 0 1\n")
    files = data.input_files(ho3d_root / "inputs", mc1)
    assert files.detections is None and files.masks.name == "masks"
    assert files.init_pose.name == "init_pose.txt"


def test_track_dataset_converts_once_and_reports_what_it_skipped(ho3d_root, synthetic_mano_dir,
                                                                 tmp_path, capsys):
    out = tmp_path / "out"
    # No --mano-dir: a clear error before any work.
    assert main(["track", "--dataset", "ho3d", "--root", str(ho3d_root), "--out", str(out)]) == 2
    assert "--mano-dir" in capsys.readouterr().err
    # Only MC1 exists here, and without detections or oracle it cannot be converted: skipped
    # by name with the reason, and nothing is left to track.
    rc = main(["track", "--dataset", "ho3d", "--root", str(ho3d_root), "--mano-dir",
               str(synthetic_mano_dir), "--only", "MC1", "MC4", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "skipped MC1" in err and "oracle" in err and "skipped MC4" in err
    cfg = Track(dataset="ho3d", root=ho3d_root, mano_dir=synthetic_mano_dir, only=("MC1",),
                oracle="masks,hand,keypoints", out=out)
    paths, bad = convert_protocol(cfg)
    assert bad == {} and paths == [out / "sequences" / "MC1"]
    manifest = json.loads((paths[0] / "manifest.json").read_text())
    assert manifest["num_frames"] == 3 and manifest["meta"]["protocol"]["sequence"] == "MC1"
    stamp = (paths[0] / "manifest.json").stat().st_mtime_ns
    assert convert_protocol(cfg)[0] == paths  # reused, not rewritten
    assert (paths[0] / "manifest.json").stat().st_mtime_ns == stamp
    # Another oracle is another conversion.
    convert_protocol(Track(dataset="ho3d", root=ho3d_root, mano_dir=synthetic_mano_dir,
                           only=("MC1",), oracle="all", out=out))
    assert json.loads((paths[0] / "manifest.json").read_text())["meta"]["oracle"] == [
        "hand", "keypoints", "masks", "pose"]
