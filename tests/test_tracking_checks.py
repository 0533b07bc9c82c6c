"""No silent degradation (hoijax.tracking._checks): loss terms inactive in most processed frames,
and suspect but loadable inputs, are named; on hand-made sequences and results."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from hoijax import data
from hoijax import tracking as tr

N = 6


@pytest.fixture(scope="module")
def seq():
    return data.generate_sequence(data.SyntheticConfig(num_frames=N, image_size=(48, 48),
                                                       seed=1, occlusion="light"))


def _result(terms, processed):
    i32 = lambda x: jnp.asarray(x, jnp.int32)  # noqa: E731
    return tr.TrackResult(
        T_cam_obj=jnp.tile(jnp.eye(4), (N, 1, 1)), obj_scale=jnp.ones(3),
        hand_scale=jnp.float32(1.0), hand_transl=jnp.zeros((N, 3)),
        processed=jnp.asarray(processed), onset=i32(0), anchor=i32(0),
        onset_found=jnp.bool_(True), hand_iters=i32(np.zeros(N)), object_iters=i32(np.zeros(N)),
        terms=jnp.asarray(terms, jnp.float32), step_frame=i32(np.zeros(1)),
        step_active=jnp.zeros(1, bool), object_trace=None, iof_trace=None,
        finite=jnp.bool_(True))


def test_term_activity_counts_processed_frames_with_a_nonzero_term(seq):
    col = {t: i for i, t in enumerate(tr.STEP_TERMS)}
    terms = np.ones((N, len(tr.STEP_TERMS)))
    terms[[0, 2, 3], col["dino"]] = 0.0  # no support on three frames ...
    terms[5, col["dino"]] = 0.0  # ... and on an unprocessed one, which does not count
    processed = np.array([1, 1, 1, 1, 1, 0], bool)
    act = tr.term_activity(_result(terms, processed))
    assert act["dino"] == pytest.approx(2 / 5) and act["mask"] == 1.0
    warn = tr.term_warnings(seq, _result(terms, processed), dino_weight=10.0, depth_weight=5.0)
    assert len(warn) == 1 and "L_dino was active in only 40 %" in warn[0]
    # A hand scale that fell back to 1 is said too; results without the field say nothing.
    fell = eqx.tree_at(lambda r: r.hand_scale_fallback, _result(terms, processed),
                       jnp.bool_(True), is_leaf=lambda x: x is None)
    warn = tr.term_warnings(seq, fell, dino_weight=10.0, depth_weight=5.0)
    assert len(warn) == 2 and "ICP hand scale was implausible" in warn[1]
    # Frames in which the object was hidden (not fitted) are counted and said.
    hid = eqx.tree_at(lambda r: r.hidden, _result(terms, processed),
                      jnp.asarray([0, 1, 0, 1, 0, 0], bool), is_leaf=lambda x: x is None)
    warn = tr.term_warnings(seq, hid, dino_weight=10.0, depth_weight=5.0)
    assert len(warn) == 2 and "not visible in 2 of 5 processed frames" in warn[1]
    # ... and, with the frame from which the hand held it, which moved with the hand.
    held = eqx.tree_at(lambda r: r.carry_from, hid, jnp.int32(2), is_leaf=lambda x: x is None)
    warn = tr.term_warnings(seq, held, dino_weight=10.0, depth_weight=5.0)
    assert "moved with the hand in 1 (from frame 2 on" in warn[1]
    assert "onset + 1" not in warn[1]  # the field absent (an older result): nothing claimed
    # Where contact did not choose that frame (no touch at the anchor), the warning says so.
    for by_contact in (True, False):
        r = eqx.tree_at(lambda r: r.carry_by_contact, held, jnp.bool_(by_contact),
                        is_leaf=lambda x: x is None)
        warn = tr.term_warnings(seq, r, dino_weight=10.0, depth_weight=5.0)
        assert ("Eq. 8's onset + 1, not where the hand reached" in warn[1]) == (not by_contact)
        assert "anchor frame 0" in warn[1] or by_contact
    assert "left where it was in 1" in warn[1]
    # ... and a hidden anchor frame (anchor 0 here) gets its own line.
    hid_anchor = eqx.tree_at(lambda r: r.hidden, hid, jnp.asarray([1, 1, 0, 0, 0, 0], bool))
    warn = tr.term_warnings(seq, hid_anchor, dino_weight=10.0, depth_weight=5.0)
    assert len(warn) == 3 and "not visible in the anchor frame 0" in warn[2]
    # Weight 0: switched off on purpose, nothing to say.
    assert tr.term_warnings(seq, _result(terms, processed), 0.0, 5.0) == []
    # No features at all: said as such, with the command that computes them.
    bare = dataclasses.replace(seq, features=None)
    msg = tr.term_warnings(bare, _result(np.ones_like(terms), processed), 10.0, 5.0)
    assert len(msg) == 1 and "hoijax features" in msg[0]
    assert all(np.isnan(v) for v in tr.term_activity(_result(terms, np.zeros(N, bool))).values())


def test_interact_left_out_before_the_carry_frame_is_counted_inactive_and_said(seq, tmp_path):
    """With TrackConfig.interact_in_hand, step 2 leaves L_interact out of the frames before
    carry_from: its logged value there does not make it active, and the warning says where."""
    terms = np.ones((N, len(tr.STEP_TERMS)))
    processed = np.array([1, 1, 1, 1, 1, 0], bool)
    held = eqx.tree_at(lambda r: r.carry_from, _result(terms, processed), jnp.int32(2),
                       is_leaf=lambda x: x is None)
    assert tr.term_activity(held)["interact"] == 1.0  # AGILE's every frame: logged, active
    act = tr.term_activity(held, interact_in_hand=True)
    assert act["interact"] == pytest.approx(3 / 5) and act["mask"] == 1.0
    warn = tr.term_warnings(seq, held, 10.0, 5.0, interact_weight=1.0, interact_in_hand=True)
    assert warn == ["L_interact was left out of 2 of 5 fitted frames, those before frame 2 "
                    "where the hand does not yet hold the object (TrackConfig.interact_in_hand;"
                    " the result still logs its value there)"]
    # Off, weight 0, or no carry frame (an older result): nothing left out, nothing said.
    assert tr.term_warnings(seq, held, 10.0, 5.0, 1.0, interact_in_hand=False) == []
    assert tr.term_warnings(seq, held, 10.0, 5.0, 0.0, interact_in_hand=True) == []
    bare = _result(terms, processed)
    assert tr.term_warnings(seq, bare, 10.0, 5.0, 1.0, interact_in_hand=True) == []
    assert tr.term_activity(bare, interact_in_hand=True)["interact"] == 1.0
    # Hidden frames are not fitted (no step 2): they are not counted as left out.
    hid = eqx.tree_at(lambda r: r.hidden, held, jnp.asarray([0, 1, 0, 1, 0, 0], bool),
                      is_leaf=lambda x: x is None)
    warn = tr.term_warnings(seq, hid, 10.0, 5.0, 1.0, interact_in_hand=True)
    assert "L_interact was left out of 1 of 3 fitted frames, those before frame 2" in warn[0]
    # save_run passes the run's own setting: summary.json and result.json say the same.
    for in_hand in (True, False):
        run = tr.TrackRun(results={"held": held}, errors={}, overflow=[], capacity={},
                          timing={}, config=tr.TrackConfig(interact_in_hand=in_hand),
                          hypers=[tr.TrackHyper()], mano=tr.ManoSource.synthetic())
        report = tr.save_run(tmp_path / str(in_hand), run, {"held": seq}, evals={})
        assert report["terms_active"]["held"]["interact"] == (0.6 if in_hand else 1.0)
        said = any("L_interact was left out of 2 of 5" in w
                   for w in report["warnings"].get("held", []))
        assert said == in_hand


def test_input_warnings_name_empty_masks_missing_and_collapsed_keypoints(seq):
    assert tr.input_warnings(seq) == []  # the light-occlusion benchmark sequence is fine
    om = np.asarray(seq.object_mask).copy()
    om[:4] = False
    empty = dataclasses.replace(seq, object_mask=jnp.asarray(om))
    assert tr.input_warnings(empty) == [f"object mask empty in 4 of {N} frames"]
    om[:3] = np.asarray(seq.object_mask)[:3]  # 1 of 6 empty: below the threshold
    assert tr.input_warnings(dataclasses.replace(seq, object_mask=jnp.asarray(om))) == []
    kp = np.asarray(seq.keypoints_px).copy()
    kp[:] = kp[:, :1] + np.random.default_rng(0).uniform(-0.5, 0.5, kp.shape)  # all near joint 0
    one = dataclasses.replace(seq, keypoints_px=jnp.asarray(kp, jnp.float32))
    (line,) = tr.input_warnings(one)
    assert "collapsed to one point" in line
    gone = dataclasses.replace(seq, keypoints_conf=jnp.zeros_like(seq.keypoints_conf))
    assert tr.input_warnings(gone) == [f"no hand keypoint in {N} of {N} frames"]


def _obs(mask: np.ndarray, feature_hw: tuple[int, int]):
    from hoijax.tracking._state import FrameObs

    h, w = mask.shape
    return FrameObs(K=jnp.eye(3), object_mask=jnp.asarray(mask), hand_mask=jnp.zeros((h, w), bool),
                    keypoints_px=jnp.zeros((21, 2)), keypoints_conf=jnp.zeros(21), depth_m=None,
                    feature_map=jnp.zeros((*feature_hw, 8)), hand_points=None,
                    hand_points_valid=None)


def test_dino_support_strict_and_adaptive_at_coarse_feature_maps():
    """A 20 × 20 object on a 128² frame: with 4-pixel cells the strict rule keeps its interior
    (eroded by 4 px: 12 × 12); at DINO's native 16-pixel cells it keeps nothing, and the
    adaptive rule falls back to half a cell (8 px: 4 × 4 = 16 px < 2 cells' worth, 512) and
    then to the object itself; a large object keeps the strict rule in both modes."""
    from hoijax.tracking.stages import dino_support

    mask = np.zeros((128, 128), bool)
    mask[50:70, 40:60] = True
    fine = _obs(mask, (32, 32))
    assert int(dino_support(fine).sum()) == 12 * 12
    assert int(dino_support(fine, "adaptive").sum()) == 12 * 12  # enough: unchanged
    coarse = _obs(mask, (8, 8))
    assert int(dino_support(coarse).sum()) == 0
    np.testing.assert_array_equal(dino_support(coarse, "adaptive"), mask)
    big = np.zeros((128, 128), bool)
    big[20:100, 10:110] = True  # 80 × 100: strict leaves 48 × 68 = 3264 ≥ 512
    np.testing.assert_array_equal(dino_support(_obs(big, (8, 8)), "adaptive"),
                                  dino_support(_obs(big, (8, 8))))
    assert int(dino_support(_obs(big, (8, 8))).sum()) == 48 * 68
    mid = np.zeros((128, 128), bool)
    mid[30:70, 30:70] = True  # 40²: strict (16 px) leaves 8² = 64 < 512, half (8 px) 24² = 576
    assert int(dino_support(_obs(mid, (8, 8)), "adaptive").sum()) == 24 * 24


def _holed(seq):
    """``seq`` with one face of its object mesh dropped: three open edges."""
    fv = np.asarray(seq.mesh.face_valid).copy()
    fv[np.flatnonzero(fv)[0]] = False
    return dataclasses.replace(seq, mesh=dataclasses.replace(seq.mesh,
                                                             face_valid=jnp.asarray(fv)))


def test_a_mesh_that_is_not_watertight_is_named(seq):
    (line,) = tr.input_warnings(_holed(seq))
    assert line.startswith("object mesh is not watertight (3 open or non-manifold edges, 0 ")
    flipped = np.asarray(seq.mesh.faces).copy()
    flipped[0] = flipped[0, ::-1]  # one face wound against its neighbours
    (line,) = tr.input_warnings(dataclasses.replace(
        seq, mesh=dataclasses.replace(seq.mesh, faces=jnp.asarray(flipped))))
    assert "0 open or non-manifold edges, 3 inconsistently wound" in line


def test_save_run_flags_each_suspect_sequence_by_name(seq, tmp_path):
    """``summary.json`` and each ``result.json`` carry the warnings of their own sequence
    only, one list per suspect input; a clean sequence has none."""
    import json

    from hoijax import tracking

    om = np.asarray(seq.object_mask).copy()
    om[:5] = False
    kp = np.asarray(seq.keypoints_px).copy()
    kp[:] = kp[:, :1]
    seqs = {"clean": seq, "holed": _holed(seq),
            "no_mask": dataclasses.replace(seq, object_mask=jnp.asarray(om)),
            "one_point": dataclasses.replace(seq, keypoints_px=jnp.asarray(kp, jnp.float32))}
    terms = np.ones((N, len(tr.STEP_TERMS)))
    res = _result(terms, np.ones(N, bool))
    run = tracking.TrackRun(results={k: res for k in seqs}, errors={}, overflow=[],
                            capacity={}, timing={}, config=tr.TrackConfig(),
                            hypers=[tr.TrackHyper()], mano=tr.ManoSource.synthetic())
    report = tr.save_run(tmp_path, run, seqs, evals={})
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["warnings"] == report["warnings"]
    assert sorted(summary["warnings"]) == ["holed", "no_mask", "one_point"]
    expect = {"holed": "not watertight", "no_mask": "object mask empty in 5 of",
              "one_point": "collapsed to one point"}
    for name, text in expect.items():
        (line,) = summary["warnings"][name]
        assert text in line, (name, line)
    for name in seqs:
        meta = json.loads((tmp_path / name / "result.json").read_text())["meta"]
        assert meta["warnings"] == summary["warnings"].get(name, [])
        assert summary["terms_active"][name]["mask"] == 1.0
