"""``hoijax generate`` writes the synthetic benchmark to disk (the sequences ``track`` and
``eval`` read), equal to what the library generates for the same settings."""

from __future__ import annotations

import json

import numpy as np
import trimesh

from hoijax import data
from hoijax.cli.main import main


def test_generate_writes_the_benchmark_the_library_makes(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["generate", str(out), "--sequences", "2", "--frames", "5", "--image-size",
                 "48", "--seed", "100"]) == 0
    assert "hoijax track" in capsys.readouterr().out
    dirs = sorted(p for p in out.iterdir() if p.is_dir())
    assert [d.name for d in dirs] == ["seq_000", "seq_001"]
    expected = data.tracking_benchmark_configs(2, 5, 48, seed=100)
    for d, cfg in zip(dirs, expected):
        meta = json.loads((d / "manifest.json").read_text())["meta"]
        assert meta["config"]["seed"] == cfg.seed and meta["config"]["num_frames"] == 5
        seq = data.load_sequence(d)
        ref = data.generate_sequence(cfg)
        np.testing.assert_allclose(seq.gt.T_cam_obj, ref.gt.T_cam_obj, atol=1e-6)
        np.testing.assert_array_equal(seq.object_mask, ref.object_mask)


def test_generate_with_user_meshes_and_a_bad_one(tmp_path, capsys):
    torus = trimesh.creation.torus(major_radius=0.04, minor_radius=0.012)
    torus.export(tmp_path / "torus.ply")
    out = tmp_path / "bench"
    assert main(["generate", str(out), "--sequences", "1", "--frames", "4", "--image-size",
                 "48", "--meshes", str(tmp_path / "torus.ply")]) == 0
    meta = json.loads((out / "seq_000" / "manifest.json").read_text())["meta"]
    assert meta["config"]["object_mesh"] == "user-supplied"
    seq = data.load_sequence(out / "seq_000")
    assert seq.mesh.faces.shape[0] == len(torus.faces)
    (tmp_path / "broken.obj").write_text("this is not a mesh\n")
    assert main(["generate", str(tmp_path / "b"), "--meshes", str(tmp_path / "broken.obj")]) == 2
    assert "broken.obj" in capsys.readouterr().err
