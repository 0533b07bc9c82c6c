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
    for sub in ("demo", "track", "ablate", "eval", "icl-train", "icl-eval", "init-demo",
                "mano-export", "mano-info"):
        assert sub in out
    with pytest.raises(SystemExit):
        main(["no-such-command"])


def test_track_and_eval_commands_on_saved_sequences(tmp_path, capsys):
    """`hoijax track` on sequence directories (one corrupt: skipped with its file named, the
    other still tracked), then `hoijax eval` re-scores the saved results identically."""
    from hoijax import data

    cfg = data.SyntheticConfig(seed=2, num_frames=8, image_size=(64, 64), focal_factor=2.2,
                               feature_stride=4, occlusion="light", with_rgb=True)
    good = data.save_sequence(data.generate_sequence(cfg), tmp_path / "seqs" / "good")
    bad = tmp_path / "seqs" / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{ not json")
    out = tmp_path / "out"
    fast = ["--config.hand-iters", "10", "--config.object-iters", "15",
            "--config.iof-iters", "15", "--config.stride", "3", "--run.sdf-resolution", "12"]
    rc = main(["track", str(good), str(bad), "--out", str(out), *fast])
    captured = capsys.readouterr()
    assert rc == 1  # one sequence skipped
    assert "bad" in captured.err and "manifest.json" in captured.err
    assert "compiling the tracker (first run only)" in captured.err  # the wait is explained
    d = out / "good"
    for name in ("overlay.png", "overlay.gif", "loss_curves.png", "result.npz", "metrics.json"):
        assert (d / name).stat().st_size > 100, name
    plys = sorted((d / "meshes").glob("*_object.ply"))
    assert plys and trimesh.load(plys[0], process=False).faces.shape[0] > 10
    tracked = json.loads((d / "metrics.json").read_text())
    assert main(["eval", str(out), "--sequences", str(good)]) == 0
    again = json.loads((out / "metrics.json").read_text())["per_sequence"]["good"]
    assert again["rot_err_deg"] == pytest.approx(tracked["mean"]["rot_err_deg"], rel=1e-6)
    assert again["adds_mm"] == pytest.approx(tracked["mean"]["adds_mm"], rel=1e-6)
    assert again["obj_cd_cm2"] == pytest.approx(tracked["obj_cd_cm2"], rel=1e-5, abs=1e-9)
    # eval prints AGILE's Table 1 columns with the sequence's numbers (F@10 in %, SR 100 or 0)
    printed = capsys.readouterr().out
    for header in ("MPJPE [mm]", "CD [cm²]", "F@5 [%]", "F@10 [%]", "CD_h [cm²]", "ADD-S [%]",
                   "SR [%]"):
        assert header in printed, header
    row = [line for line in printed.splitlines() if line.startswith("| good |")][-1]
    assert row.split("|")[5].strip() == f"{100 * tracked['obj_f10']:.1f}"
    assert row.split("|")[9].strip() == ("0.0" if tracked["failed"] else "100.0")
    # the result records its input provenance: nothing from ground truth here
    assert json.loads((d / "result.json").read_text())["meta"]["oracle"] == []


def test_progress_bar_explains_the_wait_then_times_the_steady_phase_only():
    """Before the first tracked frame the bar names the wait with its elapsed seconds; at the
    first frame the text goes and the bar's clock restarts, so its rate and ETA exclude the
    compilation; then it counts frames."""
    import io
    import time

    from tqdm import tqdm

    from hoijax.cli._track import _Waiting

    out = io.StringIO()
    bar = tqdm(total=4, file=out, mininterval=0)
    t_open = bar.start_t
    with _Waiting(bar, period_s=1.0) as on_frame:
        time.sleep(1.3)
        assert _Waiting.TEXT in bar.postfix and bar.postfix.endswith(" s")
        on_frame()
        assert bar.n == 1 and not bar.postfix
        assert bar.start_t - t_open > 1.0  # the clock restarted at the first frame
        time.sleep(1.2)
        assert not bar.postfix  # the ticker stopped
        on_frame()
        assert bar.n == 2
    assert _Waiting.TEXT in out.getvalue()


def test_progress_bar_into_a_log_file_redraws_rarely(monkeypatch):
    """With stderr redirected (a batch job's log), the bar and the wait ticker redraw every
    ``LOG_INTERVAL_S``, not every frame and second: a 4-minute compilation wrote 240 redraws."""
    import io

    from hoijax import tracking
    from hoijax.cli import _track

    monkeypatch.setattr(_track.sys, "stderr", io.StringIO())
    bar = _track._progress_bar({}, tracking.TrackConfig(), 1, "x")
    waiting = _track._Waiting(bar)
    assert bar.mininterval == _track.LOG_INTERVAL_S >= 10
    assert waiting.period_s == _track.LOG_INTERVAL_S
    bar.close()


def test_progress_bar_total_follows_the_frames_the_driver_announces():
    """Re-runs announce their frames (tracking.Progress.grow): the CLI's bar adds them to its
    total, so counting the re-run's frames never takes it past 100 %."""
    import io

    from tqdm import tqdm

    from hoijax.cli._track import _grow

    bar = tqdm(total=4, file=io.StringIO(), mininterval=0)
    bar.update(4)
    _grow(bar, 3)
    assert bar.total == 7 and bar.n == 4
    bar.update(3)
    assert bar.n == bar.total
    bar.close()
