"""The stages of AGILE §3.2–3.3 as functions of pytrees.

Each optimization stage is ``stage(config, hyper, state, inp) -> (state, result)`` over one
frame of one sequence (:mod:`hoijax.tracking._state`), with the objective of
:func:`~hoijax.tracking._objective.frame_objective` and one shared solver body
(:func:`_solve`: Adam with early stop, :func:`hoijax.tracking.minimize`), so it works under
``vmap`` with per-problem stopping and every number in :class:`TrackHyper` is traced:

- :func:`hand_step` (step 1): T_h alone, by L_joint (Eq. 2) (+ the hand's depth points);
- :func:`object_step` (step 2): the object's R, T by λ_mask L_mask + λ_dino L_dino +
  λ_interact L_interact (Eq. 1) (+ L_depth), the hand fixed;
- the anchor frame (:func:`anchor_stages`): hand and object jointly (:func:`anchor_joint`:
  L_joint + L_mask + L_dino + L_contact), the scale by ICP (:func:`anchor_icp_scale`, §3.2),
  the anisotropic scale on the viewing ray (:func:`anchor_scale`: L_mask + L_contact), then
  jointly again.

Rotations are optimized as a tangent-space increment ``ω`` on the starting rotation
(``R = R_0 · exp(ω)``, ``ω = 0`` at the start), which has no singularity where the optimizer
begins. The per-sequence stages (:func:`hand_stage`, :func:`initial_object`) set up the hand
and the object before the anchor frame.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxlie
from jaxtyping import Array, Bool, Float, Int

from hoijax import geometry, losses, mano, sdf
from hoijax.data import Sequence
from hoijax.tracking._hand_fit import fit_hand
from hoijax.tracking._init import (
    HandObs,
    candidate_rotations,
    frames_at_rest_before,
    hand_in_mano_frame,
    init_hand,
    init_object_scale,
    search_object_pose,
)
from hoijax.tracking._objective import frame_objective, pose_fit_loss
from hoijax.tracking._gauss_newton import minimize_lm
from hoijax.tracking._optimize import MinimizeResult, minimize
from hoijax.tracking._settings import TrackConfig, TrackHyper
from hoijax.tracking._state import FrameInput, Hand, HandPose, ObjectModel, TrackState

MAX_LOG_SCALE_REFINE = 0.2
"""Bound on the anchor-frame scale refinement, in log units per axis (±22 %)."""

_OBJECT_TERMS = frozenset({"mask", "depth", "dino"})


def pose_matrix(R: Float[Array, "3 3"], t: Float[Array, "3"]) -> Float[Array, "4 4"]:
    """4×4 ``T_cam_obj`` from a rotation and a translation."""
    T = jnp.eye(4, dtype=R.dtype)
    return T.at[:3, :3].set(R).at[:3, 3].set(t)


def _rotate(R0: Float[Array, "3 3"], omega: Float[Array, "3"]) -> Float[Array, "3 3"]:
    return R0 @ jaxlie.SO3.exp(omega).as_matrix()


class AnchorInput(eqx.Module):
    """What the anchor-frame stages read: the anchor frame, and the sequence (ICP pools the
    resting frames before the anchor)."""

    frame: FrameInput
    seq: Sequence
    anchor: Int[Array, ""]
    icp_key: Array


def _objective(config: TrackConfig, hyper: TrackHyper, inp: FrameInput,
               prev: TrackState | None, names: frozenset[str], start: TrackState):
    """The stage's objective as the configured solver needs it: for Levenberg–Marquardt with
    the residuals, and L_dino's points drawn once at the stage's ``start``."""
    lm = config.solver == "lm"
    return frame_objective(config, hyper, inp, prev, names, with_residuals=lm,
                           dino_points_at=start if lm else None)


def _solve(config: TrackConfig, hyper: TrackHyper, objective, unpack, start: dict,
           rates: dict, max_iters: int, active=True, *, anchor: bool = False,
           renders: bool = True) -> tuple[TrackState, MinimizeResult]:
    """The solver body every stage shares: minimize ``objective(unpack(params))`` from
    ``start``, by Adam (per-group step sizes ``rates``, ``max_iters`` steps) or by
    Levenberg–Marquardt (``config.lm_iters``, or ``config.lm_anchor_iters`` for an
    ``anchor`` stage), as ``config.solver`` says. For Levenberg–Marquardt, an objective that
    ``renders`` the object is solved through ``config.lm_mask_levels``' reduced L_mask weights
    and then ``config.lm_coarse_sigma_px2``'s blurred silhouettes first (``objective(state,
    sigma_px2, mask_scale)``; ``minimize_lm``'s ``levels``, one row of the two per level)."""
    if config.solver == "lm":
        max_lm = config.lm_anchor_iters if anchor else config.lm_iters
        fn, levels = (lambda p: objective(unpack(p))), None
        if renders and (config.lm_coarse_sigma_px2 or config.lm_mask_levels):
            dtype = jax.tree.leaves(start)[0].dtype
            rows = ([(hyper.sigma_px2, m) for m in config.lm_mask_levels or ()]
                    + [(s, 1.0) for s in config.lm_coarse_sigma_px2 or ()]
                    + [(hyper.sigma_px2, 1.0)])
            levels = jnp.stack([jnp.stack([jnp.asarray(s, dtype), jnp.asarray(m, dtype)])
                                for s, m in rows])
            fn = lambda p, row: objective(unpack(p), row[0], row[1])  # noqa: E731
        res = minimize_lm(fn, start, max_iters=max_lm, tol=hyper.tol,
                          record_trace=config.record_trace, active=active, levels=levels,
                          level_iters=config.lm_level_iters)
    else:
        res = minimize(lambda p: objective(unpack(p)), start, rates, max_iters=max_iters,
                       tol=hyper.tol, window=config.window, record_trace=config.record_trace,
                       active=active)
    return unpack(res.params), res


def hand_step(config: TrackConfig, hyper: TrackHyper, state: TrackState,
              inp: FrameInput) -> tuple[TrackState, MinimizeResult]:
    """Step 1: T_h from its initial value ``inp.hand.t_init`` by L_joint (and the hand's depth
    points), the hand's rotation, pose and scale fixed; the object stays as in ``state``."""
    objective = _objective(config, hyper, inp, None, frozenset({"joint", "hand_depth"}), state)
    return _solve(config, hyper, objective, lambda p: state.with_hand(inp.hand, p["t"]),
                  {"t": inp.hand.t_init}, {"t": hyper.lr_hand_t}, config.hand_iters,
                  inp.active, renders=False)


def object_step(config: TrackConfig, hyper: TrackHyper, state: TrackState, inp: FrameInput,
                prev: TrackState) -> tuple[TrackState, MinimizeResult]:
    """Step 2: the object's R, T from ``state``'s pose, the hand fixed at ``state``'s; ``prev``
    is the previous processed frame (L_interact's reference).

    L_dino's N_p points are drawn at every iteration among the pool's points visible at the
    current pose and inside :func:`~hoijax.tracking._objective.dino_support`. L_mask renders
    the object alone and leaves out pixels under the observed hand mask, normalized by the
    object's area."""
    R0, t0 = state.T_cam_obj[:3, :3], state.T_cam_obj[:3, 3]
    objective = _objective(config, hyper, inp, prev, _OBJECT_TERMS | {"interact"}, state)

    def unpack(p):
        return eqx.tree_at(lambda s: s.T_cam_obj, state, pose_matrix(_rotate(R0, p["w"]), p["t"]))

    return _solve(config, hyper, objective, unpack, {"w": jnp.zeros(3, t0.dtype), "t": t0},
                  {"w": hyper.lr_obj_rot, "t": hyper.lr_obj_t}, config.object_iters,
                  inp.active)


PALM_KEYPOINTS = (0, 5, 9, 13, 17)
"""The wrist and the four finger bases (OpenPose order): the hand's rigid part, whose motion
carries a hidden object (:attr:`TrackConfig.hidden_fraction`)."""


def carried_pose(T: Float[Array, "4 4"], kps_from: Float[Array, "21 3"],
                 kps_to: Float[Array, "21 3"]) -> Float[Array, "4 4"]:
    """``T`` moved by the rigid motion of the palm (:data:`PALM_KEYPOINTS`, camera frame)
    from ``kps_from`` to ``kps_to``: the object's pose if it stays fixed in the hand."""
    a, b = kps_from[jnp.asarray(PALM_KEYPOINTS)], kps_to[jnp.asarray(PALM_KEYPOINTS)]
    _, R, _ = geometry.similarity_transform(a, b)
    t = jnp.mean(b, 0) - R @ jnp.mean(a, 0)
    return T.at[:3, :3].set(R @ T[:3, :3]).at[:3, 3].set(R @ T[:3, 3] + t)


def carry_from(on: TrackState, grid: sdf.SdfGrid, hand: HandPose, valid: Bool[Array, " N"],
               anchor: Int[Array, ""], onset: Int[Array, ""], contact_m: float
               ) -> tuple[Int[Array, ""], Bool[Array, ""]]:
    """The first frame whose hidden object moves with the palm
    (:attr:`TrackConfig.carry_contact_m`): the start of the unbroken run of frames, up to the
    anchor, in which the hand's closest vertex lies within ``contact_m`` of the object at the
    anchor's pose ``on`` (``grid``: its SDF; before the grasp the object rests there while the
    hand approaches). Every frame's hand is its initial one (``hand.verts_rel +
    hand.t_init``) moved by the anchor's refinement of the translation (``on.hand_t -
    hand.t_init[anchor]``), so the anchor's hand is the one its stages fitted the object
    against. ``onset + 1`` where the hand does not touch the object at the anchor, or
    ``contact_m`` is 0 (static). Returns the frame and whether contact chose it (False: the
    onset rule did)."""
    if contact_m <= 0:
        return (onset + 1).astype(jnp.int32), jnp.asarray(False)
    t = hand.t_init + (on.hand_t - hand.t_init[anchor])
    verts = losses.cam_to_obj(on.T_cam_obj, hand.verts_rel + t[:, None])
    closest = jnp.min(sdf.query_sdf_scaled(grid, verts, on.obj_scale), axis=-1)
    touching = (closest < contact_m) & valid
    frames = jnp.arange(touching.shape[0])
    last_apart = jnp.max(jnp.where(~touching & (frames < anchor), frames, -1))
    frame = jnp.where(touching[anchor], last_apart + 1, onset + 1).astype(jnp.int32)
    return frame, touching[anchor]


class HiddenObject(eqx.Module):
    """Whether a frame's image does not show the object (:func:`hoijax.tracking.hidden_frames`)
    and what then moves it: where the hand holds it (``in_hand``, from :func:`carry_from` on)
    the palm's motion between the hand keypoints ``kps_from`` (the previous processed frame)
    and ``kps_to`` (this one), both at zero translation; elsewhere nothing."""

    hidden: Bool[Array, ""]
    in_hand: Bool[Array, ""]
    kps_from: Float[Array, "21 3"]
    kps_to: Float[Array, "21 3"]


def track_frame(config: TrackConfig, hyper: TrackHyper, prev: TrackState, inp: FrameInput,
                begin: TrackState | None = None, hidden: HiddenObject | None = None
                ) -> tuple[TrackState, tuple[MinimizeResult, MinimizeResult]]:
    """One processed frame (§3.3): step 1, then step 2, both starting from ``begin`` (the
    previous processed frame's state ``prev``, or a prediction from it).

    With ``hidden`` and the object hidden, step 2 does not run: the object's pose is
    ``prev``'s moved by the palm (:func:`carried_pose`, the hand's translations of ``prev`` and
    of step 1 added) when it is in the hand, else ``prev``'s. With ``hidden`` and
    ``config.interact_in_hand``, step 2 leaves L_interact out where the object is not in the
    hand."""
    begin = prev if begin is None else begin
    cur, h = hand_step(config, hyper, begin, inp)
    if hidden is not None and config.interact_in_hand:
        w = hyper.weights.interact
        hyper = eqx.tree_at(lambda hp: hp.weights.interact, hyper,
                            jnp.where(hidden.in_hand, w, jnp.zeros_like(w)))
    if hidden is not None:
        carried = carried_pose(prev.T_cam_obj, hidden.kps_from + prev.hand_t,
                               hidden.kps_to + cur.hand_t)
        held = jnp.where(hidden.in_hand, carried, prev.T_cam_obj)
        cur = eqx.tree_at(lambda s: s.T_cam_obj, cur,
                          jnp.where(inp.active & hidden.hidden, held, cur.T_cam_obj))
        inp = eqx.tree_at(lambda fi: fi.active, inp, inp.active & ~hidden.hidden)
    cur, o = object_step(config, hyper, cur, inp, begin)
    return cur, (h, o)


def anchor_joint(config: TrackConfig, hyper: TrackHyper, state: TrackState,
                 anc: AnchorInput) -> tuple[TrackState, MinimizeResult]:
    """Anchor frame: hand translation and object pose together by λ_joint L_joint + λ_mask
    L_mask + λ_dino L_dino + λ_contact L_contact (scale fixed), plus the depth terms."""
    inp = anc.frame
    R0 = state.T_cam_obj[:3, :3]
    names = _OBJECT_TERMS | {"joint", "contact", "hand_depth"}
    objective = _objective(config, hyper, inp, None, names, state)

    def unpack(p):
        moved = state.with_hand(inp.hand, p["th"])
        return eqx.tree_at(lambda s: s.T_cam_obj, moved, pose_matrix(_rotate(R0, p["w"]), p["t"]))

    start = {"w": jnp.zeros(3, R0.dtype), "t": state.T_cam_obj[:3, 3], "th": state.hand_t}
    rates = {"w": hyper.lr_obj_rot, "t": hyper.lr_obj_t, "th": hyper.lr_hand_t}
    return _solve(config, hyper, objective, unpack, start, rates, config.iof_iters,
                  anchor=True)


def anchor_scale(config: TrackConfig, hyper: TrackHyper, state: TrackState,
                 anc: AnchorInput) -> tuple[TrackState, MinimizeResult]:
    """Anchor frame: the anisotropic scale ``s = s_0 · exp(b·tanh(λ/b))`` (b =
    :data:`MAX_LOG_SCALE_REFINE`) and the distance along the viewing ray through the object's
    origin ``t = t_0 · exp(δ)``, rotation fixed, by λ_mask L_mask + λ_contact L_contact (+
    L_depth) (+ ``hyper.aniso_scale_prior``'s pull towards the mesh's proportions). The bound
    keeps an axis the silhouette does not see (the 4 mm thickness of scissors seen face-on)
    from growing without limit (a 5× scale error in our runs)."""
    T0, s0 = state.T_cam_obj, state.obj_scale
    base = _objective(config, hyper, anc.frame, None, frozenset({"mask", "depth", "contact"}),
                      state)

    def objective(s: TrackState, sigma_px2=None, mask_scale=None):
        # The prior on the departure from the mesh's proportions (TrackHyper.aniso_scale_prior),
        # also as residuals √w·dev for Levenberg–Marquardt (Σ r² is the prior).
        dev = jnp.log(s.obj_scale / s0)
        dev = dev - jnp.mean(dev)
        r = jnp.sqrt(jnp.maximum(hyper.aniso_scale_prior, 0.0)).astype(dev.dtype) * dev
        out = base(s, sigma_px2, mask_scale)
        total = out[0] + jnp.sum(r**2)
        if config.solver == "lm":  # _objective's residuals come with the loss
            return total, out[1], out[2], jnp.concatenate([out[3], r])
        return total, out[1], out[2]

    def unpack(p):
        b = MAX_LOG_SCALE_REFINE
        return eqx.tree_at(lambda s: (s.T_cam_obj, s.obj_scale), state,
                           (T0.at[:3, 3].multiply(jnp.exp(p["d"])),
                            s0 * jnp.exp(b * jnp.tanh(p["ls"] / b))))

    start = {"ls": jnp.zeros(3, s0.dtype), "d": jnp.zeros((), s0.dtype)}
    rates = {"ls": hyper.lr_obj_log_scale, "d": hyper.lr_obj_t}
    return _solve(config, hyper, objective, unpack, start, rates, config.iof_iters,
                  anchor=True)


def anchor_icp_scale(config: TrackConfig, hyper: TrackHyper, state: TrackState,
                     anc: AnchorInput) -> tuple[TrackState, Bool[Array, ""]]:
    """Anchor frame: the object scale by ICP to the depth points with the rotation fixed
    (§3.2), pooling the anchor and the resting frames before it; kept only where it explains
    the anchor frame better (:func:`~hoijax.tracking._objective.pose_fit_loss`): trimmed ICP on
    a partial, occluded view sometimes lands on a wrong scale (5-8× in our runs on a thin
    object). Returns the state and the rasterizer's overflow of that comparison."""
    seq, T = anc.seq, state.T_cam_obj
    icp = init_object_scale(anc.frame.obj.mesh, seq.K, T[:3, :3], T[:3, 3], state.obj_scale,
                            seq.object_mask, seq.hand_mask, seq.depth_m,
                            frames_at_rest_before(anc.anchor, seq.valid), anc.icp_key,
                            anisotropic=False)
    ok = icp.valid & jnp.all(icp.scale > 0) & jnp.all(jnp.isfinite(icp.scale))
    cand = eqx.tree_at(lambda s: (s.T_cam_obj, s.obj_scale), state,
                       (pose_matrix(T[:3, :3], icp.translation),
                        jnp.where(ok, icp.scale, state.obj_scale)))
    # Both candidates through one vmapped copy of the objective: each inlined copy of the
    # rasterizer adds to the program's compilation.
    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), cand, state)
    loss, over = jax.vmap(lambda s: pose_fit_loss(config, hyper, anc.frame, s))(both)
    ok = ok & (loss[0] < loss[1])
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), cand, state), over[0] | over[1]


def anchor_stages(config: TrackConfig, hyper: TrackHyper, state: TrackState,
                  anc: AnchorInput) -> tuple[TrackState, dict]:
    """The anchor frame's stages in order: the joint stage, the ICP scale (with depth), the
    scale stage, the joint stage again. The pose is refined before the ICP because ICP
    with the rotation fixed turns a rotation error into a wrong scale, and the ICP fits one
    common scale: per-axis ICP scales from a partial, occluded view came out 2× off on one
    axis of a can in our runs, while the mask stage refines the axes.

    The two joint stages are one ``lax.scan`` of two steps, the second with the frame's key
    folded with 1, and the scale stages sit in a ``lax.cond`` on the scan's step after the
    first: one compiled copy of each objective instead of two of the joint one. The scan's
    step is not batched data, so under ``vmap`` the ``cond`` stays a branch."""
    has_depth = anc.seq.depth_m is not None

    @jax.jit  # its shapes below trace it; the cond's call finds it in jit's trace cache
    def scale_stages(state):
        icp_overflow = jnp.zeros((), bool)
        if has_depth:
            state, icp_overflow = anchor_icp_scale(config, hyper, state, anc)
        state, scale = anchor_scale(config, hyper, state, anc)
        return state, scale, icp_overflow

    shapes = jax.eval_shape(scale_stages, state)
    skip = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes[1:])

    def body(carry, x):
        state, scale, icp_overflow = carry
        second, key = x
        anc_k = eqx.tree_at(lambda a: a.frame.key, anc, key)
        state, joint = anchor_joint(config, hyper, state, anc_k)
        state, scale, icp_overflow = jax.lax.cond(
            second, lambda s: (s, scale, icp_overflow), scale_stages, state)
        return (state, scale, icp_overflow), joint

    keys = jnp.stack([anc.frame.key, jax.random.fold_in(anc.frame.key, 1)])
    (state, scale, icp_overflow), joints = jax.lax.scan(
        body, (state, *skip), (jnp.arange(2) == 1, keys))
    pre, joint = (jax.tree.map(lambda x, k=k: x[k], joints) for k in (0, 1))
    return state, {"pre": pre, "scale": scale, "joint": joint, "icp_overflow": icp_overflow}


def hand_stage(config: TrackConfig, hyper: TrackHyper, seq: Sequence, model: mano.ManoModel,
               keys: tuple[Array, Array]) -> Hand:
    """The hand before tracking: AGILE's metric initialization (ICP scale, PnP translation,
    §3.2), then the refinement of :func:`~hoijax.tracking.fit_hand` when
    ``config.hand_fit.enabled`` (beyond AGILE). ``keys``: (initialization, refinement)."""
    obs = HandObs.of(seq)
    fit_hp = hyper.hand_fit
    # With the refinement, an implausible ICP scale is replaced by the model's own size.
    bounds = (fit_hp.icp_scale_min, fit_hp.icp_scale_max) if config.hand_fit.enabled else None
    init = init_hand(model, obs, keys[0], scale_bounds=bounds)
    params, scale, transl, finite = seq.hand_init, init.scale, init.transl, jnp.ones((), bool)
    if config.hand_fit.enabled:
        fit = fit_hand(model, obs, init.scale, init.transl, keys[1], config=config.hand_fit,
                       hyper=hyper.hand_fit)
        params, scale, transl, finite = fit.hand, fit.scale, fit.transl, fit.finite
    verts, kps = jax.vmap(lambda p: hand_in_mano_frame(model, p))(params)
    verts, kps = scale * verts, scale * kps
    normals = jax.vmap(lambda v: geometry.vertex_normals(v, model.faces))(verts)
    return Hand(params=params, scale=scale, pose=HandPose(verts, kps, normals, transl),
                finite=finite, scale_fallback=init.scale_fallback)


def initial_object(config: TrackConfig, seq: Sequence, obj: ObjectModel,
                   onset: Int[Array, ""]) -> tuple[TrackState, Int[Array, ""], Bool[Array, ""]]:
    """The object's pose and scale to start from, the anchor frame and the rasterizer's
    overflow: a given pose (e.g. FoundationPose's) holds at its own frame, which becomes the
    anchor; without one, a render-and-compare search at the onset frame. The hand part of the
    state is a placeholder (zero) until step 1 sets it."""
    dtype = seq.K.dtype
    zero_hand = (jnp.zeros(3, dtype), jnp.zeros((778, 3), dtype))
    if seq.T_cam_obj_init is not None:
        state = TrackState(seq.T_cam_obj_init, jnp.ones(3, dtype), *zero_hand)
        return state, jnp.asarray(seq.init_frame, jnp.int32), jnp.zeros((), bool)
    rotations = candidate_rotations(config.search_directions, config.search_inplane)
    search = search_object_pose(obj.mesh, seq.K, seq.object_mask[onset], seq.hand_mask[onset],
                                None if seq.depth_m is None else seq.depth_m[onset],
                                jnp.asarray(rotations, dtype),
                                downsample=config.search_downsample,
                                pairs_per_face=config.pairs_per_face)
    state = TrackState(pose_matrix(search.R_cam_obj, search.t_cam_obj),
                       jnp.full(3, search.scale, dtype), *zero_hand)
    return state, onset, search.overflow
