"""The ``hoijax`` command: the demo's results, and the MANO file commands."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import trimesh

from hoijax import mano
from hoijax.cli._demo import DemoConfig, fit_sequence, make_sequence, score
from hoijax.cli.main import main


def test_demo_writes_results_and_recovers_the_hand(tmp_path):
    rc = main(["init-demo", "--out", str(tmp_path), "--frames", "8", "--depth-points", "300"])
    assert rc == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    m = summary["metrics"]
    assert m["scale_error_percent"] < 4.0  # detector betas are off by ~0.3σ, ~1.5% in size
    assert m["root_error_mm"]["median"] < 25.0
    assert m["mpjpe_mm"]["mean"] < 25.0
    assert len(m["per_frame"]["mpjpe_mm"]) == 8
    assert (tmp_path / "overlay.png").stat().st_size > 10_000
    mesh = trimesh.load(tmp_path / "hand_frame000_estimate.ply", process=False)
    assert mesh.vertices.shape == (778, 3) and mesh.faces.shape == (1538, 3)


def test_demo_fit_is_not_trivially_right():
    """Fitting with a wrong scale prior would be visible: the metrics respond to the inputs."""
    cfg = DemoConfig(frames=6, depth_points=300, seed=3)
    model = mano.synthetic_mano("right")
    seq = make_sequence(cfg, model)
    good = score(seq, fit_sequence(model, seq))
    shrunk = dict(seq, depth_points=seq["depth_points"] * 0.8)  # depth says: a smaller hand
    bad = score(seq, fit_sequence(model, shrunk))
    assert good["scale_error_percent"] < 4.0
    assert bad["scale_error_percent"] > 10.0
    assert bad["mpjpe_mm"]["mean"] > good["mpjpe_mm"]["mean"]


def test_mano_export_and_info(tmp_path, capsys):
    assert main(["mano-export", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "MANO_LEFT.pkl", "rb") as fh:
        assert "hands_components" in pickle.load(fh, encoding="latin1")
    capsys.readouterr()
    assert main(["mano-info", str(tmp_path / "MANO_LEFT.pkl")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["side"] == "left" and info["vertices"] == 778 and info["faces"] == 1538
    assert 0.15 < info["wrist_to_farthest_tip_m"] < 0.22


def test_mano_info_names_the_bad_file_and_field(tmp_path, capsys):
    data = dict(mano.synthetic_mano_arrays("right"))
    data["weights"] = np.zeros((5, 5))
    bad = tmp_path / "MANO_RIGHT.pkl"
    bad.write_bytes(pickle.dumps(data, protocol=2))
    assert main(["mano-info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "MANO_RIGHT.pkl" in err and "'weights'" in err


def test_installed_command_help():
    out = subprocess.run([sys.executable, "-m", "hoijax.cli.main", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for sub in ("demo", "track", "ablate", "eval", "init-demo", "mano-export", "mano-info"):
        assert sub in out
    with pytest.raises(SystemExit):
        main(["no-such-command"])
