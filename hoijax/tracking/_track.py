"""The whole tracker for one sequence, and its batched, compiled form.

``track_sequence`` is one pure function of one padded sequence: initialization (§3.2), the onset
frame's two stages, then one ``lax.scan`` over the bidirectional schedule (§3.3) whose steps are
step 1 and step 2 with early stopping. ``track_batch`` is ``jit(vmap(track_sequence))``, and
``ablate_batch`` adds an outer ``vmap`` over a grid of :class:`TrackHyper`: every sequence and
every weight setting in one compiled program. Nothing depends on Python control flow over
traced values, so a batch of the same padded shapes never recompiles (:data:`TRACE_COUNT`).

Host-side preparation (:func:`prepare`) builds what needs a mesh on the CPU: the object's SDF
grid and its surface-sample pool.
"""

from __future__ import annotations

import collections

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from hoijax import geometry, losses, mano, sdf
from hoijax.data import HandParams, Sequence
from hoijax.tracking._hand_fit import fit_hand
from hoijax.tracking._init import (
    candidate_rotations,
    frames_at_rest_before,
    hand_in_mano_frame,
    init_hand,
    init_object_scale,
    sample_mask_points,
    search_object_pose,
)
from hoijax.tracking._onset import onset_frame
from hoijax.tracking._schedule import bidirectional_schedule
from hoijax.tracking._steps import (
    HandDepth,
    ObjectFrame,
    ObjectPrev,
    TrackConfig,
    TrackHyper,
    hand_step,
    iof_joint_stage,
    iof_scale_stage,
    object_step,
    pose_fit_loss,
    pose_matrix,
)

TRACE_COUNT: collections.Counter[str] = collections.Counter()
"""How many times each entry point was traced (compiled): ``track_sequence`` counts one per
trace of the whole program. Tests assert it does not grow across batches of one shape."""

_PROGRESS: list = []
"""Host-side receivers of per-frame progress (see :func:`progress_to`)."""


def _tick(active) -> None:
    if bool(active):
        for fn in _PROGRESS:
            fn()


class progress_to:
    """Context manager: while active, every processed frame of a tracker compiled with
    ``TrackConfig(progress=True)`` calls ``fn()`` on the host (e.g. ``bar.update``)."""

    def __init__(self, fn):
        self.fn = fn

    def __enter__(self):
        _PROGRESS.append(self.fn)
        return self

    def __exit__(self, *exc):
        _PROGRESS.remove(self.fn)


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
    """SDF grid (``sdf_resolution``³, winding-number sign, so small holes are tolerated) and the
    sample pool of one unbatched sequence."""
    m = seq.mesh
    keep = np.asarray(m.face_valid)
    grid = sdf.sdf_grid_from_mesh(np.asarray(m.vertices), np.asarray(m.faces)[keep],
                                  resolution=sdf_resolution, repair=True)
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


def _frame(seq: Sequence, f, verts_hand_cam) -> ObjectFrame:
    return ObjectFrame(object_mask=seq.object_mask[f], hand_mask=seq.hand_mask[f],
                       feature_map=None if seq.features is None else seq.features[f],
                       verts_hand_cam=verts_hand_cam,
                       depth_m=None if seq.depth_m is None else seq.depth_m[f])


def _pad_trace(trace, width: int):
    if trace is None:
        return None
    return jnp.pad(trace, ((0, 0), (0, width - trace.shape[1])))


def track_sequence(
    seq: Sequence,
    prep: Prepared,
    model: mano.ManoModel,
    hyper: TrackHyper,
    config: TrackConfig,
    key: Array,
) -> TrackResult:
    """Track one padded sequence (unbatched leaves; ``vmap`` for batches)."""
    TRACE_COUNT["track_sequence"] += 1
    n = seq.valid.shape[0]
    K = seq.K
    k_hand, k_obj, k_iof, k_steps, k_depth, k_fit = jax.random.split(key, 6)

    # ---- initialization (§3.2)
    onset, found = onset_frame(seq.object_mask, seq.hand_mask, seq.valid)
    hand = init_hand(model, K, seq.hand_init, seq.keypoints_px, seq.keypoints_conf, seq.valid,
                     seq.hand_mask, seq.depth_m, k_hand)
    hand_params, fit_finite = seq.hand_init, jnp.ones((), bool)
    if config.hand_fit:
        fit = fit_hand(model, K, seq.hand_init, hand.scale, hand.transl, seq.keypoints_px,
                       seq.keypoints_conf, seq.valid, seq.hand_mask, seq.depth_m, k_fit)
        hand_params, fit_finite = fit.hand, fit.finite
        hand = eqx.tree_at(lambda h: (h.scale, h.transl), hand, (fit.scale, fit.transl))
    verts_rel, kps_rel = jax.vmap(lambda p: hand_in_mano_frame(model, p))(hand_params)
    verts_rel, kps_rel = hand.scale * verts_rel, hand.scale * kps_rel

    # The hand's depth points per frame (fixed draws) and its surface normals, for the
    # hand-depth term wherever T_h is optimized.
    if seq.depth_m is not None:
        normals_rel = jax.vmap(lambda v: geometry.vertex_normals(v, model.faces))(verts_rel)
        pts, pts_ok = jax.vmap(lambda d, m, k: sample_mask_points(
            K, d, m, k, config.hand_depth_points))(seq.depth_m, seq.hand_mask,
                                                    jax.random.split(k_depth, n))

        def hand_depth(f):
            return HandDepth(verts_rel[f], normals_rel[f], pts[f], pts_ok[f])
    else:
        def hand_depth(f):
            return None

    if seq.T_cam_obj_init is not None:
        # A given pose (e.g. FoundationPose at the onset) holds at its own frame: anchor there.
        anchor = jnp.asarray(seq.init_frame, jnp.int32)
        T_init = seq.T_cam_obj_init
        s_init = jnp.ones(3, K.dtype)
    else:
        anchor = onset
        search = search_object_pose(seq.mesh, K, seq.object_mask[onset], seq.hand_mask[onset],
                                    None if seq.depth_m is None else seq.depth_m[onset],
                                    jnp.asarray(candidate_rotations(24, 8), K.dtype))
        T_init = pose_matrix(search.R_cam_obj, search.t_cam_obj)
        s_init = jnp.full(3, search.scale, K.dtype)

    # ---- anchor frame: hand translation (step 1); object pose refined at the initial scale;
    # the scale by ICP with that rotation (§3.2); the anisotropic scale on the viewing ray
    # (L_mask + L_contact); then hand and object jointly. The pose is refined before the ICP
    # because ICP with the rotation fixed turns a rotation error into a wrong scale, and the ICP
    # fits one common scale: per-axis ICP scales from a partial, occluded view came out 2× off
    # on one axis of a can in our runs, while the mask stage refines the axes.
    h0 = hand_step(kps_rel[anchor], hand.transl[anchor], seq.keypoints_px[anchor],
                   seq.keypoints_conf[anchor], K, hyper, config, depth=hand_depth(anchor))
    frame0 = _frame(seq, anchor, verts_rel[anchor] + h0.params["t"])

    def joint(T, s, th, k):
        return iof_joint_stage(seq.mesh, prep.grid, s, K, frame0, T, kps_rel[anchor],
                               verts_rel[anchor], th, seq.keypoints_px[anchor],
                               seq.keypoints_conf[anchor], prep.pool, k, hyper, config,
                               hand_depth(anchor))

    r_pre, T_on, th_on = joint(T_init, s_init, h0.params["t"], k_iof)
    s_on = s_init
    if seq.depth_m is not None:
        icp = init_object_scale(seq.mesh, K, T_on[:3, :3], T_on[:3, 3], s_init,
                                seq.object_mask, seq.hand_mask, seq.depth_m,
                                frames_at_rest_before(anchor, seq.valid), k_obj,
                                anisotropic=False)
        ok = icp.valid & jnp.all(icp.scale > 0) & jnp.all(jnp.isfinite(icp.scale))
        T_icp = pose_matrix(T_on[:3, :3], icp.translation)
        s_icp = jnp.where(ok, icp.scale, s_init)
        # Keep the ICP scale only where it explains the anchor frame better: trimmed ICP on a
        # partial, occluded view sometimes lands on a wrong scale (5-8× in our runs on a thin
        # object).
        frame_c = _frame(seq, anchor, verts_rel[anchor] + th_on)
        ok = ok & (pose_fit_loss(seq.mesh, K, frame_c, T_icp, s_icp, hyper, config)
                   < pose_fit_loss(seq.mesh, K, frame_c, T_on, s_init, hyper, config))
        s_on = jnp.where(ok, s_icp, s_init)
        T_on = jnp.where(ok, T_icp, T_on)
    frame0 = _frame(seq, anchor, verts_rel[anchor] + th_on)
    r_scale, T_on, s_on = iof_scale_stage(seq.mesh, prep.grid, s_on, K, frame0, T_on, hyper,
                                          config)
    r_joint, T_on, th_on = joint(T_on, s_on, th_on, jax.random.fold_in(k_iof, 1))
    verts_on = verts_rel[anchor] + th_on

    # ---- both ways from the onset (§3.3): one scan over the static-length schedule
    sched = bidirectional_schedule(anchor, jnp.sum(seq.valid), n, config.stride)
    steps = jax.tree.map(lambda x: x[1:], sched)  # step 0 is the onset frame, done above

    def body(carry, x):
        T_prev, v_prev = carry
        f, active, from_onset, k = x
        T_start = jnp.where(from_onset, T_on, T_prev)
        v_start = jnp.where(from_onset, verts_on, v_prev)
        h = hand_step(kps_rel[f], hand.transl[f], seq.keypoints_px[f], seq.keypoints_conf[f], K,
                      hyper, config, active, hand_depth(f))
        v_f = verts_rel[f] + h.params["t"]
        frame = _frame(seq, f, v_f)
        res, T_f = object_step(seq.mesh, prep.grid, s_on, K, frame,
                               ObjectPrev(T_start, v_start), prep.pool, k, hyper, config, active)
        new_carry = (jnp.where(active, T_f, T_prev), jnp.where(active, v_f, v_prev))
        if config.progress:
            jax.debug.callback(_tick, active)
        out = dict(T=T_f, th=h.params["t"], hi=h.num_iters, oi=res.num_iters,
                   terms=jnp.stack([res.terms.get(t, jnp.zeros((), K.dtype)) for t in STEP_TERMS]),
                   trace=res.trace, finite=(res.finite & h.finite) | ~active)
        return new_carry, out

    keys = jax.random.split(k_steps, steps.frame.shape[0])
    _, out = jax.lax.scan(body, (T_on, verts_on),
                          (steps.frame, steps.active, steps.from_onset, keys))

    # ---- scatter to frames (onset first, then the scan's steps; inactive steps dropped)
    frames = jnp.where(steps.active, steps.frame, n)
    T_f = jnp.zeros((n, 4, 4), K.dtype).at[frames].set(out["T"], mode="drop").at[anchor].set(T_on)
    th_f = jnp.zeros((n, 3), K.dtype).at[frames].set(out["th"], mode="drop").at[anchor].set(th_on)
    processed = jnp.zeros(n, bool).at[frames].set(True, mode="drop").at[anchor].set(True)
    processed = processed & seq.valid
    hi_f = jnp.zeros(n, jnp.int32).at[frames].set(out["hi"], mode="drop").at[anchor].set(
        h0.num_iters)
    oi_f = jnp.zeros(n, jnp.int32).at[frames].set(out["oi"], mode="drop").at[anchor].set(
        r_joint.num_iters)
    on_terms = jnp.stack([r_joint.terms.get(t, jnp.zeros((), K.dtype)) for t in STEP_TERMS])
    terms_f = jnp.zeros((n, len(STEP_TERMS)), K.dtype).at[frames].set(
        out["terms"], mode="drop").at[anchor].set(on_terms)
    T_all, th_all = _interp_poses(T_f, th_f, processed)

    iof_trace = None
    if config.record_trace:
        stages = (r_pre, r_scale, r_joint)
        width = max(r.trace.shape[1] for r in stages)
        iof_trace = jnp.stack([_pad_trace(r.trace, width) for r in stages])
    finite = (fit_finite & jnp.all(out["finite"]) & r_pre.finite & r_scale.finite
              & r_joint.finite & h0.finite & jnp.all(jnp.isfinite(T_all)))
    return TrackResult(
        T_cam_obj=T_all, obj_scale=s_on, hand_scale=hand.scale, hand_transl=th_all,
        processed=processed, onset=onset, anchor=anchor, onset_found=found, hand_iters=hi_f,
        object_iters=oi_f, terms=terms_f,
        step_frame=sched.frame, step_active=sched.active,
        object_trace=out["trace"] if config.record_trace else None,
        iof_trace=iof_trace, finite=finite,
        hand_pose=hand_params.hand_pose if config.hand_fit else None,
        hand_orient=hand_params.global_orient if config.hand_fit else None)


@eqx.filter_jit
def _track_batch(batch, prep, model, hyper, config, keys):
    return jax.vmap(lambda s, p, k: track_sequence(s, p, model, hyper, config, k))(
        batch, prep, keys)


def track_batch(batch: Sequence, prep: Prepared, model: mano.ManoModel, hyper: TrackHyper,
                config: TrackConfig, key: Array) -> TrackResult:
    """Track a padded batch (leading axis B on every leaf) in one compiled program."""
    B = batch.valid.shape[0]
    return _track_batch(batch, prep, model, hyper, config, jax.random.split(key, B))


@eqx.filter_jit
def _ablate_batch(batch, prep, model, hypers, config, keys):
    def per_hyper(h):
        return jax.vmap(lambda s, p, k: track_sequence(s, p, model, h, config, k))(
            batch, prep, keys)

    return jax.vmap(per_hyper)(hypers)


def ablate_batch(batch: Sequence, prep: Prepared, model: mano.ManoModel, hypers: TrackHyper,
                 config: TrackConfig, key: Array) -> TrackResult:
    """Track a padded batch under every setting of a stacked :class:`TrackHyper` (leading axis
    G on its leaves): results have leading axes (G, B). One compiled program; the same keys for
    every setting, so settings differ only in their numbers."""
    B = batch.valid.shape[0]
    return _ablate_batch(batch, prep, model, hypers, config, jax.random.split(key, B))


def stack_hypers(hypers: list[TrackHyper]) -> TrackHyper:
    """Stack settings along a new leading axis (for :func:`ablate_batch`)."""
    return jax.tree.map(lambda *x: jnp.stack(x), *hypers)


def tracked_hand_params(result: TrackResult, hand_init: HandParams) -> HandParams:
    """The hand parameters the result stands for: the detector's ``hand_init`` with the
    refined articulation and orientation where the tracker refined them (one sequence)."""
    p = hand_init
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


__all__ = ["STEP_TERMS", "TRACE_COUNT", "Prepared", "TrackResult", "ablate_batch",
           "hand_keypoints", "hand_vertices", "object_vertices", "prepare",
           "tracked_hand_params",
           "progress_to",
           "stack_hypers", "stack_prepared", "track_batch", "track_sequence"]
