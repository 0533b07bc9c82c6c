"""No silent degradation (hoijax.tracking._checks): loss terms inactive in most processed frames,
and suspect but loadable inputs, are named; on hand-made sequences and results."""

from __future__ import annotations

import dataclasses

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
    # Weight 0: switched off on purpose, nothing to say.
    assert tr.term_warnings(seq, _result(terms, processed), 0.0, 5.0) == []
    # No features at all: said as such, with the command that computes them.
    bare = dataclasses.replace(seq, features=None)
    msg = tr.term_warnings(bare, _result(np.ones_like(terms), processed), 10.0, 5.0)
    assert len(msg) == 1 and "hoijax features" in msg[0]
    assert all(np.isnan(v) for v in tr.term_activity(_result(terms, np.zeros(N, bool))).values())


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
