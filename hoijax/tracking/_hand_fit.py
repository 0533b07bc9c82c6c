"""Refinement of the detector's MANO hand against 2D keypoints and hand depth (beyond AGILE).

AGILE (§3.2) keeps the detector's articulation θ, shape β and wrist rotation R_h fixed and fits
only the hand scale ``s_h`` and the per-frame translation ``T_h``. A detector's θ and R_h are
biased per sequence (the same person, grasp and viewpoint fool it the same way in every frame)
and jitter per frame, and that error stays in the tracked hand: ~2 cm of root-relative joint
error on our synthetic benchmark. :func:`fit_hand` removes most of it before tracking, with one
small optimization per sequence (sequences batch with ``vmap``). Its unknowns, all zero at the
start except the translations:

- articulation ``θ_f = θ_f^init + (a + a_f) C``, with ``C`` the first 12 MANO PCA components
  (``model.hands_components[:12]``), ``a`` one per-sequence delta, ``a_f`` per-frame deltas;
- wrist rotation ``R_f = exp(ω) exp(ω_f) R_f^init``: camera-frame deltas on the left, the
  inverse of how a detector's error is modelled (``R_init = R_jitter R_bias R_true``);
- a log scale λ and per-frame translations ``T̃_f``, with the camera-frame hand
  ``e^λ (s_h^init MANO(β, θ_f, R_f) + T̃_f)``: λ scales the hand *about the camera centre*, which
  leaves its projection unchanged, so the keypoints constrain ``T̃_f`` and the depth alone
  constrains λ. With ``s_h`` and ``T_f`` apart, changing the scale would need every ``T_f`` to
  follow it along a narrow valley, which Adam walks down slowly. λ is held without depth;
- a per-sequence shape delta on the detector's β (``fit_betas``, the default; False keeps
  the detector's β).

The result is expressed as AGILE's ``s_h · MANO(β, θ_f, R_f) + T_h`` with MANO at zero
translation, as :func:`~hoijax.tracking._init.hand_in_mano_frame` defines.

The objective is a MAP estimate, each term a negative log-likelihood in units of its noise:

- keypoints: confidence-weighted pseudo-Huber reprojection error of the 21 joints (px);
- depth (when given): one-sided scan→model distance from a fixed random subset of the observed
  hand depth points (drawn once) to the plane of a nearby camera-facing face of the posed
  mesh, plus a little point-to-point, pseudo-Huber (m); each frame weighs as a few
  independent points because neighbouring points share their errors;
- Gaussian priors on every delta (per-frame ones tighter than per-sequence ones) and on λ;
- temporal smoothness: second differences over frames of the *refined* articulation, rotation
  and translation (the hand moves smoothly; a detector's per-frame error need not, so a
  smoothness prior on the deltas would fight the correction of the jitter).

Frames with ``valid`` False contribute no data or smoothness term; their per-frame deltas stay
at 0. Adam (per-group step sizes) runs in stages, each one problem for the whole sequence,
the stages of one objective in one loop (:func:`~hoijax.tracking.minimize_stages`):
keypoints only with λ held; depth with the pose held (λ and ``T̃`` move the hand along the
rays onto the depth points); everything; everything with smaller steps. Adam takes
full-size steps on every coordinate however small its gradient, so with everything free from
the start the wrist rotation followed the depth gradient of a mismatch that λ alone explains
and settled in a wrong ICP basin (7–11° off on a benchmark sequence, instead of ~2°).

``HandFitConfig.solver="lm"`` runs Adam's first two stages and then minimizes the same
objective by Levenberg–Marquardt (:func:`~hoijax.tracking.minimize_lm`), everything free at
once, instead of Adam's last two: each term in residual form (the robust ones reweighted at the
current point), the per-frame blocks of the Jacobian by graph colouring
(:func:`_gauss_newton_matrix`), up to ``lm_iters`` evaluations where Adam's 300 steps stop short
of the minimum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxlie
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from hoijax import geometry, mano
from hoijax.data import HandParams
from hoijax.tracking._init import HandObs, sample_mask_points
from hoijax.tracking._gauss_newton import minimize_lm
from hoijax.tracking._optimize import minimize_stages
from hoijax.tracking._settings import HandFitConfig, HandFitHyper

NUM_PCA = 12
"""PCA components of the articulation deltas (a detector's error lives in the first few)."""

_FAR_M2 = 1.0
"""Added to the squared distance (m²) of vertices facing away from the camera, so a depth point
is matched to one only when no vertex faces the camera."""

_MAX_INCIDENT = 12
"""Faces searched around a vertex (MANO has at most 9)."""

Params = dict[str, Array]
"""The unknowns: ``pca_seq`` (12), ``pca_frame`` (N, 12), ``rot_seq`` (3), ``rot_frame``
(N, 3), ``log_scale`` (), ``transl`` (N, 3), ``betas`` (S,)."""


class HandFitResult(eqx.Module):
    """Refined hand of one sequence: the camera-frame hand is ``scale · MANO(hand) + transl``."""

    hand: HandParams
    """Refined per-frame MANO parameters: ``hand_pose`` and ``global_orient`` refined,
    ``betas`` as given (unless ``fit_betas``), ``transl`` zero: MANO at zero translation, the
    placement is :attr:`scale` and :attr:`transl`, as ``hand_in_mano_frame`` expects."""
    scale: Float[Array, ""]
    """Refined hand scale s_h (the given one when there is no depth)."""
    transl: Float[Array, "N 3"]
    """Refined per-frame translation T_h, camera frame, metres."""
    num_iters: Int[Array, ""]
    """Adam steps taken, all stages together, plus LM's evaluations with ``solver="lm"``."""
    finite: Bool[Array, ""]
    """Every loss and gradient evaluated was finite (a non-finite step is never applied) and
    so are the refined parameters."""
    terms: dict[str, Float[Array, ""]]
    """The objective's terms at the last evaluation: ``keypoint_px2`` (confidence-weighted mean
    squared reprojection error, px²), ``depth_mm`` (mean point-to-surface distance, only with
    depth), ``data``, ``prior`` and ``smooth`` (their shares of the objective); 0 where every
    stage's cap is 0."""


def _pseudo_huber(u: Float[Array, "*B"], delta2: Float[Array, ""]) -> Float[Array, "*B"]:
    """``2 δ² (√(1 + u/δ²) − 1)`` of a squared normalized residual ``u ≥ 0``: ``u`` near 0,
    linear in the residual ``√u`` far out. The root's argument is ≥ 1: no singular gradient."""
    return 2.0 * delta2 * (jnp.sqrt(1.0 + u / delta2) - 1.0)


def _pseudo_huber_slope(u: Float[Array, "*B"], delta2: Float[Array, ""]) -> Float[Array, "*B"]:
    """``d/du`` of :func:`_pseudo_huber`, ``1/√(1 + u/δ²)``: the IRLS weight that makes
    ``slope · u`` have the robust cost's gradient at ``u``."""
    return 1.0 / jnp.sqrt(1.0 + u / delta2)


def _second_diff(x: Float[Array, "N D"]) -> Float[Array, "M D"]:
    return x[2:] - 2.0 * x[1:-1] + x[:-2]


def _hand_rotated(
    model: mano.ManoModel,
    betas: Float[Array, " S"],
    hand_pose: Float[Array, "45"],
    R: Float[Array, "3 3"],
) -> tuple[Float[Array, "778 3"], Float[Array, "21 3"]]:
    """MANO at zero translation with the wrist rotation given as a matrix.

    MANO turns the whole hand about its rest root joint ``J0``, so the hand with wrist rotation
    ``R`` is ``R (x − J0) + J0`` for the hand ``x`` at zero wrist rotation (pose correctives
    depend on the finger joints only). No matrix logarithm (singular at 0 and π) enters the
    differentiated objective."""
    out = mano.forward(model, jnp.zeros(3, hand_pose.dtype), hand_pose, betas,
                       flat_hand_mean=True)
    j0 = out.joints[0]
    verts = (out.vertices - j0) @ R.T + j0
    kps = (out.keypoints("smplx", "openpose") - j0) @ R.T + j0
    return verts, kps


def _incident_faces(faces: Int[Array, "F 3"], num_verts: int,
                    max_faces: int = _MAX_INCIDENT) -> Int[Array, "V K"]:
    """The faces around each vertex (up to ``max_faces``, the last one repeated to fill)."""
    flat = faces.reshape(-1)
    order = jnp.argsort(flat, stable=True)
    ids = jnp.arange(num_verts, dtype=flat.dtype)
    start = jnp.searchsorted(flat[order], ids, side="left")
    count = jnp.searchsorted(flat[order], ids, side="right") - start
    k = jnp.minimum(jnp.arange(max_faces)[None, :], jnp.maximum(count[:, None] - 1, 0))
    return order[jnp.clip(start[:, None] + k, 0, flat.shape[0] - 1)] // 3


def _so3_exp(w: Float[Array, "*B 3"]) -> Float[Array, "*B 3 3"]:
    return jaxlie.SO3.exp(w).as_matrix()


def _objective(
    model: mano.ManoModel,
    K: Float[Array, "3 3"],
    hand_init: HandParams,
    scale: Float[Array, ""],
    keypoints_px: Float[Array, "N 21 2"],
    keypoints_conf: Float[Array, "N 21"],
    valid: Bool[Array, " N"],
    points: Float[Array, "N P 3"] | None,
    points_valid: Bool[Array, "N P"] | None,
    hp: HandFitHyper,
) -> tuple[Callable[[Params], tuple], Callable[[Params, bool], tuple], Callable, Callable]:
    """``(posed, loss, residuals, reg_residuals)``: the refined hand of given unknowns, the
    objective, and the objective in residual form for Gauss–Newton.

    ``posed(params) -> (verts_cam, kps_cam, hand_pose, R, t_cam)``; ``loss(params, with_depth)
    -> (total, terms)`` (``with_depth`` static; depth needs ``points``);
    ``residuals(params, depth_weight) -> (total, terms, r_frames, r_reg)``: the same objective
    with the depth data scaled by ``depth_weight`` (traced; depth needs ``points``), the
    per-frame data residuals ``r_frames`` (N, M), whose frame ``f`` depends only on the
    per-sequence unknowns and frame ``f``'s, and the priors' and smoothness residuals ``r_reg``
    (``reg_residuals(params)`` alone, without MANO). The priors and smoothness are
    ``‖r_reg‖²`` exactly; the robust data terms are reweighted at the current point (IRLS, the
    weights held), so ``‖r_frames‖²``'s gradient equals theirs there and its Gauss–Newton
    matrix models their curvature."""
    dtype = hand_init.hand_pose.dtype
    n = valid.shape[0]
    comps = jnp.asarray(model.hands_components[:NUM_PCA], dtype)
    R_init = _so3_exp(hand_init.global_orient)
    faces = jnp.asarray(model.faces)
    incident = _incident_faces(faces, model.v_template.shape[0])
    # Missing keypoints are replaced before any arithmetic: no NaN values, no NaN gradients.
    kp_ok = (jnp.isfinite(keypoints_conf) & (keypoints_conf > 0)
             & jnp.all(jnp.isfinite(keypoints_px), axis=-1) & valid[:, None])
    conf = jnp.where(kp_ok, keypoints_conf, 0.0)
    kp_obs = jnp.where(kp_ok[..., None], keypoints_px, 0.0)
    frame_w = valid.astype(dtype)
    triple_w = (valid[2:] & valid[1:-1] & valid[:-2]).astype(dtype)

    def pose(params):
        hand_pose = hand_init.hand_pose + (params["pca_seq"] + params["pca_frame"]) @ comps
        R = jnp.einsum("ab,nbc,ncd->nad", _so3_exp(params["rot_seq"]),
                       _so3_exp(params["rot_frame"]), R_init)
        g = jnp.exp(params["log_scale"])
        return hand_pose, R, g, g * params["transl"]

    def posed(params):
        hand_pose, R, g, t = pose(params)
        betas = hand_init.betas + params["betas"]
        verts, kps = jax.vmap(lambda b, h, r: _hand_rotated(model, b, h, r))(betas, hand_pose, R)
        return g * scale * verts + t[:, None], g * scale * kps + t[:, None], hand_pose, R, t

    def match(v, p):
        # Each point is measured to the plane of a camera-facing face near it: exact for a
        # point on that face (a vertex's tangent plane is ~1 mm off between the ~9 mm apart
        # vertices of a finger). The face is the one with the nearest centroid among those
        # around the nearest camera-facing vertex, which halves the search over all faces (the
        # search dominates the cost). Matches and normals are held, as in ICP: the gradient
        # moves the matched faces, not the choice of face.
        tri = v[faces]  # (F, 3, 3)
        c = jnp.mean(tri, axis=1)
        cross = jnp.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        norm = geometry.safe_norm(cross)
        normals = cross / jnp.where(norm > 0, norm, 1.0)[:, None]
        # The camera sits at the origin: a surface faces it where its normal opposes the ray.
        face_back = jnp.where(jnp.sum(normals * c, -1) < 0, 0.0, _FAR_M2)
        vert_back = jnp.where(jnp.sum(geometry.vertex_normals(v, faces) * v, -1) < 0, 0.0,
                              _FAR_M2)
        d2 = jnp.sum(p**2, -1)[:, None] + jnp.sum(v**2, -1)[None, :] - 2.0 * p @ v.T
        cand = incident[jnp.argmin(d2 + vert_back[None, :], axis=1)]  # (P, K)
        dc = jnp.sum((p[:, None, :] - c[cand]) ** 2, -1) + face_back[cand]
        best = jnp.take_along_axis(cand, jnp.argmin(dc, axis=1)[:, None], axis=1)[:, 0]
        return best, normals[best]

    def depth_frame(verts_cam, p, ok, best, normal):
        diff = jnp.where(ok[:, None], p - jnp.mean(verts_cam[faces[best]], axis=1), 0.0)
        along = jnp.sum(diff * normal, -1)
        r2 = along**2 + hp.point_to_point * jnp.sum(diff**2, -1)
        u = r2 / hp.depth_sigma_m**2
        delta2 = (hp.depth_huber_m / hp.depth_sigma_m) ** 2
        cost = _pseudo_huber(u, delta2)
        w = ok.astype(dtype)
        count = jnp.sum(w)
        denom = jnp.where(count > 0, count, 1.0)
        dist_mm = 1e3 * jnp.sum(w * geometry.safe_sqrt(r2)) / denom
        # IRLS: the pseudo-Huber's slope at the current point, held.
        irls = jax.lax.stop_gradient(jnp.sqrt(w / denom * _pseudo_huber_slope(u, delta2)))
        parts = jnp.concatenate([along[:, None], jnp.sqrt(hp.point_to_point) * diff], -1)
        resid = (irls / hp.depth_sigma_m)[:, None] * parts  # (P, 4): Σ² = Σ w ρ'(u) u / count
        return jnp.sum(w * cost) / denom, dist_mm, (count > 0).astype(dtype), resid

    def regularizer(params, hand_pose, R, t_cam):
        """The priors' and the smoothness residuals: ``½ Σ (x/σ)²`` each is ``Σ r²``."""
        half = jnp.sqrt(jnp.asarray(0.5, dtype))
        fw = jnp.sqrt(frame_w)[:, None]
        tw = jnp.sqrt(triple_w)[:, None]
        prior = [params["pca_seq"] / hp.pca_seq_sigma, fw * params["pca_frame"]
                 / hp.pca_frame_sigma, params["rot_seq"] / hp.rot_seq_sigma_rad,
                 fw * params["rot_frame"] / hp.rot_frame_sigma_rad,
                 params["log_scale"][None] / hp.log_scale_sigma,
                 params["betas"] / hp.betas_sigma]
        smooth = [tw * _second_diff(hand_pose) / hp.smooth_pose_sigma_rad,
                  tw * _second_diff(R.reshape(n, 9)) / (jnp.sqrt(2.0) * hp.smooth_rot_sigma_rad),
                  tw * _second_diff(t_cam) / hp.smooth_transl_sigma_m]
        flat = lambda xs: half * jnp.concatenate([x.reshape(-1) for x in xs])  # noqa: E731
        return flat(prior), flat(smooth)

    def evaluate(params, depth_weight):
        """(total, terms, per-frame data residuals (N, M), regularizer residuals)."""
        verts_cam, kps_cam, hand_pose, R, t_cam = posed(params)
        diff = geometry.project(K, kps_cam) - kp_obs  # (N, 21, 2), px
        e2 = jnp.sum(diff**2, -1)
        u = e2 / hp.keypoint_sigma_px**2
        delta2 = (hp.keypoint_huber_px / hp.keypoint_sigma_px) ** 2
        data = 0.5 * jnp.sum(conf * _pseudo_huber(u, delta2))
        irls = jax.lax.stop_gradient(jnp.sqrt(0.5 * conf * _pseudo_huber_slope(u, delta2)))
        r_frames = [((irls / hp.keypoint_sigma_px)[..., None] * diff).reshape(n, -1)]
        total_conf = jnp.sum(conf)
        terms = {"keypoint_px2": jnp.sum(conf * e2) / jnp.where(total_conf > 0, total_conf, 1.0)}
        if depth_weight is not None:
            # One frame at a time: the (P, V) distances of a frame stay in cache, where the
            # whole sequence's would stream through memory.
            best, normal = jax.lax.map(lambda x: match(*x),
                                       (jax.lax.stop_gradient(verts_cam), points))
            cost, dist_mm, has, resid = jax.vmap(depth_frame)(verts_cam, points, points_valid,
                                                              best, normal)
            weight = 0.5 * hp.depth_points_weight * depth_weight
            data = data + weight * jnp.sum(cost)
            r_frames.append(jnp.sqrt(weight) * resid.reshape(n, -1))
            nf = jnp.sum(has)
            terms["depth_mm"] = jnp.sum(dist_mm * has) / jnp.where(nf > 0, nf, 1.0)
        r_prior, r_smooth = regularizer(params, hand_pose, R, t_cam)
        prior, smooth = jnp.sum(r_prior**2), jnp.sum(r_smooth**2)
        terms.update(data=data, prior=prior, smooth=smooth)
        return (data + prior + smooth, terms, jnp.concatenate(r_frames, -1),
                jnp.concatenate([r_prior, r_smooth]))

    def loss(params, with_depth):
        total, terms, _, _ = evaluate(params, 1.0 if with_depth else None)
        return total, terms

    def residuals(params, depth_weight):
        return evaluate(params, depth_weight if points is not None else None)

    def reg_residuals(params):
        hand_pose, R, _, t_cam = pose(params)
        return jnp.concatenate(regularizer(params, hand_pose, R, t_cam))

    return posed, loss, residuals, reg_residuals


def _initial_params(transl: Float[Array, "N 3"], num_betas: int) -> Params:
    n, dtype = transl.shape[0], transl.dtype
    return {"pca_seq": jnp.zeros(NUM_PCA, dtype), "pca_frame": jnp.zeros((n, NUM_PCA), dtype),
            "rot_seq": jnp.zeros(3, dtype), "rot_frame": jnp.zeros((n, 3), dtype),
            "log_scale": jnp.zeros((), dtype), "transl": transl,
            "betas": jnp.zeros(num_betas, dtype)}


def fit_hand(
    model: mano.ManoModel,
    obs: HandObs,
    scale: Float[ArrayLike, ""],
    transl: Float[ArrayLike, "N 3"],
    key: Array,
    *,
    config: HandFitConfig = HandFitConfig(),
    hyper: HandFitHyper | None = None,
) -> HandFitResult:
    """Refine the detector's articulation and wrist rotation, with the hand scale and the
    per-frame translations, of one sequence against its 2D keypoints and hand depth points.

    Goes beyond AGILE §3.2, which keeps θ and R_h fixed: the per-sequence bias and per-frame
    jitter of the detector's θ (12 PCA components) and R_h are estimated jointly with ``s_h``
    and ``T_h`` (see the module docstring for the model, the objective and the stages).
    ``obs.hand_init`` is the detector's per-frame estimate (its ``transl`` is not used); ``scale``
    and ``transl`` are the metric initialization, e.g.
    :func:`~hoijax.tracking._init.init_hand`'s. Keypoints with a non-positive or non-finite
    confidence or non-finite coordinates count as missing. ``obs.hand_mask`` or ``obs.depth_m``
    None:
    keypoints only, the scale held. ``key`` draws the ``config.num_points`` depth points per
    frame (once). Static iteration caps per stage (:class:`HandFitConfig`): ``keypoint_iters``
    (keypoints, scale held), ``align_iters`` (depth, pose held), ``iters`` (everything),
    ``fine_iters`` (everything, smaller steps); without depth all stages fit the keypoints.
    Works under ``jit`` and under
    ``vmap`` over sequences.
    """
    hp = HandFitHyper() if hyper is None else hyper
    c = config
    K, hand_init, hand_mask, depth_m = obs.K, obs.hand_init, obs.hand_mask, obs.depth_m
    keypoints_px, keypoints_conf, valid = obs.keypoints_px, obs.keypoints_conf, obs.valid
    K = jnp.asarray(K)
    dtype = jnp.asarray(hand_init.hand_pose).dtype
    hand_init = jax.tree.map(lambda x: jnp.asarray(x, dtype), hand_init)
    valid = jnp.asarray(valid, bool)
    n = valid.shape[0]
    use_depth = depth_m is not None and hand_mask is not None
    points = points_valid = None
    if use_depth:
        keys = jax.random.split(key, n)
        points, points_valid = jax.vmap(
            lambda d, m, k: sample_mask_points(K, d, m, k, c.num_points))(
            jnp.asarray(depth_m, dtype), jnp.asarray(hand_mask, bool), keys)
        points_valid = points_valid & valid[:, None]
        points = jnp.where(points_valid[..., None], points, 0.0)
    scale = jnp.asarray(scale, dtype)
    posed, loss, residuals, reg_residuals = _objective(
        model, K, hand_init, scale, jnp.asarray(keypoints_px, dtype),
        jnp.asarray(keypoints_conf, dtype), valid, points, points_valid, hp)
    params = _initial_params(jnp.asarray(transl, dtype), hand_init.betas.shape[-1])
    if c.solver == "lm":
        # Adam's keypoint and depth-alignment stages bring the hand into the basin, LM
        # finishes everything (see _fit_lm for why not LM from the start).
        warm = dataclasses.replace(c, iters=0, fine_iters=0)
        params, warm_steps, warm_finite, _ = _fit_adam(loss, params, use_depth, warm, hp)
        params, num_iters, finite, terms = _fit_lm(residuals, reg_residuals, params, use_depth,
                                                   c, hp)
        num_iters, finite = num_iters + warm_steps, finite & warm_finite
    elif c.solver == "adam":
        params, num_iters, finite, terms = _fit_adam(loss, params, use_depth, c, hp)
    else:
        raise ValueError(f"HandFitConfig.solver must be 'adam' or 'lm', got {c.solver!r}")

    _, _, hand_pose, R, t_cam = posed(params)
    hand = HandParams(betas=hand_init.betas + params["betas"], hand_pose=hand_pose,
                      global_orient=jaxlie.SO3.from_matrix(R).log(),
                      transl=jnp.zeros((n, 3), dtype))
    finite = finite & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x))
                                         for x in jax.tree.leaves(params)]))
    return HandFitResult(hand=hand, scale=jnp.exp(params["log_scale"]) * scale, transl=t_cam,
                         num_iters=num_iters, finite=finite, terms=terms)


def _fit_adam(loss, params: Params, use_depth: bool, c: HandFitConfig, hp: HandFitHyper):
    """Adam in stages (module docstring): ``(params, steps, finite, terms)``."""
    dtype = params["transl"].dtype
    zero = jnp.zeros((), dtype)
    lrs = {"pca_seq": hp.lr_pca, "pca_frame": hp.lr_pca, "rot_seq": hp.lr_rot,
           "rot_frame": hp.lr_rot, "log_scale": hp.lr_log_scale, "transl": hp.lr_transl,
           "betas": hp.lr_betas if c.fit_betas else zero}
    pose = ("pca_seq", "pca_frame", "rot_seq", "rot_frame", "betas")
    # (uses depth, step factor, groups held, iteration cap), all static but the factor.
    stages = [(False, 1.0, ("log_scale",), c.keypoint_iters)]
    if use_depth:
        stages += [(True, 1.0, pose, c.align_iters), (True, 1.0, (), c.iters),
                   (True, hp.fine_lr_factor, (), c.fine_iters)]
    else:
        stages += [(False, 1.0, ("log_scale",), c.iters),
                   (False, hp.fine_lr_factor, ("log_scale",), c.fine_iters)]
    num_iters, finite = jnp.zeros((), jnp.int32), jnp.ones((), bool)
    # The terms' layout with zeros, for stages that do not run (no evaluation compiled).
    terms = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype),
                         jax.eval_shape(lambda q: loss(q, use_depth)[1], params))
    # Consecutive stages of the same objective run as one loop (minimize_stages): one copy of
    # the objective per group, not per stage (two with depth, one without).
    groups: list[tuple[bool, list]] = []
    for with_depth, factor, held, cap in stages:
        stage_lrs = {k: zero if k in held else factor * lr for k, lr in lrs.items()}
        if groups and groups[-1][0] == with_depth:
            groups[-1][1].append((stage_lrs, cap))
        else:
            groups.append((with_depth, [(stage_lrs, cap)]))
    for with_depth, group in groups:
        if all(cap <= 0 for _, cap in group):
            continue
        out = minimize_stages(lambda q, d=with_depth: loss(q, d), params, group, tol=hp.tol,
                              record_trace=False)
        params, terms = out.params, {**terms, **out.terms}
        num_iters, finite = num_iters + out.num_iters, finite & out.finite
    return params, num_iters, finite, terms


_FRAME_KEYS = (("pca_frame", NUM_PCA), ("rot_frame", 3), ("transl", 3))
"""The per-frame unknowns, in the order of a frame's row in the LM's flat layout."""


def _sequence_slots(num_betas: int) -> dict[str, slice]:
    """Where each per-sequence unknown sits at the head of the LM's flat layout."""
    ends = {"pca_seq": NUM_PCA, "rot_seq": NUM_PCA + 3, "log_scale": NUM_PCA + 4,
            "betas": NUM_PCA + 4 + num_betas}
    starts = [0, *list(ends.values())[:-1]]
    return {k: slice(a, b) for (k, b), a in zip(ends.items(), starts)}


def _flat_layout(params: Params) -> tuple[Array, Callable[[Array], Params], int]:
    """``(x, unpack, G)``: the unknowns as ``[pca_seq, rot_seq, log_scale, betas, frame 0's
    row, frame 1's row, ...]`` (``G`` per-sequence entries, then 18 per frame), so the
    per-frame blocks of the Gauss–Newton matrix are contiguous."""
    n = params["transl"].shape[0]
    slots = _sequence_slots(params["betas"].shape[0])
    g = slots["betas"].stop
    x = jnp.concatenate([params["pca_seq"], params["rot_seq"], params["log_scale"][None],
                         params["betas"],
                         jnp.concatenate([params[k] for k, _ in _FRAME_KEYS], -1).reshape(-1)])

    def unpack(x):
        rows = x[g:].reshape(n, -1)
        out = {k: x[sl] for k, sl in slots.items()}
        out["log_scale"] = out["log_scale"][0]
        start = 0
        for k, size in _FRAME_KEYS:
            out[k] = rows[:, start:start + size]
            start += size
        return out

    return x, unpack, g


def _gauss_newton_matrix(residuals, reg_residuals, unpack, g: int, n: int,
                         held_g: tuple[int, ...] = ()):
    """``curvature(x, depth_weight, free) -> (loss, gradient, H, terms)`` in the flat layout.

    The data residuals of frame ``f`` depend only on the ``g`` per-sequence unknowns and frame
    ``f``'s 18, so ``g + 18`` tangent columns give their whole Jacobian: column ``k`` of the
    per-frame part moves unknown ``k`` of *every* frame at once, and frame ``f``'s residuals
    read off their derivative in frame ``f``'s own unknown (graph colouring). One column per
    unknown would take ``g + 18 N``. The regularizer (priors, smoothness across frames) is
    cheap without MANO and is differentiated column by column. ``H = 2 Jᵀ J`` and the gradient
    ``2 Jᵀ r`` (exact: the robust terms' IRLS residuals have their gradient); rows and
    columns of held unknowns (``free`` 0) are cleared but for a unit diagonal. The
    per-sequence unknowns in ``held_g`` (indices below ``g``, known held when the program is
    built: the shape coefficients unless fitted, the scale without depth) get no tangent
    column at all."""
    per_frame = 18
    size = g + per_frame * n
    held = set(held_g)
    active = jnp.asarray([a for a in range(g) if a not in held], int)
    select = jnp.eye(g)[:, active]  # (g, a): scatters the active columns' products back
    tangents = jnp.concatenate([
        jnp.eye(g, size)[active],
        jnp.concatenate([jnp.zeros((per_frame, g)),
                         jnp.tile(jnp.eye(per_frame), (1, n))], axis=1)])
    num_active = active.shape[0]

    def curvature(x, depth_weight, free):
        def data(x):
            total, terms, r, r_reg = residuals(unpack(x), depth_weight)
            return r, (total, terms, r_reg)

        r, lin, (total, terms, r_reg) = jax.linearize(data, x, has_aux=True)
        cols = jax.vmap(lin)(tangents.astype(x.dtype))  # (a + 18, N, M)
        jg, jx = cols[:num_active], cols[num_active:]
        sel = select.astype(x.dtype)
        h_gg = sel @ jnp.einsum("anm,bnm->ab", jg, jg) @ sel.T
        h_gx = sel @ jnp.einsum("anm,knm->ank", jg, jx).reshape(num_active, -1)
        blocks = jnp.einsum("knm,lnm->nkl", jx, jx)
        h_xx = jnp.einsum("nkl,nj->nkjl", blocks, jnp.eye(n, dtype=x.dtype)).reshape(
            per_frame * n, per_frame * n)
        H = jnp.block([[h_gg, h_gx], [h_gx.T, h_xx]])
        grad = jnp.concatenate([sel @ jnp.einsum("anm,nm->a", jg, r),
                                jnp.einsum("knm,nm->nk", jx, r).reshape(-1)])
        j_reg = jax.jacfwd(lambda x: reg_residuals(unpack(x)))(x)
        H = 2.0 * (H + j_reg.T @ j_reg)
        grad = 2.0 * (grad + j_reg.T @ r_reg)
        H = H * free[:, None] * free[None, :] + jnp.diag(1.0 - free)
        return total, grad * free, H, terms

    return curvature


def _fit_lm(residuals, reg_residuals, params: Params, use_depth: bool, c: HandFitConfig,
            hp: HandFitHyper):
    """Levenberg–Marquardt on Adam's objective, everything free at once (the scale held without
    depth): ``(params, evaluations, finite, terms)``.

    :func:`fit_hand` starts it after Adam's first two stages (keypoints, then depth with the
    pose held). LM in those stages instead solved the keypoints-only one to convergence, which
    fits the wrist and fingers to the 2D evidence alone, and under heavy occlusion the depth
    stage could not bring them back (32 development sequences: 4 of them 2-3× worse); Adam's
    100 keypoint steps stop short of that. LM from the initial guess with everything free
    stopped at a higher objective than Adam's on 2 of the 8 benchmark sequences (3.0 → 4.0,
    3.4 → 4.4 mm)."""
    n = params["transl"].shape[0]
    x0, unpack, g = _flat_layout(params)
    held = () if use_depth else ("log_scale",)
    if not c.fit_betas:
        held += ("betas",)
    free = _flat_layout({k: jnp.full_like(v, 0.0 if k in held else 1.0)
                         for k, v in params.items()})[0]
    # Unknowns held for the whole solve get no tangent column (the shape coefficients unless
    # fitted, the scale without depth).
    slots = _sequence_slots(params["betas"].shape[0])
    held_g = tuple(i for k in held for i in range(g)[slots[k]])
    curvature = _gauss_newton_matrix(residuals, reg_residuals, unpack, g, n, held_g)

    def fn(x):
        loss, grad, H, terms = curvature(x, 1.0 if use_depth else None, free)
        return loss, grad, H, terms, False

    out = minimize_lm(None, x0, max_iters=c.lm_iters, tol=hp.lm_tol, record_trace=False,
                      curvature=fn)
    return unpack(out.params), out.num_iters, out.finite, out.terms
