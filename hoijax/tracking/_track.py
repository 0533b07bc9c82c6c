"""The whole tracker for one sequence, and its batched, compiled form.

``track_sequence`` is one pure function of one padded sequence and reads as the pipeline:
initialization (§3.2: the hand, the object's starting pose, the onset frame), the anchor
frame's stages, then one ``lax.scan`` over the bidirectional schedule (§3.3) whose steps are
step 1 and step 2 with early stopping (:mod:`hoijax.tracking._stages`). ``track_batch`` is
``jit(vmap(track_sequence))``, and ``ablate_batch`` adds an outer ``vmap`` over a grid of
:class:`TrackHyper`: every sequence and every weight setting in one compiled program
(``TrackConfig.batching="map"`` runs them one after another in a loop instead, so a
result is the same bit for bit whatever else is in the batch). Nothing
depends on Python control flow over traced values, so a batch of the same padded shapes never
recompiles.

With a program folder (:func:`~hoijax.tracking.use_program_cache`, set by the commands),
``track_batch`` runs the same functions as three programs kept on disk instead
(:mod:`hoijax.tracking._programs`): ``_begin`` (initialization and the anchor frame's stages),
``_frame_step`` (one step of the schedule, called once per step) and ``_finish`` (the
assembly), so that a later process loads them without tracing.

Host-side preparation (:func:`prepare`) builds what needs a mesh on the CPU: the object's SDF
grid and its surface-sample pool.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Bool, Float, Int

from hoijax import geometry, losses, mano, sdf
from hoijax.tracking import _programs
from hoijax.data import HandParams, ObjectMesh, Sequence
from hoijax.tracking._init import hand_in_mano_frame
from hoijax.tracking._onset import onset_frame
from hoijax.tracking._optimize import MinimizeResult
from hoijax.tracking._schedule import Schedule, adaptive_schedule, bidirectional_schedule
from hoijax.tracking._settings import TrackConfig, TrackHyper
from hoijax.tracking._stages import (
    AnchorInput,
    HiddenObject,
    anchor_stages,
    carry_from,
    hand_stage,
    hand_step,
    initial_object,
    pose_matrix,
    track_frame,
)
from hoijax.tracking._state import (
    FrameInput,
    FrameObs,
    Hand,
    ObjectModel,
    TrackState,
    frame_at,
    observations,
)


class Progress:
    """A host-side receiver of the tracker's progress: ``fn()`` is called after every
    processed frame of a program compiled with it (``track_batch(..., progress=p)``).

    The compiled program holds this object (a static argument), so reuse one across calls
    (change :attr:`fn` for a new progress bar) instead of making a new one per call, which
    compiles a new program."""

    def __init__(self, fn=None, grow=None):
        self.fn = fn
        """Called with no arguments once per processed frame; None: ignored."""
        self.grow = grow
        """Called by the driver (:func:`~hoijax.tracking.track_sequences`) with the number of
        frames it will process beyond one pass over the sequences: re-runs of sequences whose
        rendering overflowed or whose batch failed, and padding slots, so a bar's total
        follows what :attr:`fn` will count; None: ignored."""

    def more(self, frames: int) -> None:
        """Announce ``frames`` more processed frames than planned (:attr:`grow`)."""
        if self.grow is not None and frames > 0:
            self.grow(frames)

    def __call__(self, active, extra=0) -> None:
        """One step of the tracker's scan: ``extra`` frames beyond the fixed schedule are
        announced (:meth:`more`; an adaptive schedule's, with its first step), then the
        frame is counted if ``active``."""
        self.more(int(extra))
        if self.fn is not None and bool(active):
            self.fn()


STEP_TERMS = ("depth", "dino", "interact", "mask")
"""Logged terms of step 2, in trace-column order (after the total)."""


class Prepared(eqx.Module):
    """Per-sequence inputs built on the host from the mesh (stackable: fixed sizes)."""

    grid: sdf.SdfGrid
    """Signed distance grid of the canonical mesh."""
    pool: losses.SurfacePoints
    """Area-uniform surface samples L_dino draws its visible points from."""


def prepare(seq: Sequence, config: TrackConfig, *, sdf_resolution: int = 32,
            seed: int = 0) -> Prepared:
    """SDF grid (winding-number sign, so small holes are tolerated) and the sample pool of one
    unbatched sequence. The grid has ``sdf_resolution`` points along the mesh's longest side
    and is grown to a cube of that side (:func:`_grow_grid`: same queries), so every sequence
    has one grid shape and sequences of different proportions share a compiled program."""
    m = seq.mesh
    keep = np.asarray(m.face_valid)
    grid = sdf.sdf_grid_from_mesh(np.asarray(m.vertices), np.asarray(m.faces)[keep],
                                  resolution=sdf_resolution, repair=True)
    side = max(sdf_resolution, *grid.values.shape)
    if grid.values.shape != (side,) * 3:
        grid = _grow_grid(grid, (side,) * 3)
    pool = losses.sample_surface(jax.random.PRNGKey(seed), m.vertices, m.faces,
                                 config.pool_points, m.face_valid)
    return Prepared(grid=grid, pool=pool)


def _grow_grid(grid: sdf.SdfGrid, shape: tuple[int, int, int]) -> sdf.SdfGrid:
    """The same field on a larger grid (same origin and voxel size): the new grid points take
    :func:`hoijax.sdf.query_sdf`'s values, extrapolation included, so queries agree."""
    idx = np.stack(np.meshgrid(*(np.arange(k) for k in shape), indexing="ij"), -1)
    pts = grid.origin + grid.voxel_size * jnp.asarray(idx.reshape(-1, 3), grid.origin.dtype)
    values = sdf.query_sdf(grid, pts).reshape(shape)
    return sdf.SdfGrid(values=values, origin=grid.origin, voxel_size=grid.voxel_size)


def stack_prepared(preps: list[Prepared]) -> Prepared:
    """Stack per-sequence preparations along a new leading axis; grids of different shapes
    (meshes of different proportions) are grown to the largest in each dimension."""
    shape = tuple(int(max(p.grid.values.shape[i] for p in preps)) for i in range(3))
    grown = [eqx.tree_at(lambda p: p.grid, p, _grow_grid(p.grid, shape))
             if p.grid.values.shape != shape else p for p in preps]
    return jax.tree.map(lambda *x: jnp.stack(x), *grown)


class TrackResult(eqx.Module):
    """What the tracker returns for one sequence (leading axes when batched).

    Poses are for every frame: processed frames carry the optimized values, the frames between
    them (``stride`` > 1) are interpolated (translation linearly, rotation along the geodesic),
    and padded frames repeat the nearest processed one. The hand in the camera frame is
    ``hand_scale · MANO(hand[f]) + hand_transl[f]`` at zero MANO translation, with ``hand``
    the detector's parameters where the tracker did not refine them
    (:func:`tracked_hand_params`)."""

    T_cam_obj: Float[Array, "N 4 4"]
    """Object pose per frame (canonical mesh, scaled by ``obj_scale``, to camera)."""
    obj_scale: Float[Array, "3"]
    """Anisotropic object scale."""
    hand_scale: Float[Array, ""]
    """Hand scale s_h."""
    hand_transl: Float[Array, "N 3"]
    """Hand translation T_h per frame, metres."""
    processed: Bool[Array, " N"]
    """Frames the optimizer ran on (the others are interpolated)."""
    onset: Int[Array, ""]
    """Interaction onset frame (Eq. 8)."""
    anchor: Int[Array, ""]
    """Frame the tracking starts from both ways: the given pose's frame when the sequence has
    one, else the onset frame."""
    onset_found: Bool[Array, ""]
    """Eq. 8 found an onset (else the best-observed frame anchored the tracking)."""
    hand_iters: Int[Array, " N"]
    """Step-1 iterations per frame (0 where not processed)."""
    object_iters: Int[Array, " N"]
    """Step-2 iterations per frame (0 where not processed)."""
    terms: Float[Array, "N T"]
    """Step-2 terms at the end, columns :data:`STEP_TERMS` (onset frame: its joint stage)."""
    step_frame: Int[Array, " L"]
    """Frame of each schedule step (for the traces)."""
    step_active: Bool[Array, " L"]
    """Schedule steps that ran."""
    object_trace: Float[Array, "S I C"] | None
    """Per schedule step after the anchor (``S = L - 1``: step ``k`` is schedule step
    ``k + 1``), per iteration ``[total, *terms]`` of step 2, terms in alphabetical order
    (``depth`` (with a depth map), ``dino`` (with features), ``interact``, ``mask``; zeros
    after the stop), or None."""
    iof_trace: Float[Array, "3 J D"] | None
    """Anchor-frame stages' per-iteration ``[total, *terms]`` (alphabetical, zero-padded to
    the widest stage), or None: rows 0 and 2 the joint stages before and after the scale
    (contact, depth, dino, hand_depth, joint, mask, as present), row 1 the scale stage
    (contact, depth, mask)."""
    finite: Bool[Array, ""]
    """Every loss and gradient the optimizers evaluated was finite."""
    hand_pose: Float[Array, "N 45"] | None = None
    """The hand's articulation per frame (axis-angle, flat-hand-mean convention) when the
    tracker refined it (:func:`hoijax.tracking.fit_hand`); None: the detector's was kept."""
    hand_orient: Float[Array, "N 3"] | None = None
    """The hand's global orientation per frame when refined (axis-angle); None: kept."""
    overflow: Bool[Array, " N"] | None = None
    """Processed frames in which some rendering's pair list was too short, so faces may have
    been dropped (the anchor frame includes its search and stages); the driver re-runs such a
    sequence with a larger capacity. None in results written before this field existed."""
    hand_scale_fallback: Bool[Array, ""] | None = None
    """ICP's hand scale lay outside ``HandFitHyper.icp_scale_min``/``max`` and the hand
    refinement started from scale 1 instead. None in results written before this field
    existed."""
    hidden: Bool[Array, " N"] | None = None
    """Processed frames in which the object was not visible
    (:attr:`TrackConfig.hidden_fraction`), so step 2 did not run and the object moved with the
    hand's palm (from :attr:`carry_from` on) or stayed (before it); at the anchor frame, its
    stages did not run and the starting pose and scale were kept. None in results written
    before this field existed."""
    carry_from: Int[Array, ""] | None = None
    """The first frame whose hidden object moves with the palm
    (:attr:`TrackConfig.carry_contact_m`, :func:`hoijax.tracking.stages.carry_from`). None in
    results written before this field existed."""
    carry_by_contact: Bool[Array, ""] | None = None
    """Whether the hand touched the object at the anchor frame, so that contact chose
    :attr:`carry_from`; False: the hand did not (or ``carry_contact_m`` is 0) and Eq. 8's onset
    chose it (``onset + 1``), which can be early on damaged masks. None in results written
    before this field existed."""
    hand_betas: Float[Array, "N num_betas"] | None = None
    """The hand's shape coefficients per frame when the tracker refined them
    (``HandFitConfig.fit_betas``, one per-sequence delta on the detector's); None: the
    detector's were kept (or the result was written before this field existed)."""


def _interp_poses(T: Float[Array, "N 4 4"], t_h: Float[Array, "N 3"],
                  processed: Bool[Array, " N"]):
    """Fill unprocessed frames between processed ones (geodesic / linear), copy at the ends."""
    n = processed.shape[0]
    idx = jnp.arange(n)
    lo = jax.lax.cummax(jnp.where(processed, idx, -1), axis=0)
    hi = jax.lax.cummin(jnp.where(processed, idx, n), axis=0, reverse=True)
    lo_ok, hi_ok = lo >= 0, hi < n
    lo = jnp.where(lo_ok, lo, hi)
    hi = jnp.where(hi_ok, hi, lo)
    lo, hi = jnp.clip(lo, 0, n - 1), jnp.clip(hi, 0, n - 1)
    w = jnp.where(hi > lo, (idx - lo) / jnp.maximum(hi - lo, 1), 0.0).astype(T.dtype)

    def one(a, b, wi):
        Ra = jaxlie.SO3.from_matrix(a[:3, :3])
        Rb = jaxlie.SO3.from_matrix(b[:3, :3])
        R = Ra @ jaxlie.SO3.exp(wi * (Ra.inverse() @ Rb).log())
        return pose_matrix(R.as_matrix(), (1 - wi) * a[:3, 3] + wi * b[:3, 3])

    T_all = jax.vmap(one)(T[lo], T[hi], w)
    t_all = (1 - w)[:, None] * t_h[lo] + w[:, None] * t_h[hi]
    return T_all, t_all


def _pad_trace(trace, width: int):
    if trace is None:
        return None
    return jnp.pad(trace, ((0, 0), (0, width - trace.shape[1])))


def _step_terms(res: MinimizeResult, dtype) -> Float[Array, " T"]:
    return jnp.stack([res.terms.get(t, jnp.zeros((), dtype)) for t in STEP_TERMS])


def _select(pred, a, b):
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def predict_pose(T_prev: Float[Array, "4 4"], T_before: Float[Array, "4 4"], f_prev, f_before,
                 f, factor: float) -> Float[Array, "4 4"]:
    """The pose at frame ``f`` from the poses at the two frames before it on its side of the
    anchor (``f_before``, ``f_prev``), at constant velocity scaled by ``factor``: the rotation
    continues about the object's origin (in camera axes), the translation linearly. With no
    history (``f_prev == f_before``) it is ``T_prev``."""
    gap = f_prev - f_before
    r = factor * jnp.where(gap != 0, (f - f_prev) / jnp.where(gap != 0, gap, 1), 0.0)
    r = r.astype(T_prev.dtype)
    R1, R0 = T_prev[:3, :3], T_before[:3, :3]
    w = geometry.matrix_to_axis_angle(R1 @ R0.T)
    R = geometry.axis_angle_to_matrix(r * w) @ R1
    t = T_prev[:3, 3] + r * (T_prev[:3, 3] - T_before[:3, 3])
    return T_prev.at[:3, :3].set(R).at[:3, 3].set(t)


class _Begun(eqx.Module):
    """One sequence after initialization and the anchor frame's stages: what the steps after
    the anchor and the assembly of the result read."""

    hand: Hand
    obs: FrameObs
    obj: ObjectModel
    on: TrackState
    anchor: Array
    onset: Array
    found: Array
    hidden: Array
    carry_from: Array
    logs: dict
    sched: Schedule
    steps: _Steps
    extra: Array


def _frame_input(b: _Begun, f, k, active=True) -> FrameInput:
    return FrameInput(frame_at(b.obs, f), frame_at(b.hand.pose, f), b.obj, k,
                      jnp.asarray(active, bool))


def _first_carry(b: _Begun):
    anchor = jnp.asarray(b.anchor, b.steps.frame.dtype)
    return (b.on, b.on.T_cam_obj, anchor, anchor)


def _step_inputs(b: _Begun):
    s = b.steps
    return (s.frame, s.active, s.from_onset, s.key, jnp.arange(s.frame.shape[0]))


def _frame_step(config: TrackConfig, hyper: TrackHyper, b: _Begun, carry, x):
    """One step of the bidirectional schedule after the anchor (steps 1 and 2): it starts
    from the previous processed frame on its side of the anchor, or from the motion of the
    last two extrapolated to it (``config.motion_prediction``). Where ``b.hidden[f]`` (the
    object is not visible in frame ``f``), step 2 does not run: from ``b.carry_from`` on (the
    hand holds the object) it moves with the hand's palm (``b.hand.pose.kps_rel``, per frame
    at zero translation) since the previous processed frame, before it stays where it was."""
    prev, T_before, f_before, f_prev = carry
    f, active, from_onset, k, _ = x
    on, anchor, hand_kps = b.on, b.anchor, b.hand.pose.kps_rel
    start = _select(from_onset, on, prev)
    T_before = jnp.where(from_onset, on.T_cam_obj, T_before)
    f_before = jnp.where(from_onset, anchor, f_before)
    f_prev = jnp.where(from_onset, anchor, f_prev)
    if config.motion_prediction > 0:
        guess = predict_pose(start.T_cam_obj, T_before, f_prev, f_before, f,
                             config.motion_prediction)
        begin = eqx.tree_at(lambda s: s.T_cam_obj, start, guess)
    else:
        begin = start
    carry_hidden = HiddenObject(b.hidden[f], f >= b.carry_from, hand_kps[f_prev], hand_kps[f])
    cur, (h, o) = track_frame(config, hyper, start, _frame_input(b, f, k, active), begin,
                              carry_hidden)
    hidden = active & b.hidden[f]
    out = dict(T=cur.T_cam_obj, th=cur.hand_t, hi=h.num_iters, oi=o.num_iters,
               terms=_step_terms(o, on.obj_scale.dtype), trace=o.trace,
               finite=(o.finite & h.finite) | ~active, overflow=o.flagged & active,
               hidden=hidden)
    history = (jnp.where(active, start.T_cam_obj, T_before),
               jnp.where(active, f_prev, f_before), jnp.where(active, f, f_prev))
    return (_select(active, cur, prev), *history), out


def _scan_frames(config: TrackConfig, hyper: TrackHyper, b: _Begun,
                 progress: Progress | None):
    """Steps 1 and 2 over the bidirectional schedule after the anchor: :func:`_frame_step`
    in one ``lax.scan``. ``progress`` is called once per step, and the frames beyond the
    fixed schedule (``b.extra``) are announced with the first."""

    def body(carry, x):
        carry, out = _frame_step(config, hyper, b, carry, x)
        if progress is not None:
            jax.debug.callback(progress, x[1], jnp.where(x[4] == 0, b.extra, 0))
        return carry, out

    return jax.lax.scan(body, _first_carry(b), _step_inputs(b))[1]


def _assemble(config: TrackConfig, seq: Sequence, hand: Hand, anchor, on: TrackState, logs,
              out, sched, onset, found, carry) -> TrackResult:
    """Scatter the anchor's and the scan's per-step values to frames (inactive steps dropped),
    interpolate the unprocessed frames."""
    n, dtype = seq.valid.shape[0], on.obj_scale.dtype
    frames = jnp.where(sched.active[1:], sched.frame[1:], n)

    def scatter(values, at_anchor, like):
        return jnp.zeros((n, *like.shape[1:]), like.dtype).at[frames].set(
            values, mode="drop").at[anchor].set(at_anchor)

    joint = logs["joint"]
    processed = scatter(jnp.ones_like(sched.active[1:]), True, sched.active) & seq.valid
    # The hand of an unprocessed frame is its own initial translation (PnP or the hand fit,
    # which follows that frame's articulation) plus the correction interpolated from the
    # processed frames: copying a processed frame's translation onto another frame's
    # articulation put the hand a hand-width off before the first processed frame.
    t_init = hand.pose.t_init
    T_all, dt_all = _interp_poses(scatter(out["T"], on.T_cam_obj, out["T"]),
                                  scatter(out["th"], on.hand_t, out["th"]) - t_init, processed)
    th_all = t_init + dt_all
    stages = (logs["pre"], logs["scale"], joint)
    ran = ~logs["anchor_hidden"]  # a hidden anchor's stages ran but their results were dropped
    anchor_overflow = logs["overflow"] | (ran & jnp.any(jnp.stack([r.flagged for r in stages])))
    iof_trace = None
    if config.record_trace:
        width = max(r.trace.shape[1] for r in stages)
        iof_trace = jnp.stack([_pad_trace(r.trace, width) for r in stages])
    finite = (hand.finite & jnp.all(out["finite"]) & logs["hand"].finite
              & (jnp.all(jnp.stack([r.finite for r in stages])) | ~ran)
              & jnp.all(jnp.isfinite(T_all)))
    return TrackResult(
        T_cam_obj=T_all, obj_scale=on.obj_scale, hand_scale=hand.scale, hand_transl=th_all,
        processed=processed, onset=onset, anchor=anchor, onset_found=found,
        hand_iters=scatter(out["hi"], logs["hand"].num_iters, out["hi"]),
        object_iters=scatter(out["oi"], jnp.where(logs["anchor_hidden"], 0, joint.num_iters),
                             out["oi"]),
        terms=scatter(out["terms"], _step_terms(joint, dtype), out["terms"]),
        step_frame=sched.frame, step_active=sched.active,
        object_trace=out["trace"] if config.record_trace else None, iof_trace=iof_trace,
        finite=finite, hand_pose=hand.params.hand_pose if config.hand_fit.enabled else None,
        hand_orient=hand.params.global_orient if config.hand_fit.enabled else None,
        overflow=scatter(out["overflow"], anchor_overflow, out["overflow"]) & seq.valid,
        hand_scale_fallback=hand.scale_fallback,
        hidden=scatter(out["hidden"], logs["anchor_hidden"], out["hidden"]) & seq.valid,
        carry_from=carry, carry_by_contact=logs["carry_by_contact"],
        hand_betas=(hand.params.betas if config.hand_fit.enabled and config.hand_fit.fit_betas
                    else None))


def _begin(seq: Sequence, prep: Prepared, model: mano.ManoModel, hyper: TrackHyper,
           config: TrackConfig, key: Array) -> _Begun:
    """Initialization (§3.2) and the anchor frame's stages of one sequence."""
    k_hand, k_obj, k_iof, k_steps, k_depth, k_fit = jax.random.split(key, 6)
    onset, found = onset_frame(seq.object_mask, seq.hand_mask, seq.valid)
    hand = hand_stage(config, hyper, seq, model, (k_hand, k_fit))
    obs = observations(seq, config.hand_depth_points, k_depth)
    obj = ObjectModel(mesh=seq.mesh, grid=prep.grid, pool=prep.pool)

    def frame_input(f, k):
        return FrameInput(frame_at(obs, f), frame_at(hand.pose, f), obj, k, jnp.asarray(True))

    hidden = hidden_frames(seq.object_mask, seq.valid, config.hidden_fraction)
    start, anchor, search_overflow = initial_object(config, seq, obj, onset)
    start, h0 = hand_step(config, hyper, start, frame_input(anchor, k_iof))
    fitted, logs = anchor_stages(config, hyper, start,
                                 AnchorInput(frame_input(anchor, k_iof), seq, anchor, k_obj))
    # An anchor frame that does not show the object gives its stages nothing to fit: the mask
    # term shrank and moved a torus hidden there (12 % scale, 5 cm). Its starting pose and
    # scale are kept.
    on = _select(hidden[anchor], start, fitted)
    carry, by_contact = carry_from(on, obj.grid, hand.pose, seq.valid, anchor, onset,
                                   config.carry_contact_m)
    logs.update(hand=h0, anchor_hidden=hidden[anchor], carry_by_contact=by_contact,
                overflow=search_overflow | (logs.pop("icp_overflow") & ~hidden[anchor]))
    sched, extra = _schedule(config, seq.valid, seq.mesh, on.obj_scale,
                             hand.pose.kps_rel + hand.pose.t_init[:, None], anchor)
    steps = jax.tree.map(lambda x: x[1:], sched)  # step 0 is the anchor frame, done above
    steps = _Steps(steps.frame, steps.active, steps.from_onset,
                   jax.random.split(k_steps, steps.frame.shape[0]))
    return _Begun(hand=hand, obs=obs, obj=obj, on=on, anchor=anchor, onset=onset, found=found,
                  hidden=hidden, carry_from=carry, logs=logs, sched=sched, steps=steps, extra=extra)


def _finish(config: TrackConfig, seq: Sequence, b: _Begun, out) -> TrackResult:
    return _assemble(config, seq, b.hand, b.anchor, b.on, b.logs, out, b.sched, b.onset,
                     b.found, b.carry_from)


def track_sequence(seq: Sequence, prep: Prepared, model: mano.ManoModel, hyper: TrackHyper,
                   config: TrackConfig, key: Array, progress: Progress | None = None
                   ) -> TrackResult:
    """Track one padded sequence (unbatched leaves; ``vmap`` for batches): initialize (§3.2),
    the anchor frame's stages, then one scan over frames both ways from the anchor (§3.3).
    ``progress`` is called on the host after every processed frame."""
    b = _begin(seq, prep, model, hyper, config, key)
    return _finish(config, seq, b, _scan_frames(config, hyper, b, progress))


def hidden_frames(object_mask: Bool[Array, "N H W"], valid: Bool[Array, " N"],
                  fraction: float) -> Bool[Array, " N"]:
    """Valid frames whose visible object mask has fewer pixels than ``fraction`` of the
    largest one among the valid frames (none for ``fraction`` 0)."""
    area = jnp.sum(object_mask, axis=(-2, -1)).astype(jnp.float32)
    largest = jnp.max(jnp.where(valid, area, 0.0))
    return valid & (area < fraction * largest)


def object_diameter(mesh: ObjectMesh, scale: Float[Array, "3"]) -> Float[Array, ""]:
    """The diagonal of the real faces' bounding box, the canonical mesh scaled per axis."""
    tri = mesh.vertices[mesh.faces] * scale  # (F, 3, 3)
    big = jnp.asarray(jnp.finfo(tri.dtype).max, tri.dtype)
    ok = mesh.face_valid[:, None, None]
    lo = jnp.min(jnp.where(ok, tri, big), axis=(0, 1))
    hi = jnp.max(jnp.where(ok, tri, -big), axis=(0, 1))
    return geometry.safe_norm(jnp.where(jnp.any(mesh.face_valid), hi - lo, 0.0))


def _schedule(config: TrackConfig, valid: Bool[Array, " N"], mesh: ObjectMesh,
              obj_scale: Float[Array, "3"], hand_kps: Float[Array, "N 21 3"], anchor):
    """The frames to process after the anchor's stages, and how many more than the fixed
    schedule's: the fixed stride, or with ``config.max_step_motion`` steps shortened where
    the hand's keypoints (camera frame) move fast."""
    n, num_valid = valid.shape[0], jnp.sum(valid)
    fixed = bidirectional_schedule(anchor, num_valid, n, config.stride, config.process_ends)
    if not config.max_step_motion > 0:
        return fixed, jnp.zeros((), jnp.int32)
    limit = config.max_step_motion * object_diameter(mesh, obj_scale)

    def step_ok(a, b):
        return jnp.mean(geometry.safe_norm(hand_kps[b] - hand_kps[a])) <= limit

    sched = adaptive_schedule(anchor, num_valid, n, config.stride, step_ok)
    return sched, jnp.sum(sched.active) - jnp.sum(fixed.active)


class _Steps(eqx.Module):
    frame: Array
    active: Array
    from_onset: Array
    key: Array


SEQUENCE_AXIS = "seq"
"""Name of the device-mesh axis the sequences of a batch are split over."""


def sequence_mesh(num_devices: int | None = None) -> Mesh:
    """A one-axis mesh (:data:`SEQUENCE_AXIS`) over the first ``num_devices`` local devices
    (default: all)."""
    devices = jax.local_devices()
    n = len(devices) if num_devices is None else num_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"asked for {n} devices, {len(devices)} are available")
    return Mesh(np.asarray(devices[:n]), (SEQUENCE_AXIS,))


def _over_sequences(fn, mesh: Mesh | None, batched: tuple, shared: tuple, out_spec: P):
    """``fn(*batched, *shared)``; with a mesh, each device runs ``fn`` on its own slice of the
    sequence axis (``shard_map``, the shared arguments replicated): no communication."""
    if mesh is None:
        return fn(*batched, *shared)
    specs = (P(SEQUENCE_AXIS),) * len(batched) + (P(),) * len(shared)
    return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=out_spec,
                         check_vma=False)(*batched, *shared)


def _batched(fn, config: TrackConfig, count: Array):
    """``fn`` over the leading axis of its arguments: ``vmap``, or, with
    ``config.batching="map"``, one element after another in a loop whose trip count
    ``count`` is a run-time value. XLA may inline a loop of static length (one of a single
    element, say) or unroll it, compiling the body into its surroundings differently for
    different batch sizes; with a run-time trip count it can do neither, so each element's
    arithmetic is the same in any batch. (A precaution: a static ``lax.map`` gave the same
    numbers for 1 and 4 sequences in the one comparison made.)"""
    if config.batching != "map":
        return jax.vmap(fn)

    def mapped(*args):
        shapes = jax.eval_shape(fn, *jax.tree.map(lambda x: x[0], args))
        size = jax.tree.leaves(args)[0].shape[0]
        out = jax.tree.map(lambda s: jnp.zeros((size,) + s.shape, s.dtype), shapes)

        def body(i, out):
            r = fn(*jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, i, 0, False), args))
            return jax.tree.map(lambda o, v: jax.lax.dynamic_update_index_in_dim(o, v, i, 0),
                                out, r)

        return jax.lax.fori_loop(0, count, body, out)

    return mapped


@eqx.filter_jit
def _track_batch(batch, prep, model, hyper, config, keys, ones, progress, mesh):
    # ``ones`` (one per sequence, data the program sees only at run time) gives ``map`` its
    # trip count: each device's own number of sequences, which XLA cannot fold to a constant.
    def run(b, p, k, o, m, h):
        return _batched(lambda s, q, kk: track_sequence(s, q, m, h, config, kk, progress),
                        config, jnp.sum(o))(b, p, k)

    return _over_sequences(run, mesh, (batch, prep, keys, ones), (model, hyper),
                           P(SEQUENCE_AXIS))


def _check_divisible(batch: Sequence, mesh: Mesh | None) -> None:
    B = batch.valid.shape[0]
    if mesh is not None and B % mesh.size:
        raise ValueError(f"a batch of {B} sequences does not split over {mesh.size} devices: "
                         "pad it to a multiple (the driver does)")


def _begin_all(config, batch, prep, model, hyper, keys):
    b = jax.vmap(lambda s, q, k: _begin(s, q, model, hyper, config, k))(batch, prep, keys)
    return b, jax.vmap(_first_carry)(b)


def _step_all(config, hyper, b, carry, i):
    def one(bb, c):
        return _frame_step(config, hyper, bb, c, jax.tree.map(lambda a: a[i], _step_inputs(bb)))

    return jax.vmap(one)(b, carry)


def _finish_all(config, batch, b, outs):
    out = jax.tree.map(lambda *xs: jnp.stack(xs, axis=1), *outs)
    return jax.vmap(lambda s, bb, o: _finish(config, s, bb, o))(batch, b, out)


def _begin_grid(config, batch, prep, model, hypers, keys):
    return jax.vmap(lambda h: _begin_all(config, batch, prep, model, h, keys))(hypers)


def _step_grid(config, hypers, b, carry, i):
    return jax.vmap(lambda h, bb, c: _step_all(config, h, bb, c, i))(hypers, b, carry)


def _finish_grid(config, batch, b, outs):
    return jax.vmap(lambda bb, o: _finish_all(config, batch, bb, o))(b, outs)


_STAGES = {False: ("track", _begin_all, _step_all, _finish_all),
           True: ("ablate", _begin_grid, _step_grid, _finish_grid)}
"""Per ``grid`` (a stacked :class:`TrackHyper`, leading axis G): the programs' name prefix
and the functions of the three stages."""


def _track_batch_staged(batch, prep, model, hyper, config, keys, progress, grid=False):
    """:func:`track_batch` (``grid``: :func:`ablate_batch`) as three exported programs
    (:mod:`hoijax.tracking._programs`): the anchor frame's part, one schedule step (called
    per step) and the assembly; progress is counted here, after each step has run. The three
    are loaded (or traced) first and compiled side by side in threads."""
    name, begin_fn, step_fn, finish_fn = _STAGES[grid]
    _compile_staged(batch, prep, model, hyper, config, keys, grid)
    b, carry = _programs.call(f"{name}_begin", lambda *a: begin_fn(config, *a), config,
                              batch, prep, model, hyper, keys)
    active, extra = np.asarray(b.steps.active), np.asarray(b.extra)
    active, extra = active.reshape(-1, active.shape[-1]), extra.reshape(-1)  # (G·B, S)
    outs = []
    for i in range(active.shape[1]):
        carry, out = _programs.call(f"{name}_step", lambda *a: step_fn(config, *a), config,
                                    hyper, b, carry, np.int32(i))
        outs.append(out)
        if progress is not None:
            jax.block_until_ready(carry)
            for j in range(active.shape[0]):
                progress(active[j, i], extra[j] if i == 0 else 0)
    return _programs.call(f"{name}_finish", lambda *a: finish_fn(config, *a), config,
                          batch, b, tuple(outs))


def _compile_staged(batch, prep, model, hyper, config, keys, grid=False) -> None:
    """Load or trace the three programs (the later two from shapes alone) and compile them
    side by side."""
    import concurrent.futures

    name, begin_fn, step_fn, finish_fn = _STAGES[grid]
    begin = _programs.load(f"{name}_begin", lambda *a: begin_fn(config, *a), config,
                           batch, prep, model, hyper, keys)
    if begin is None:
        return
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        compiling = [pool.submit(begin.compile)]
        b, carry = begin.out_shapes
        step = _programs.load(f"{name}_step", lambda *a: step_fn(config, *a), config,
                              hyper, b, carry, jax.ShapeDtypeStruct((), jnp.int32))
        if step is not None:
            compiling.append(pool.submit(step.compile))
            out = step.out_shapes[1]
            finish = _programs.load(f"{name}_finish", lambda *a: finish_fn(config, *a),
                                    config, batch, b, (out,) * b.steps.active.shape[-1])
            if finish is not None:
                compiling.append(pool.submit(finish.compile))
        for c in compiling:
            c.result()


def track_batch(batch: Sequence, prep: Prepared, model: mano.ManoModel, hyper: TrackHyper,
                config: TrackConfig, key: Array, progress: Progress | None = None,
                mesh: Mesh | None = None) -> TrackResult:
    """Track a padded batch (leading axis B on every leaf) in one compiled program. ``key``:
    one key per sequence (B, 2), or one key that is split into B (then a sequence's random
    choices depend on its slot; the driver gives each sequence its own). With ``mesh``
    (:func:`sequence_mesh`), the sequences are split over its devices, B a multiple of their
    number. With a program folder (:func:`~hoijax.tracking.use_program_cache`), no mesh and
    ``config.batching="vmap"``, it runs as three programs kept on disk instead
    (:mod:`hoijax.tracking._programs`): a later process loads them without tracing."""
    _check_divisible(batch, mesh)
    if _programs.program_cache() is not None and mesh is None and config.batching != "map":
        return _track_batch_staged(batch, prep, model, hyper, config, _keys(key, batch),
                                   progress)
    return _track_batch(batch, prep, model, hyper, config, _keys(key, batch),
                        jnp.ones(batch.valid.shape[0], jnp.int32), progress, mesh)


def _keys(key: Array, batch: Sequence) -> Array:
    B = batch.valid.shape[0]
    return key if key.ndim == 2 else jax.random.split(key, B)


@eqx.filter_jit
def _ablate_batch(batch, prep, model, hypers, config, keys, ones, hyper_ones, progress, mesh):
    def run(b, p, k, o, m, hs, ho):
        def per_hyper(h):
            return _batched(lambda s, q, kk: track_sequence(s, q, m, h, config, kk, progress),
                            config, jnp.sum(o))(b, p, k)

        return _batched(per_hyper, config, jnp.sum(ho))(hs)

    return _over_sequences(run, mesh, (batch, prep, keys, ones), (model, hypers, hyper_ones),
                           P(None, SEQUENCE_AXIS))


def ablate_batch(batch: Sequence, prep: Prepared, model: mano.ManoModel, hypers: TrackHyper,
                 config: TrackConfig, key: Array, progress: Progress | None = None,
                 mesh: Mesh | None = None) -> TrackResult:
    """Track a padded batch under every setting of a stacked :class:`TrackHyper` (leading axis
    G on its leaves, :func:`stack_hypers`): results have leading axes (G, B). One compiled
    program; the same keys for every setting, so settings differ only in their numbers.
    ``key`` and ``mesh`` as in :func:`track_batch` (the sequence axis is split; every device
    runs every setting); with a program folder, no mesh and ``batching="vmap"``, three
    programs kept on disk, as :func:`track_batch`."""
    _check_divisible(batch, mesh)
    if _programs.program_cache() is not None and mesh is None and config.batching != "map":
        return _track_batch_staged(batch, prep, model, hypers, config, _keys(key, batch),
                                   progress, grid=True)
    return _ablate_batch(batch, prep, model, hypers, config, _keys(key, batch),
                         jnp.ones(batch.valid.shape[0], jnp.int32),
                         jnp.ones(jax.tree.leaves(hypers)[0].shape[0], jnp.int32), progress,
                         mesh)


def tracked_hand_params(result: TrackResult, hand_init: HandParams) -> HandParams:
    """The hand parameters the result stands for: the detector's ``hand_init`` with the
    refined articulation, orientation and shape where the tracker refined them (one
    sequence)."""
    p = hand_init
    if result.hand_betas is not None:
        p = eqx.tree_at(lambda x: x.betas, p, result.hand_betas)
    if result.hand_pose is not None:
        p = eqx.tree_at(lambda x: x.hand_pose, p, result.hand_pose)
    if result.hand_orient is not None:
        p = eqx.tree_at(lambda x: x.global_orient, p, result.hand_orient)
    return p


def hand_vertices(result: TrackResult, hand_init: HandParams, model: mano.ManoModel
                  ) -> Float[Array, "N 778 3"]:
    """The tracked hand's camera-frame vertices per frame (one unbatched sequence)."""
    verts, _ = jax.vmap(lambda p: hand_in_mano_frame(model, p))(
        tracked_hand_params(result, hand_init))
    return result.hand_scale * verts + result.hand_transl[:, None]


def hand_keypoints(result: TrackResult, hand_init: HandParams, model: mano.ManoModel
                   ) -> Float[Array, "N 21 3"]:
    """The tracked hand's 21 camera-frame keypoints per frame (OpenPose order, smplx tips)."""
    _, kps = jax.vmap(lambda p: hand_in_mano_frame(model, p))(
        tracked_hand_params(result, hand_init))
    return result.hand_scale * kps + result.hand_transl[:, None]


def object_vertices(result: TrackResult, vertices: Float[Array, "V 3"]) -> Float[Array, "N V 3"]:
    """The tracked object's camera-frame vertices per frame (one unbatched sequence)."""
    return jax.vmap(lambda T: losses.obj_to_cam(T, result.obj_scale, vertices))(result.T_cam_obj)


__all__ = ["SEQUENCE_AXIS", "STEP_TERMS", "Prepared", "Progress", "TrackResult", "ablate_batch",
           "hand_keypoints", "hand_vertices", "object_vertices", "prepare", "stack_prepared",
           "sequence_mesh", "track_batch", "track_sequence", "tracked_hand_params"]
