"""The tracker's building blocks: early-stopping Adam, the onset frame (Eq. 8), the schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hoijax import geometry, tracking


def _quadratic(center):
    def loss(p):
        d = p["t"] - center
        return jnp.sum(d**2), {"sq": jnp.sum(d**2)}
    return loss


def test_minimize_matches_optax_adam_step_by_step():
    center = jnp.array([0.3, -0.2, 0.1])
    loss = _quadratic(center)
    res = tracking.minimize(loss, {"t": jnp.zeros(3)}, {"t": 1e-2}, max_iters=25, tol=0.0)
    opt = optax.adam(1e-2)
    p, s = {"t": jnp.zeros(3)}, opt.init({"t": jnp.zeros(3)})
    for _ in range(25):
        g = jax.grad(lambda q: loss(q)[0])(p)
        u, s = opt.update(g, s, p)
        p = optax.apply_updates(p, u)
    np.testing.assert_allclose(res.params["t"], p["t"], rtol=1e-5, atol=1e-7)
    assert int(res.num_iters) == 25 and not bool(res.converged)
    # The trace holds the loss before each step, decreasing on this convex problem.
    assert res.trace.shape == (25, 2)
    assert np.all(np.diff(np.asarray(res.trace[:, 0])) < 0)
    np.testing.assert_allclose(res.trace[:, 0], res.trace[:, 1])


def test_minimize_per_group_learning_rates():
    """Separate step sizes per leaf (AGILE: rotation 2e-3, translation 1e-3): Adam's first step
    moves each coordinate by exactly its learning rate."""
    loss = lambda p: (jnp.sum(p["r"]) + jnp.sum(p["t"]), {})  # noqa: E731
    res = tracking.minimize(loss, {"r": jnp.zeros(3), "t": jnp.zeros(3)},
                            {"r": 2e-3, "t": 1e-3}, max_iters=1, tol=0.0)
    np.testing.assert_allclose(res.params["r"], -2e-3, rtol=1e-4)
    np.testing.assert_allclose(res.params["t"], -1e-3, rtol=1e-4)


def _stage_problem(p):
    d = p["a"] - jnp.array([1.0, -2.0])
    e = p["b"] - 0.5 * p["a"][0]
    return jnp.sum(d**2) + 3.0 * e**2, {"d": jnp.sum(d**2), "e": e**2}


def test_minimize_stages_equals_successive_minimize_calls():
    """Stages in one loop take exactly the steps of successive minimize calls, each starting
    a fresh Adam where the last stopped: one group held in the first stage (rate 0), a stage
    that stops early by convergence, smaller steps last; solo and under vmap (per problem)."""
    stages = [({"a": 0.05, "b": 0.0}, 40), ({"a": 0.05, "b": 0.05}, 400),
              ({"a": 0.01, "b": 0.01}, 30)]
    starts = {"a": jnp.array([[0.0, 0.0], [3.0, 1.0]]), "b": jnp.array([0.0, -1.0])}

    def successive(p0):
        p, n, outs = p0, 0, []
        for rates, cap in stages:
            out = tracking.minimize(_stage_problem, p, rates, max_iters=cap, tol=1e-3)
            p, n = out.params, n + int(out.num_iters)
            outs.append(out)
        return p, n, outs

    batched = jax.jit(jax.vmap(lambda p: tracking.minimize_stages(
        _stage_problem, p, stages, tol=1e-3)))(starts)
    for k in range(2):
        p0 = jax.tree.map(lambda x: x[k], starts)
        p, n, outs = successive(p0)
        # The middle stage converged before its cap, so the stage switch came from the test.
        assert 0 < int(outs[1].num_iters) < 400 and bool(outs[1].converged)
        assert int(outs[0].num_iters) == 40 and float(outs[0].params["b"]) == float(p0["b"])
        solo = tracking.minimize_stages(_stage_problem, p0, stages, tol=1e-3)
        for res in (solo, jax.tree.map(lambda x: x[k], batched)):
            assert int(res.num_iters) == n
            np.testing.assert_allclose(res.params["a"], p["a"], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(res.params["b"], p["b"], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(res.loss, outs[-1].loss, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(res.terms["e"], outs[-1].terms["e"], rtol=1e-5,
                                       atol=1e-7)
            assert bool(res.converged) == bool(outs[-1].converged)
            assert res.trace.shape == (470, 3)
            np.testing.assert_allclose(res.trace[:n], np.concatenate(
                [np.asarray(o.trace[:int(o.num_iters)]) for o in outs]), rtol=1e-5, atol=1e-7)
            assert not np.any(np.asarray(res.trace[n:]))


def test_minimize_stages_without_any_step():
    """Every cap 0: the start comes back unchanged with zero terms; no loop is built."""
    p0 = {"a": jnp.ones(2), "b": jnp.zeros(())}
    res = tracking.minimize_stages(_stage_problem, p0, [({"a": 0.1, "b": 0.1}, 0)])
    assert int(res.num_iters) == 0 and not bool(res.converged) and bool(res.finite)
    np.testing.assert_array_equal(res.params["a"], p0["a"])
    assert float(res.terms["d"]) == 0.0 and res.trace.shape == (0, 3)


def test_early_stop_is_per_problem_under_vmap():
    """Under vmap each problem stops on its own criterion: a problem starting at its optimum
    stops after `window` steps, a far one keeps going, and the results equal solo runs."""
    centers = jnp.array([[0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])

    def solve(c):
        return tracking.minimize(_quadratic(c), {"t": jnp.zeros(3)}, {"t": 1e-2},
                                 max_iters=300, tol=1e-4, window=5)

    batched = jax.jit(jax.vmap(solve))(centers)
    iters = np.asarray(batched.num_iters)
    assert iters[0] == 5 and bool(batched.converged[0])
    assert iters[1] == 300 and not bool(batched.converged[1])
    for b in range(2):
        solo = jax.jit(solve)(centers[b])
        assert int(solo.num_iters) == iters[b]
        np.testing.assert_allclose(solo.params["t"], batched.params["t"][b], rtol=1e-6)
        # Steps after the stop are not recorded.
        assert np.all(np.asarray(batched.trace[b, iters[b]:]) == 0)


def test_minimize_stops_on_non_finite_loss_without_applying_it():
    def loss(p):
        val = jnp.where(p["t"][0] < -0.0025, jnp.nan, jnp.sum(p["t"]))
        return val, {}
    res = tracking.minimize(loss, {"t": jnp.zeros(2)}, {"t": 1e-3}, max_iters=50, tol=0.0)
    assert not bool(res.finite)
    assert np.all(np.isfinite(np.asarray(res.params["t"])))
    assert int(res.num_iters) == 4  # three good steps reach -0.003, the fourth evaluates NaN


def test_minimize_evaluates_the_objective_only_inside_its_loop():
    """The objective is compiled once, in the loop's body: no evaluation before the loop (for
    the tracker, a second copy of the rasterizer in the program). A problem that takes no step
    keeps its parameters and reports zeros."""

    def loss(p):
        return jnp.sum(jnp.sin(p["t"])), {"s": jnp.sum(jnp.cos(p["t"]))}

    def solve(t, active):
        return tracking.minimize(loss, {"t": t}, {"t": 1e-2}, max_iters=5, active=active)

    jaxpr = jax.make_jaxpr(solve)(jnp.ones(3), True).jaxpr
    top = [e.primitive.name for e in jaxpr.eqns]
    assert "while" in top and "sin" not in top and "cos" not in top, top
    idle = solve(jnp.ones(3), False)
    assert int(idle.num_iters) == 0 and float(idle.loss) == 0.0 and float(idle.terms["s"]) == 0
    np.testing.assert_array_equal(idle.params["t"], np.ones(3))
    # With a step, the reported loss is the last evaluation's (before the last step).
    one = tracking.minimize(loss, {"t": jnp.ones(3)}, {"t": 1e-2}, max_iters=1, tol=0.0)
    np.testing.assert_allclose(float(one.loss), 3 * np.sin(1.0), rtol=1e-6)


def _disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def test_onset_frame_eq8():
    """Static object for 4 frames, then it moves: the onset is the frame before the first move
    (r_i compares i and i+1). A hand covering the moving part hides the motion."""
    h, w = 40, 40
    centers = [20, 20, 20, 20, 23, 26, 29, 32]
    mo = np.stack([_disk(h, w, 20, c, 6) for c in centers])
    mh = np.zeros_like(mo)
    iof, found = tracking.onset_frame(mo, mh)
    assert bool(found) and int(iof) == 3
    r = np.asarray(tracking.motion_ratio(mo, mh))
    expected = np.abs(mo[4].astype(float) - mo[3]).sum() / mo[3].sum()
    np.testing.assert_allclose(r[3], expected, rtol=1e-6)
    assert np.all(r[:3] == 0)
    # A hand over the object in frame 3 hides the pairs (2, 3) and (3, 4): the onset moves on.
    mh[3] = _disk(h, w, 20, 22, 10)
    assert int(tracking.onset_frame(mo, mh)[0]) == 4
    # A threshold above every ratio: not found, fallback to the largest untruncated object.
    iof, found = tracking.onset_frame(mo, np.zeros_like(mo), tau=10.0)
    assert not bool(found) and mo[int(iof)].sum() == mo.sum((1, 2)).max()


def test_onset_frame_skips_truncated_and_padded_frames():
    h, w = 30, 30
    mo = np.stack([_disk(h, w, 15, c, 5) for c in [3, 8, 13, 18, 23, 23]])  # frame 0 on border
    iof, found = tracking.onset_frame(mo, np.zeros_like(mo))
    assert bool(found) and int(iof) == 1
    # With only the first frame valid, no pair qualifies.
    valid = np.array([True, False, False, False, False, False])
    assert not bool(tracking.onset_frame(mo, np.zeros_like(mo), valid)[1])


@pytest.mark.parametrize("ends", [False, True])
@pytest.mark.parametrize("n,stride", [(10, 1), (23, 5), (7, 3), (1, 5)])
def test_bidirectional_schedule_covers_each_strided_frame_once(n, stride, ends):
    """Every stride-th frame from the onset, forward then backward, each once; with ``ends``
    also the last valid frame and frame 0 when the stride skips them (so no frame is after the
    last processed one or before the first)."""
    for onset in range(n):
        for num_valid in {n, max(onset + 1, n - 2)}:
            s = tracking.bidirectional_schedule(jnp.int32(onset), jnp.int32(num_valid), n,
                                                stride, ends)
            assert s.frame.shape == (tracking.num_steps(n, stride, ends),)
            frames = np.asarray(s.frame)[np.asarray(s.active)]
            expected_fwd = list(range(onset, num_valid, stride))
            expected_bwd = list(range(onset - stride, -1, -stride))
            if ends and expected_fwd[-1] != num_valid - 1:
                expected_fwd.append(num_valid - 1)
            if ends and onset % stride:
                expected_bwd.append(0)
            assert frames.tolist() == expected_fwd + expected_bwd
            if ends:
                assert frames.min() == 0 and frames.max() == num_valid - 1
            # Active steps are a prefix; the onset and the first backward step restart.
            act = np.asarray(s.active)
            assert act[: act.sum()].all()
            restarts = np.flatnonzero(np.asarray(s.from_onset) & act).tolist()
            assert restarts == ([0, len(expected_fwd)] if expected_bwd else [0])


@pytest.mark.parametrize("n,stride", [(10, 1), (23, 5), (7, 3), (1, 5)])
def test_adaptive_schedule_is_the_fixed_one_when_the_motion_allows_and_every_frame_when_not(
        n, stride):
    """Steps the test always accepts give exactly the fixed schedule with its ends; steps it
    never accepts process every frame, forward from the onset and then backward."""
    for onset in range(n):
        for num_valid in {n, max(onset + 1, n - 2)}:
            args = (jnp.int32(onset), jnp.int32(num_valid), n, stride)
            fixed = tracking.bidirectional_schedule(*args, True)
            for ok, expected in ((True, None), (False, list(range(onset, num_valid))
                                                + list(range(onset - 1, -1, -1)))):
                s = tracking.adaptive_schedule(*args, lambda a, b, ok=ok: jnp.asarray(ok))
                assert s.frame.shape == (n,)
                act = np.asarray(s.active)
                frames = np.asarray(s.frame)[act].tolist()
                if expected is None:
                    expected = np.asarray(fixed.frame)[np.asarray(fixed.active)].tolist()
                    assert (np.flatnonzero(np.asarray(s.from_onset) & act).tolist()
                            == np.flatnonzero(np.asarray(fixed.from_onset)
                                              & np.asarray(fixed.active)).tolist())
                assert frames == expected
                assert act[: act.sum()].all()


def test_adaptive_schedule_shortens_only_the_fast_steps():
    """A position that jumps between frames 8 and 9 (and nowhere else): the steps across the
    jump shrink until each accepted step stays under the limit, the others keep the stride."""
    pos = jnp.asarray(np.r_[np.arange(9) * 0.1, 5.0 + np.arange(11) * 0.1])

    def ok(a, b):
        return jnp.abs(pos[b] - pos[a]) <= 1.0

    s = tracking.adaptive_schedule(jnp.int32(0), jnp.int32(20), 20, 5, ok)
    frames = np.asarray(s.frame)[np.asarray(s.active)].tolist()
    # 0 → 5 (0.5), 5 → 8 (the farthest under the limit), 8 → 9 (the jump: one frame,
    # accepted or not), 9 → 14 → 19.
    assert frames == [0, 5, 8, 9, 14, 19]
    steps = np.diff(frames)
    assert all(ok(a, b) or b - a == 1 for a, b in zip(frames, frames[1:]))
    assert steps.max() == 5


def test_the_tracker_shortens_the_steps_where_the_hand_moves_fast():
    """The tracker's schedule with ``max_step_motion``: the limit is that fraction of the
    object's diameter (the scaled mesh's bounding-box diagonal), the motion the mean
    displacement of the hand's keypoints; the frames beyond the fixed schedule are counted
    and announced to the progress receiver before its first frame. 0 keeps the fixed
    stride."""
    from hoijax.data import ObjectMesh
    from hoijax.tracking._track import _schedule

    n = 12
    verts = jnp.asarray([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, 0.3],
                         [9.0, 9.0, 9.0]])  # the last vertex only in a padded face
    mesh = ObjectMesh(vertices=verts, faces=jnp.asarray([[0, 1, 2], [0, 2, 3], [4, 4, 4]]),
                      face_valid=jnp.asarray([True, True, False]))
    scale = jnp.asarray([2.0, 1.0, 1.0])
    diameter = np.sqrt(0.2**2 + 0.2**2 + 0.3**2)
    np.testing.assert_allclose(float(tracking.object_diameter(mesh, scale)), diameter,
                               rtol=1e-6)
    # The hand rests, then jumps by half the diameter between frames 6 and 7.
    t = np.zeros((n, 3))
    t[7:, 0] = 0.5 * diameter
    kps = jnp.asarray(np.random.default_rng(0).normal(size=(n, 21, 3)) * 0.01)
    # The same articulation in every frame, moved by t.
    kps = jnp.broadcast_to(kps[:1], (n, 21, 3)) + jnp.asarray(t, jnp.float32)[:, None]
    def frames(limit):
        config = tracking.TrackConfig(stride=5, max_step_motion=limit)
        s, extra = _schedule(config, jnp.ones(n, bool), mesh, scale, kps, jnp.int32(0))
        return np.asarray(s.frame)[np.asarray(s.active)].tolist(), int(extra)

    assert frames(0.0) == ([0, 5, 10, 11], 0)
    # Above half the diameter the jump fits in a step: the fixed schedule.
    assert frames(0.6) == ([0, 5, 10, 11], 0)
    # Below it, the step across the jump goes one frame: 0 → 5 → 6 → 7 → 11, one frame more.
    assert frames(0.4) == ([0, 5, 6, 7, 11], 1)
    # The progress receiver gets the extra frames before it counts the first one.
    calls = []
    progress = tracking.Progress(fn=lambda: calls.append("frame"),
                                 grow=lambda k: calls.append(k))
    progress(True, 3)
    progress(False, 0)
    progress(True, 0)
    assert calls == [3, "frame", "frame"]
    with pytest.raises(ValueError, match="max_step_motion"):
        tracking.TrackConfig(max_step_motion=-0.1)
    with pytest.raises(ValueError, match="process_ends"):
        tracking.TrackConfig(max_step_motion=0.3, process_ends=False)


def test_a_hidden_object_is_carried_by_the_palm_and_hidden_frames_are_found():
    """``carried_pose``: keypoints moved rigidly move the object by the same motion (whatever
    the fingers do, only the palm counts); ``hidden_frames``: masks under the fraction of the
    largest valid one, padded frames never."""
    from hoijax.tracking import carried_pose, hidden_frames

    rng = np.random.default_rng(3)
    kps = rng.normal(size=(21, 3)) * 0.05 + np.array([0.0, 0.0, 0.5])
    R = np.asarray(geometry.axis_angle_to_matrix(jnp.asarray([0.3, -0.2, 0.5])))
    t = np.array([0.04, -0.02, 0.03])
    moved = kps @ R.T + t
    moved[[2, 3, 4, 7, 8, 11, 12, 15, 16, 19, 20]] += rng.normal(size=(11, 3)) * 0.02  # fingers
    T = np.eye(4)
    T[:3, :3] = np.asarray(geometry.axis_angle_to_matrix(jnp.asarray([0.1, 0.2, -0.3])))
    T[:3, 3] = [0.01, 0.02, 0.55]
    got = np.asarray(carried_pose(jnp.asarray(T), jnp.asarray(kps), jnp.asarray(moved)))
    want = np.eye(4)
    want[:3, :3], want[:3, 3] = R @ T[:3, :3], R @ T[:3, 3] + t
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Standing still: the pose is kept.
    same = carried_pose(jnp.asarray(T), jnp.asarray(kps), jnp.asarray(kps))
    np.testing.assert_allclose(np.asarray(same), T, atol=1e-5)

    mask = np.zeros((5, 8, 8), bool)
    mask[0, :4, :4] = True   # 16 pixels: the largest
    mask[1, :1, :1] = True   # 1 of 16
    mask[2, :2, :2] = True   # 4 of 16
    mask[4] = True           # padded: ignored, and never hidden
    valid = jnp.asarray([True, True, True, True, False])
    hidden = hidden_frames(jnp.asarray(mask), valid, 0.1)
    assert np.asarray(hidden).tolist() == [False, True, False, True, False]
    assert not np.asarray(hidden_frames(jnp.asarray(mask), valid, 0.0)).any()
    with pytest.raises(ValueError, match="hidden_fraction"):
        tracking.TrackConfig(hidden_fraction=1.0)


def test_hidden_frames_are_carried_from_where_the_hand_reaches_the_object():
    """``carry_from``: the start of the unbroken run of frames up to the anchor in which the
    hand (each frame's initial one, moved by the anchor's refinement) comes within
    ``contact_m`` of the object at the anchor's pose; the onset rule (``onset + 1``) where the
    hand does not touch it at the anchor, or ``contact_m`` is 0. The object: a sphere's
    exact SDF on a grid (points beyond the box get an upper bound, here far anyway)."""
    from hoijax import sdf
    from hoijax.tracking import stages

    radius, centre, res = 0.04, np.array([0.0, 0.0, 0.5]), 24
    axis = np.linspace(-0.12, 0.12, res)
    pts = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1)
    grid = sdf.SdfGrid(jnp.asarray(np.linalg.norm(pts, axis=-1) - radius, jnp.float32),
                       jnp.full(3, -0.12, jnp.float32), jnp.float32(axis[1] - axis[0]))
    T = np.eye(4)
    T[:3, 3] = centre
    # The hand's closest point per frame, metres from the surface along +x (the hand: a small
    # cloud of 778 points behind that point). Frame 2 comes close and leaves again.
    gaps = np.array([0.09, 0.06, 0.012, 0.05, 0.015, 0.008, 0.0, -0.004, 0.002])
    n, anchor = len(gaps), 6
    cloud = np.random.default_rng(0).uniform(0.0, 0.03, (778, 3)) * [1.0, 0.3, 0.3]
    verts = np.stack([cloud + [radius + g, 0.0, 0.0] for g in gaps])
    t_init = np.tile(centre, (n, 1))
    shift = np.array([0.003, 0.0, 0.0])  # the anchor's refinement of the translation
    hand = stages.HandPose(verts_rel=jnp.asarray(verts - shift, jnp.float32),
                           kps_rel=jnp.zeros((n, 21, 3)), normals_rel=jnp.zeros((n, 778, 3)),
                           t_init=jnp.asarray(t_init, jnp.float32))
    on = stages.TrackState(jnp.asarray(T, jnp.float32), jnp.ones(3, jnp.float32),
                           jnp.asarray(centre + shift, jnp.float32), jnp.zeros((778, 3)))
    valid = jnp.ones(n, bool)

    def first(contact_m, anchor=anchor, onset=1, valid=valid):
        frame, by_contact = stages.carry_from(on, grid, hand, valid, jnp.int32(anchor),
                                              jnp.int32(onset), contact_m)
        # Contact chose the frame exactly where the hand touches at the anchor.
        assert bool(by_contact) == (contact_m > 0 and gaps[anchor] < contact_m)
        return int(frame)

    assert first(0.02) == 4        # frame 3 is 5 cm away; 4 to the anchor within 2 cm
    assert first(0.01) == 5        # frame 4 (1.5 cm) no longer counts
    assert first(0.1) == 0         # every frame touches
    assert first(0.0) == 2         # off: the frame after the onset
    assert first(0.02, anchor=1) == 2   # not touching at the anchor: the onset rule
    assert first(0.02, valid=valid.at[5].set(False)) == 6  # an invalid frame breaks the run
    # The anchor's refinement moves every frame's hand 3 mm out: without it frame 4 would be
    # 1.2 cm away and count at 1.4 cm.
    assert first(0.014) == 5
    with pytest.raises(ValueError, match="carry_contact_m"):
        tracking.TrackConfig(carry_contact_m=-0.01)


def _pose(w, t):
    T = np.eye(4)
    T[:3, :3] = np.asarray(geometry.axis_angle_to_matrix(jnp.asarray(w, jnp.float64)))
    T[:3, 3] = t
    return T


def test_predict_pose_continues_a_constant_velocity_both_ways():
    """Rotation at a constant rate about a fixed axis (camera axes, about the object's origin)
    and a linear translation: the prediction is exact for any gap, forwards and backwards;
    with no history it is the previous pose; factor 0.5 goes half way."""
    axis = np.array([0.2, -0.5, 0.8]) / np.linalg.norm([0.2, -0.5, 0.8])
    R0 = np.asarray(geometry.axis_angle_to_matrix(jnp.asarray([0.3, 0.1, -0.2])))
    v = np.array([0.01, -0.004, 0.002])

    def at(f):
        T = _pose(axis * np.radians(4.0) * f, np.array([0.0, 0.0, 0.5]) + v * f)
        T[:3, :3] = T[:3, :3] @ R0
        return T

    with jax.enable_x64(True):
        for f_before, f_prev, f in ((0, 5, 10), (0, 5, 8), (10, 5, 0), (12, 7, 5)):
            got = tracking.predict_pose(jnp.asarray(at(f_prev)), jnp.asarray(at(f_before)),
                                  jnp.asarray(f_prev), jnp.asarray(f_before), jnp.asarray(f),
                                  1.0)
            np.testing.assert_allclose(np.asarray(got), at(f), atol=1e-9)
        none = tracking.predict_pose(jnp.asarray(at(5)), jnp.asarray(at(5)), jnp.asarray(5),
                               jnp.asarray(5), jnp.asarray(10), 1.0)
        np.testing.assert_allclose(np.asarray(none), at(5), atol=1e-12)
        # Standing still: a finite identity increment (the log map at 0).
        still = tracking.predict_pose(jnp.asarray(at(5)), jnp.asarray(at(5)), jnp.asarray(5),
                                jnp.asarray(0), jnp.asarray(10), 1.0)
        np.testing.assert_allclose(np.asarray(still), at(5), atol=1e-9)
        half = tracking.predict_pose(jnp.asarray(at(5)), jnp.asarray(at(0)), jnp.asarray(5),
                               jnp.asarray(0), jnp.asarray(10), 0.5)
        np.testing.assert_allclose(np.asarray(half), at(7.5), atol=1e-9)
    with pytest.raises(ValueError, match="motion_prediction"):
        tracking.TrackConfig(motion_prediction=-1.0)


def test_lm_blur_levels_are_validated():
    assert tracking.TrackConfig(solver="lm", lm_coarse_sigma_px2=(4.0, 0.5)).lm_level_iters == 10
    with pytest.raises(ValueError, match="positive"):
        tracking.TrackConfig(lm_coarse_sigma_px2=(0.0,))
    # Three levels of 10 evaluations leave none of 30 for the sharp silhouette.
    with pytest.raises(ValueError, match="leave no evaluations"):
        tracking.TrackConfig(lm_coarse_sigma_px2=(8.0, 2.0, 1.0), lm_iters=30)
    # The mask levels count towards the same budget, and are weight factors below 1.
    assert tracking.TrackConfig(lm_mask_levels=(0.0,), lm_coarse_sigma_px2=(4.0,)).lm_iters == 30
    with pytest.raises(ValueError, match="leave no evaluations"):
        tracking.TrackConfig(lm_mask_levels=(0.0, 0.1), lm_coarse_sigma_px2=(4.0,), lm_iters=30)
    for bad in ((1.0,), (-0.1,)):
        with pytest.raises(ValueError, match="lm_mask_levels"):
            tracking.TrackConfig(lm_mask_levels=bad)
