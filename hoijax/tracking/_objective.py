"""The tracker's objective for one frame, built in one place and reused by every stage.

:func:`frame_objective` returns ``f(state) -> (total, terms, overflow)`` for the terms a stage
names: the object is rendered once per evaluation (when an image term is named) and the image
terms (L_mask, L_depth, L_dino) read that one rendering; the hand terms (L_joint, the hand's
depth points) read the hand at ``state.hand_t``; the contact terms (L_interact against the
previous frame, L_contact) read the SDF grid. A term whose observation is missing (no depth
map, no features) is left out. ``overflow`` is the rasterizer's flag: the pair list was too
short for this pose, so faces may have been dropped (the driver re-runs such a sequence with a
larger capacity).

Where the sequence has a depth map, the image terms include L_depth and the hand terms the
hand's depth points (:mod:`hoijax.losses._depth`; not in AGILE's objective: weights ``depth``
and ``hand_depth``, 0 for AGILE's), and with ``TrackConfig.depth_occluders`` L_mask also leaves
out the pixels where the depth map shows something in front of the object
(:func:`hoijax.losses.depth_occluders`), as it leaves out the hand mask's.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from hoijax import losses, render
from hoijax.tracking._settings import TrackConfig, TrackHyper
from hoijax.tracking._state import FrameInput, FrameObs, TrackState

IMAGE_TERMS = frozenset({"mask", "depth", "dino"})
"""Terms that need the rendered object."""


def _erode(free, r: int):
    return -jax.lax.reduce_window(-free, -jnp.inf, jax.lax.max, (2 * r + 1, 2 * r + 1),
                                  (1, 1), "SAME") > 0.5


def dino_support(obs: FrameObs, mode: str = "strict") -> Bool[Array, "H W"]:
    """Pixels where L_dino takes points: the observed object outside the hand, eroded by one
    feature cell, so the four cells a bilinear read touches all lie on the object. At a coarse
    feature map, border reads blend in background and bias the loss towards a shrunken, distant
    object (on a 128² frame at stride 4, L_dino fell by 0.1 moving 10 cm away; interior points
    keep it flat in depth and minimal at the true rotation).

    ``mode="adaptive"``: where that leaves less than two cells' worth of pixels (a small object
    at DINO's native patch 14/16 resolution leaves none), erode by half a cell instead, and
    where that too leaves too little, use the object outside the hand as it is: a biased L_dino
    rather than none."""
    H, W = obs.object_mask.shape
    Hf, Wf = obs.feature_map.shape[:2]
    r = max(int(round(H / Hf)), int(round(W / Wf)))
    free = (obs.object_mask & ~obs.hand_mask).astype(jnp.float32)
    strict = _erode(free, r)
    if mode == "strict":
        return strict
    enough = 2 * r * r
    half = _erode(free, max(r // 2, 1))
    return jnp.where(jnp.sum(strict) >= enough, strict,
                     jnp.where(jnp.sum(half) >= enough, half, free > 0.5))


def combine(terms: dict[str, Array], weights: losses.LossWeights):
    """Weighted sum and the raw terms (the logged values of the optimizer trace)."""
    total, log = losses.combine_losses(terms, weights)
    return total, {k: log[k] for k in terms}


def frame_objective(config: TrackConfig, hyper: TrackHyper, inp: FrameInput,
                    prev: TrackState | None, names: frozenset[str], *,
                    with_residuals: bool = False, dino_points_at: TrackState | None = None):
    """``f(state) -> (total, terms, overflow)``: Σ λ_k L_k over ``names`` (AGILE Eq. 1, Eq. 2
    and the onset-frame objective) at ``state``; ``f(state, sigma_px2, mask_scale)`` renders
    the object's silhouette with that blur instead of ``hyper.sigma_px2`` and weighs L_mask by
    ``mask_scale · λ_mask`` (a solver's continuation; None: as ``hyper`` says).
    ``prev`` is the previous processed frame (L_interact's reference; only needed when
    ``names`` holds ``"interact"``).

    With ``with_residuals`` (static), ``f`` also returns the flat vector of ``√λ_k r_k`` over
    the terms with a residual form (:mod:`hoijax.losses._residuals`), from the same rendering:
    the curvature model of the Levenberg–Marquardt solver.

    ``dino_points_at``: L_dino's points are drawn once, visible at this state, instead of at
    every evaluation. Re-drawn per evaluation, the objective changes with the draw; Adam's
    small steps average over the draws, but a second-order solver compares the loss at two
    points and needs one objective (with per-evaluation draws it rejected its steps at a loss
    ~4 % above Adam's on the benchmark)."""
    obs, obj = inp.obs, inp.obj
    have = {"depth": obs.depth_m is not None,
            "dino": obs.feature_map is not None and obj.mesh.vertex_features is not None,
            "hand_depth": obs.hand_points is not None}
    names = frozenset(n for n in names if have.get(n, True))
    faces = obj.faces
    exclude = ~dino_support(obs, config.dino_support) if "dino" in names else None

    def rasterize(s: TrackState, sigma_px2=None):
        return render.rasterize(losses.obj_to_cam(s.T_cam_obj, s.obj_scale, obj.mesh.vertices),
                                faces, obs.K, config.raster(obs.image_size),
                                sigma_px2=hyper.sigma_px2 if sigma_px2 is None else sigma_px2)

    def draw(s: TrackState, rendering):
        return losses.select_visible_points(
            inp.key, obj.pool, obj.mesh.vertices, faces, s.T_cam_obj, s.obj_scale, obs.K,
            rendering, config.num_dino_points, exclude_mask=exclude)

    fixed_points = None
    if "dino" in names and dino_points_at is not None:
        at = jax.lax.stop_gradient(dino_points_at)
        fixed_points = draw(at, rasterize(at))

    def image_terms(s: TrackState, res: dict, sigma_px2):
        rendering = rasterize(s, sigma_px2)
        # Pixels the mask cannot speak for: under the observed hand, and (with a depth map)
        # under anything else in front of the object.
        unknown = obs.hand_mask
        if config.depth_occluders and obs.depth_m is not None:
            unknown = unknown | losses.depth_occluders(rendering, obs.depth_m, obs.object_mask,
                                                       margin_m=config.occluder_margin_m)
        out = {"mask": losses.mask_loss(rendering, obs.object_mask, unknown,
                                        normalize="object")[0]}
        if with_residuals:
            res["mask"] = losses.mask_residuals(rendering, obs.object_mask, unknown)
        if "depth" in names:
            out["depth"] = losses.depth_loss(rendering, obs.depth_m, obs.object_mask,
                                             obs.hand_mask)[0]
            if with_residuals:
                res["depth"] = losses.depth_residuals(rendering, obs.depth_m, obs.object_mask,
                                                      obs.hand_mask)
        if "dino" in names:
            # Re-drawn at every evaluation from this pose's z-buffer (no extra render; the
            # choice carries no gradient): always points visible at the current pose.
            points = draw(s, rendering) if fixed_points is None else fixed_points
            args = (points, obj.mesh.vertices, faces, obj.mesh.vertex_features, s.T_cam_obj,
                    s.obj_scale, obs.K, obs.feature_map, obs.hand_mask)
            out["dino"] = losses.dino_loss(*args, fixed_support=True)[0]
            if with_residuals:
                res["dino"] = losses.dino_residuals(*args)
        return out, rendering.overflow

    def f(s: TrackState, sigma_px2: Float[Array, ""] | None = None,
          mask_scale: Float[Array, ""] | None = None):
        weights = hyper.weights
        if mask_scale is not None:
            weights = eqx.tree_at(lambda w: w.mask, weights, weights.mask * mask_scale)
        terms, res, overflow = {}, {}, jnp.zeros((), bool)
        if names & IMAGE_TERMS:
            terms, overflow = image_terms(s, res, sigma_px2)
        if "interact" in names:
            args = (s.hand_verts_cam, prev.hand_verts_cam, s.T_cam_obj, prev.T_cam_obj, obj.grid)
            terms["interact"] = losses.interaction_loss(
                *args, s.obj_scale, sigma_per_m=hyper.gate_sigma_per_m)[0]
            if with_residuals:
                res["interact"] = losses.interaction_residuals(
                    *args, s.obj_scale, sigma_per_m=hyper.gate_sigma_per_m)
        if "contact" in names:
            terms["contact"] = losses.contact_loss(s.hand_verts_cam, s.T_cam_obj, obj.grid,
                                                   s.obj_scale)[0]
        if "joint" in names:
            args = (inp.hand.kps_rel + s.hand_t, obs.keypoints_px, obs.keypoints_conf, obs.K)
            terms["joint"] = losses.joint_loss(*args)[0]
            if with_residuals:
                res["joint"] = losses.joint_residuals(*args)
        if "hand_depth" in names:
            args = (obs.hand_points, obs.hand_points_valid, inp.hand.verts_rel + s.hand_t,
                    inp.hand.normals_rel)
            terms["hand_depth"] = losses.point_to_surface_loss(*args)[0]
            if with_residuals:
                res["hand_depth"] = losses.point_to_surface_residuals(*args)
        total, logged = combine(terms, weights)
        if not with_residuals:
            return total, logged, overflow
        return total, logged, overflow, weighted_residuals(res, weights, total.dtype)

    return f


def weighted_residuals(res: dict[str, Array], weights: losses.LossWeights,
                       dtype) -> Float[Array, " M"]:
    """``√λ_k r_k`` of every term, concatenated (a zero-length vector when none)."""
    parts = [jnp.sqrt(jnp.maximum(getattr(weights, k), 0.0)).astype(dtype) * res[k]
             for k in sorted(res)]
    return jnp.concatenate(parts) if parts else jnp.zeros((0,), dtype)


def pose_fit_loss(config: TrackConfig, hyper: TrackHyper, inp: FrameInput,
                  state: TrackState) -> tuple[Float[Array, ""], Bool[Array, ""]]:
    """λ_mask L_mask (+ λ_depth L_depth) of one pose and scale, and the rasterizer's overflow:
    how well they explain the frame's silhouette (and depth), to choose between candidate
    initializations."""
    total, _, overflow = frame_objective(config, hyper, inp, None,
                                         frozenset({"mask", "depth"}))(state)
    return total, overflow
