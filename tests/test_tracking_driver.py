"""The tracking driver: the user's MANO model, overflow re-runs, and a broken sequence in a
batch (``hoijax.tracking.track_sequences`` / ``save_run`` and the ``track``/``eval`` commands
on top of them)."""

from __future__ import annotations

import dataclasses
import json
import pickle

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from hoijax import data, losses, mano, render
from hoijax import tracking as tr
from hoijax.cli.main import main

# Tiny caps and no hand refinement: these tests check the driver, not the accuracy.
CONFIG = tr.TrackConfig(stride=2, hand_iters=5, object_iters=8, iof_iters=8, pool_points=128,
                        num_dino_points=16, hand_depth_points=32,
                        hand_fit=tr.HandFitConfig(enabled=False))
OPTIONS = tr.RunOptions(sdf_resolution=12)
FAST = ["--config.hand-iters", "5", "--config.object-iters", "8", "--config.iof-iters", "8",
        "--config.stride", "2", "--config.pool-points", "128", "--config.num-dino-points", "16",
        "--config.hand-depth-points", "32", "--config.hand-fit.no-enabled",
        "--run.sdf-resolution", "12", "--no-pictures"]


def _sequence(seed: int, size: int = 48, kind: str = "box", frames: int = 6) -> data.Sequence:
    return data.generate_sequence(data.SyntheticConfig(
        seed=seed, num_frames=frames, image_size=(size, size), focal_factor=2.2,
        feature_stride=4, occlusion="light", object_kind=kind))


def _coarse_box(seq: data.Sequence) -> data.Sequence:
    """The same box as a 12-triangle mesh: its large faces span many tiles each, which the
    default pair capacity (16 per face) does not hold at this distance."""
    v = np.asarray(seq.mesh.vertices)
    lo, hi = v.min(0), v.max(0)
    box = trimesh.creation.box(extents=hi - lo)
    box.apply_translation((hi + lo) / 2)
    mesh = data.ObjectMesh(vertices=jnp.asarray(box.vertices, jnp.float32),
                           faces=jnp.asarray(box.faces, jnp.int32),
                           face_valid=jnp.ones(len(box.faces), bool), vertex_features=None)
    return eqx.tree_at(lambda s: s.mesh, seq, mesh)


@pytest.mark.slow  # one tracker program per capacity tried (150 s on 2 cores)
def test_overflowing_sequence_is_rerun_and_equals_a_run_at_sufficient_capacity():
    seq = _coarse_box(_sequence(3))
    verts = losses.obj_to_cam(seq.gt.T_cam_obj[0], seq.gt.obj_scale, seq.mesh.vertices)
    hw = seq.image_size
    assert bool(render.rasterize(verts, seq.mesh.faces, seq.K, CONFIG.raster(hw)).overflow)
    logs, counted, grown = [], [], []
    progress = tr.Progress(lambda: counted.append(1), grown.append)
    run = tr.track_sequences({"closeup": seq}, tr.ManoSource.synthetic(), CONFIG,
                             tr.TrackHyper(), OPTIONS, log=logs.append, progress=progress)
    capacity = run.capacity["closeup"]
    assert capacity > CONFIG.pairs_per_face and not run.overflow and not run.errors
    assert any("overflowed" in m and "closeup" in m for m in logs), logs
    res = run.results["closeup"]
    assert not np.any(np.asarray(res.overflow))
    # Every re-run announced its frames before running them, so a bar's total
    # (planned + grown) follows what it counts: one scan step per processed frame but the
    # anchor, in each of the 1 + doublings runs.
    runs = 1 + int(np.log2(capacity // CONFIG.pairs_per_face))
    planned = tr.processed_frames(seq, CONFIG)
    assert grown == [planned] * (runs - 1)
    assert len(counted) == runs * (int(np.sum(np.asarray(res.processed))) - 1)
    assert len(counted) <= planned + sum(grown)
    # The same sequence tracked directly at the capacity that sufficed (the same progress
    # receiver, so the same program as the re-run's).
    big = dataclasses.replace(CONFIG, pairs_per_face=capacity)
    ref = tr.track_sequences({"closeup": seq}, tr.ManoSource.synthetic(), big,
                             tr.TrackHyper(), OPTIONS, log=logs.append, progress=progress)
    assert "closeup" not in ref.capacity
    for name in ("T_cam_obj", "hand_transl", "obj_scale", "object_iters"):
        np.testing.assert_array_equal(np.asarray(getattr(res, name)),
                                      np.asarray(getattr(ref.results["closeup"], name)), name)
    # At the capacity that overflowed, the flag is set per frame (the driver's reason to rerun;
    # the same progress receiver again, so the first run's program is reused).
    small = tr.track_sequences({"closeup": seq}, tr.ManoSource.synthetic(), CONFIG,
                               tr.TrackHyper(), dataclasses.replace(OPTIONS, max_doublings=0),
                               log=logs.append, progress=progress)
    assert small.overflow == ["closeup"]
    assert np.asarray(small.results["closeup"].overflow).any()


@pytest.fixture(scope="module")
def broken_batch():
    """Three sequences tracked as one batch, the middle one broken: a non-finite vertex, for
    which no signed distance grid can be built. One tracker program for the two tests below."""
    seqs = {"a": _sequence(0), "broken": _sequence(1), "c": _sequence(2)}
    seqs["broken"] = eqx.tree_at(lambda s: s.mesh.vertices, seqs["broken"],
                                 seqs["broken"].mesh.vertices.at[0, 0].set(jnp.nan))
    logs = []
    run = tr.track_sequences(seqs, tr.ManoSource.synthetic(), CONFIG, tr.TrackHyper(),
                             dataclasses.replace(OPTIONS, batch_size=3), log=logs.append)
    return seqs, run, logs


def test_a_sequence_whose_sdf_cannot_be_built_is_skipped_and_the_others_finish(
        tmp_path, broken_batch):
    seqs, run, logs = broken_batch
    assert set(run.results) == {"a", "c"}
    assert list(run.errors) == ["broken"] and "finite" in run.errors["broken"]
    report = tr.save_run(tmp_path / "out", run, seqs)
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert written == ["a", "c"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["skipped"] == {"broken": run.errors["broken"]} == report["skipped"]
    assert any("broken" in m for m in logs)


def _write_mano(directory, scale: float):
    """MANO_RIGHT.pkl in the official layout whose template is the synthetic hand's, scaled
    about its centre."""
    arrays = mano.synthetic_mano_arrays("right")
    v = np.asarray(arrays["v_template"])
    arrays["v_template"] = (v - v.mean(0)) * scale + v.mean(0)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "MANO_RIGHT.pkl", "wb") as fh:
        pickle.dump(arrays, fh, protocol=2)
    return directory


def test_track_uses_the_given_mano_files_and_eval_refuses_another_model(tmp_path, capsys):
    seq_dir = data.save_sequence(_sequence(4), tmp_path / "seqs" / "s")
    big_hand = _write_mano(tmp_path / "mano", 1.15)
    compiled = []

    def listen(event, _seconds, fun_name="", **_):
        if event == "/jax/core/compile/backend_compile_duration" and "_track_batch" in fun_name:
            compiled.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        assert main(["track", str(seq_dir), "--out", str(tmp_path / "syn"), *FAST]) == 0
        assert main(["track", str(seq_dir), "--out", str(tmp_path / "big"), "--mano-dir",
                     str(big_hand), *FAST]) == 0
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    # The model is data to the compiled tracker, and the commands share one progress receiver
    # (a static argument): the second run in this process reuses the first one's program.
    assert len(compiled) == 1, compiled
    syn, syn_manifest = tr.load_result(tmp_path / "syn" / "s")
    big, big_manifest = tr.load_result(tmp_path / "big" / "s")
    assert big_manifest["meta"]["mano"]["file"] == "MANO_RIGHT.pkl"
    assert big_manifest["meta"]["mano"] == tr.ManoSource.from_dir(big_hand).identity("right")
    assert syn_manifest["meta"]["mano"]["source"] == "synthetic"
    assert big_manifest["meta"]["mano"]["sha256"] != syn_manifest["meta"]["mano"]["sha256"]
    # The result's hand is the given model's: 15 % larger template, and the metric scale from
    # the depth points (weakly determined on this small view) does not undo it.
    seq = data.load_sequence(seq_dir)
    size = {}
    for name, res, source in (("syn", syn, tr.ManoSource.synthetic()),
                              ("big", big, tr.ManoSource.from_dir(big_hand))):
        verts = np.asarray(tr.hand_vertices(res, seq.hand_init, source.model("right")))
        size[name] = float(np.median(np.ptp(verts, axis=1).max(-1)))
    assert size["big"] / size["syn"] > 1.05, size
    capsys.readouterr()
    # Scoring with another model than the one tracked with is an error naming both.
    assert main(["eval", str(tmp_path / "big"), "--sequences", str(seq_dir)]) == 2
    err = capsys.readouterr().err
    assert "MANO_RIGHT.pkl" in err and "synthetic" in err
    assert main(["eval", str(tmp_path / "big"), "--sequences", str(seq_dir), "--mano-dir",
                 str(big_hand)]) == 0


def test_eval_matches_results_to_sequences_by_name(tmp_path, capsys, broken_batch):
    """A result is scored against the sequence it names, whatever the order given; a result
    whose sequence is not given is an error, never a silently wrong pair."""
    all_seqs, run, _ = broken_batch
    seqs = {n: all_seqs[n] for n in run.results}
    assert sorted(seqs) == ["a", "c"]
    tr.save_run(tmp_path / "out", run, seqs)
    dirs = {n: data.save_sequence(s, tmp_path / "seqs" / n) for n, s in seqs.items()}
    assert main(["eval", str(tmp_path / "out"), "--sequences", str(dirs["c"]),
                 str(dirs["a"])]) == 0
    per = json.loads((tmp_path / "out" / "metrics.json").read_text())["per_sequence"]
    for n in seqs:
        saved = json.loads((tmp_path / "out" / n / "metrics.json").read_text())["mean"]
        assert per[n]["adds_mm"] == pytest.approx(saved["adds_mm"], rel=1e-6)
    # the two sequences differ, so a swapped pairing would not pass the check above
    assert per["a"]["adds_mm"] != pytest.approx(per["c"]["adds_mm"], rel=1e-3)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "out"), "--sequences", str(dirs["a"])]) == 2
    assert "'c'" in capsys.readouterr().err


def test_sequences_of_different_proportions_share_one_program_shape():
    """A flat box and a long mug get SDF grids of one (cubic) shape, so the driver compiles
    one program for both; the cube answers queries as the mesh's own grid does."""
    from hoijax import sdf

    seqs = [_sequence(12, kind="box"), _sequence(3, kind="mug")]
    preps = [tr.prepare(s, CONFIG, sdf_resolution=12) for s in seqs]
    assert preps[0].grid.values.shape == preps[1].grid.values.shape == (12, 12, 12)
    for s, p in zip(seqs, preps):
        own = sdf.sdf_grid_from_mesh(np.asarray(s.mesh.vertices), np.asarray(s.mesh.faces),
                                     resolution=12, repair=True)
        assert own.values.shape != (12, 12, 12)  # the mesh alone gives a non-cubic grid
        lo = np.asarray(own.origin)
        hi = lo + float(own.voxel_size) * (np.asarray(own.values.shape) - 1)
        pts = jnp.asarray(np.random.default_rng(0).uniform(lo, hi, (500, 3)), jnp.float32)
        np.testing.assert_allclose(np.asarray(sdf.query_sdf(p.grid, pts)),
                                   np.asarray(sdf.query_sdf(own, pts)), atol=1e-6)
