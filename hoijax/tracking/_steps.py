"""The optimization stages of AGILE §3.2–3.3, each for one frame of one sequence.

- :func:`hand_step` (step 1): the hand translation T_h alone, by L_joint (Eq. 2).
- :func:`object_step` (step 2): the object's rotation and translation, by
  λ_mask L_mask + λ_dino L_dino + λ_interact L_interact (Eq. 1), with the hand fixed.
- :func:`iof_scale_stage` and :func:`iof_joint_stage`: the onset frame. First the anisotropic
  object scale with the rotation fixed and the translation on its viewing ray
  (L_mask + L_contact), then hand translation and object pose together
  (L_joint + L_mask + L_dino + L_contact).

Where the sequence has a depth map, every stage also has the metric-depth terms of
:mod:`hoijax.losses._depth` (not in AGILE's objective; weights ``depth`` and ``hand_depth``,
0 for AGILE's): the rendered object against the map wherever the object is rendered, and the
hand's depth points against its surface wherever T_h is optimized.

Rotations are optimized as a tangent-space increment ``ω`` on the starting rotation
(``R = R_0 · exp(ω)``, ``ω = 0`` at the start), which has no singularity where the optimizer
begins. Every stage runs :func:`hoijax.tracking.minimize` (Adam, early stop), so it works under
``vmap`` with per-problem stopping, and every number in :class:`TrackHyper` is traced.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxlie
from jaxtyping import Array, ArrayLike, Bool, Float

from hoijax import losses, render, sdf
from hoijax.data import ObjectMesh
from hoijax.tracking._optimize import MinimizeResult, minimize


@dataclasses.dataclass(frozen=True)
class TrackConfig:
    """Static settings of the tracker: they fix shapes or loop bounds, so changing one
    recompiles. Numbers that do not (weights, learning rates, tolerances) are in
    :class:`TrackHyper`."""

    image_size: tuple[int, int]
    """(H, W) of the sequences' images."""
    stride: int = 5
    """Process every ``stride``-th frame from the onset frame (AGILE: 5)."""
    hand_iters: int = 200
    """Step 1 iteration cap (supplementary §6)."""
    object_iters: int = 400
    """Step 2 iteration cap (supplementary §6)."""
    iof_iters: int = 300
    """Iteration cap of each of the two onset-frame stages."""
    window: int = 10
    """Moving-average window of the early stop."""
    num_dino_points: int = 128
    """N_p, visible surface points per iteration for L_dino."""
    pool_points: int = 2048
    """Surface samples per object that the visible points are drawn from."""
    hand_fit: bool = True
    """Refine the detector's hand articulation, wrist rotation, scale and translations against
    the keypoints and hand depth before tracking (:func:`hoijax.tracking.fit_hand`; beyond
    AGILE, which keeps them: False)."""
    hand_depth_points: int = 256
    """Hand depth points per frame for the hand-depth term (fixed draws from the hand mask)."""
    pairs_per_face: int = 16
    """Rasterizer pair capacity per face (see :class:`hoijax.render.RasterSettings`)."""
    record_trace: bool = True
    """Keep per-iteration loss values (for loss curves)."""
    progress: bool = False
    """Report every processed frame to the host (``jax.debug.callback``) as it finishes, for
    progress bars (:func:`hoijax.tracking.progress_to`). Costs one host callback per frame."""

    @property
    def raster(self) -> render.RasterSettings:
        return render.RasterSettings(*self.image_size, pairs_per_face=self.pairs_per_face)


class TrackHyper(eqx.Module):
    """Traced numbers of the tracker: an ablation grid vmaps over these without recompiling.

    Turning a term off is setting its weight to 0 (its gradient is then exactly zero)."""

    weights: losses.LossWeights = eqx.field(default_factory=losses.LossWeights)
    """λ of every term."""
    lr_hand_t: Float[Array, ""] = eqx.field(default=1e-3, converter=jnp.asarray)
    """Adam step for the hand translation, metres (supplementary §6)."""
    lr_obj_rot: Float[Array, ""] = eqx.field(default=2e-3, converter=jnp.asarray)
    """Adam step for the object rotation, radians (supplementary §6)."""
    lr_obj_t: Float[Array, ""] = eqx.field(default=1e-3, converter=jnp.asarray)
    """Adam step for the object translation, metres (supplementary §6)."""
    lr_obj_log_scale: Float[Array, ""] = eqx.field(default=2e-3, converter=jnp.asarray)
    """Adam step for the log object scale at the onset frame."""
    tol: Float[Array, ""] = eqx.field(default=2e-5, converter=jnp.asarray)
    """Early stop: the moving average of the largest coordinate change per step (metres or
    radians) falls below this. AGILE's 1e-4 stopped our steps after ~100 iterations with
    millimetres still to go in depth; 2e-5 runs them to convergence."""
    sigma_px2: Float[Array, ""] = eqx.field(default=0.05, converter=jnp.asarray)
    """Soft-silhouette σ, px². Small on purpose: the soft silhouette ``1 - Π(1 - p)`` over a
    tessellated, double-sided mesh is inflated where several faces' blurred edges overlap, which
    moves L_mask's minimum behind the truth (σ = 1 px²: 6.5 cm on a 96² box; 0.05 px²: a few
    mm)."""
    gate_sigma_per_m: Float[Array, ""] = eqx.field(default=40.0, converter=jnp.asarray)
    """σ of the SDF gate (Eq. 6)."""

    @classmethod
    def ablate(cls, term: str, **kwargs) -> TrackHyper:
        """The defaults with one loss term's weight set to 0 ("w/o L_term")."""
        h = cls(**kwargs)
        return eqx.tree_at(lambda x: getattr(x.weights, term), h, jnp.zeros(()))


MAX_LOG_SCALE_REFINE = 0.2
"""Bound on the anchor-frame scale refinement, in log units per axis (±22 %)."""


def pose_matrix(R: Float[Array, "3 3"], t: Float[Array, "3"]) -> Float[Array, "4 4"]:
    """4×4 ``T_cam_obj`` from a rotation and a translation."""
    T = jnp.eye(4, dtype=R.dtype)
    return T.at[:3, :3].set(R).at[:3, 3].set(t)


def _rotate(R0: Float[Array, "3 3"], omega: Float[Array, "3"]) -> Float[Array, "3 3"]:
    return R0 @ jaxlie.SO3.exp(omega).as_matrix()


def combine(terms: dict[str, Array], weights: losses.LossWeights):
    """Weighted sum and the raw terms (the logged values of the optimizer trace)."""
    total, log = losses.combine_losses(terms, weights)
    return total, {k: log[k] for k in terms}


def hand_step(
    keypoints_rel: Float[ArrayLike, "21 3"],
    t_init: Float[ArrayLike, "3"],
    keypoints_px: Float[ArrayLike, "21 2"],
    keypoints_conf: Float[ArrayLike, "21"],
    K: Float[ArrayLike, "3 3"],
    hyper: TrackHyper,
    config: TrackConfig,
    active: Bool[Array, ""] | bool = True,
    depth: HandDepth | None = None,
) -> MinimizeResult:
    """Step 1: refine T_h by L_joint (and the hand's depth points, when ``depth`` is given),
    rotation, pose and scale fixed (``keypoints_rel`` is the scaled, rotated hand's 21
    keypoints at zero translation)."""
    kp = jnp.asarray(keypoints_rel)

    def loss_fn(p):
        terms = {"joint": losses.joint_loss(kp + p["t"], keypoints_px, keypoints_conf, K)[0]}
        if depth is not None:
            terms["hand_depth"] = depth(p["t"])
        return combine(terms, hyper.weights)

    return minimize(loss_fn, {"t": jnp.asarray(t_init)}, {"t": hyper.lr_hand_t},
                    max_iters=config.hand_iters, tol=hyper.tol, window=config.window,
                    record_trace=config.record_trace, active=active)


class HandDepth(eqx.Module):
    """One frame's hand depth points and the hand's surface at zero translation (scaled and
    posed): ``hand_depth(t)`` is the point-to-surface term with the hand at translation ``t``."""

    verts_rel: Float[Array, "778 3"]
    normals_rel: Float[Array, "778 3"]
    points: Float[Array, "P 3"]
    points_valid: Bool[Array, " P"]

    def __call__(self, t: Float[Array, "3"]) -> Float[Array, ""]:
        return losses.point_to_surface_loss(self.points, self.points_valid,
                                            self.verts_rel + t, self.normals_rel)[0]


class ObjectFrame(eqx.Module):
    """What the object stages see of one frame."""

    object_mask: Bool[Array, "H W"]
    hand_mask: Bool[Array, "H W"]
    feature_map: Float[Array, "Hf Wf C"] | None
    verts_hand_cam: Float[Array, "778 3"]
    """The hand (fixed in step 2)."""
    depth_m: Float[Array, "H W"] | None = None
    """Metric depth map (L_depth), or None."""


class ObjectPrev(eqx.Module):
    """The previous processed frame's result (the start and L_interact's reference)."""

    T_cam_obj: Float[Array, "4 4"]
    verts_hand_cam: Float[Array, "778 3"]


def dino_support(frame: ObjectFrame) -> Bool[Array, "H W"]:
    """Pixels where L_dino takes points: the observed object outside the hand, eroded by one
    feature cell, so the four cells a bilinear read touches all lie on the object. At a coarse
    feature map, border reads blend in background and bias the loss towards a shrunken, distant
    object (on a 128² frame at stride 4, L_dino fell by 0.1 moving 10 cm away; interior points
    keep it flat in depth and minimal at the true rotation)."""
    H, W = frame.object_mask.shape
    Hf, Wf = frame.feature_map.shape[:2]
    r = max(int(round(H / Hf)), int(round(W / Wf)))
    free = (frame.object_mask & ~frame.hand_mask).astype(jnp.float32)
    eroded = -jax.lax.reduce_window(-free, -jnp.inf, jax.lax.max, (2 * r + 1, 2 * r + 1),
                                    (1, 1), "SAME")
    return eroded > 0.5


class _ObjectTerms:
    """L_mask and L_dino of one frame at a pose (shared by step 2 and the onset stages)."""

    def __init__(self, mesh: ObjectMesh, K, frame: ObjectFrame, pool, key, hyper: TrackHyper,
                 config: TrackConfig):
        self.mesh, self.K, self.frame, self.pool, self.key = mesh, jnp.asarray(K), frame, pool, key
        self.hyper, self.config = hyper, config
        self.faces = jnp.where(mesh.face_valid[:, None], mesh.faces, 0)
        self.use_dino = frame.feature_map is not None and mesh.vertex_features is not None
        self.exclude = ~dino_support(frame) if self.use_dino else None

    def __call__(self, T, scale) -> dict[str, Array]:
        mesh, frame = self.mesh, self.frame
        verts = losses.obj_to_cam(T, scale, mesh.vertices)
        rendering = render.rasterize(verts, self.faces, self.K, self.config.raster,
                                     sigma_px2=self.hyper.sigma_px2)
        terms = {"mask": losses.mask_loss(rendering, frame.object_mask, frame.hand_mask,
                                          normalize="object")[0]}
        if frame.depth_m is not None:
            terms["depth"] = losses.depth_loss(rendering, frame.depth_m, frame.object_mask,
                                               frame.hand_mask)[0]
        if self.use_dino:
            # Re-drawn at every iteration from this iteration's z-buffer (no extra render; the
            # choice carries no gradient): always points visible at the current pose.
            points = losses.select_visible_points(
                self.key, self.pool, mesh.vertices, self.faces, T, scale, self.K, rendering,
                self.config.num_dino_points, exclude_mask=self.exclude)
            terms["dino"] = losses.dino_loss(
                points, mesh.vertices, self.faces, mesh.vertex_features, T, scale, self.K,
                frame.feature_map, frame.hand_mask, fixed_support=True)[0]
        return terms


def pose_fit_loss(mesh: ObjectMesh, K: Float[ArrayLike, "3 3"], frame: ObjectFrame,
                  T_cam_obj: Float[Array, "4 4"], obj_scale: Float[Array, "3"],
                  hyper: TrackHyper, config: TrackConfig) -> Float[Array, ""]:
    """λ_mask L_mask (+ λ_depth L_depth) of one pose and scale: how well they explain the
    frame's silhouette (and depth), to choose between candidate initializations."""
    faces = jnp.where(mesh.face_valid[:, None], mesh.faces, 0)
    rendering = render.rasterize(losses.obj_to_cam(T_cam_obj, obj_scale, mesh.vertices), faces,
                                 jnp.asarray(K), config.raster, sigma_px2=hyper.sigma_px2)
    terms = {"mask": losses.mask_loss(rendering, frame.object_mask, frame.hand_mask,
                                      normalize="object")[0]}
    if frame.depth_m is not None:
        terms["depth"] = losses.depth_loss(rendering, frame.depth_m, frame.object_mask,
                                           frame.hand_mask)[0]
    return combine(terms, hyper.weights)[0]


def object_step(
    mesh: ObjectMesh,
    grid: sdf.SdfGrid,
    obj_scale: Float[ArrayLike, "3"],
    K: Float[ArrayLike, "3 3"],
    frame: ObjectFrame,
    prev: ObjectPrev,
    pool: losses.SurfacePoints,
    key: Array,
    hyper: TrackHyper,
    config: TrackConfig,
    active: Bool[Array, ""] | bool = True,
) -> tuple[MinimizeResult, Float[Array, "4 4"]]:
    """Step 2: the object's R, T from the previous frame's pose; returns the optimizer result
    and the final ``T_cam_obj``.

    L_dino's N_p points are drawn at every iteration among the pool's points visible at the
    current pose and inside :func:`dino_support`. L_mask renders the object alone and leaves
    out pixels under the observed hand mask, normalized by the object's area."""
    scale = jnp.asarray(obj_scale)
    R0, t0 = prev.T_cam_obj[:3, :3], prev.T_cam_obj[:3, 3]
    object_terms = _ObjectTerms(mesh, K, frame, pool, key, hyper, config)

    def loss_fn(p):
        T = pose_matrix(_rotate(R0, p["w"]), p["t"])
        terms = object_terms(T, scale)
        terms["interact"] = losses.interaction_loss(
            frame.verts_hand_cam, prev.verts_hand_cam, T, prev.T_cam_obj, grid, scale,
            sigma_per_m=hyper.gate_sigma_per_m)[0]
        return combine(terms, hyper.weights)

    params = {"w": jnp.zeros(3, t0.dtype), "t": t0}
    res = minimize(loss_fn, params, {"w": hyper.lr_obj_rot, "t": hyper.lr_obj_t},
                   max_iters=config.object_iters, tol=hyper.tol, window=config.window,
                   record_trace=config.record_trace, active=active)
    return res, pose_matrix(_rotate(R0, res.params["w"]), res.params["t"])


def iof_scale_stage(
    mesh: ObjectMesh,
    grid: sdf.SdfGrid,
    obj_scale: Float[ArrayLike, "3"],
    K: Float[ArrayLike, "3 3"],
    frame: ObjectFrame,
    T_cam_obj: Float[ArrayLike, "4 4"],
    hyper: TrackHyper,
    config: TrackConfig,
) -> tuple[MinimizeResult, Float[Array, "4 4"], Float[Array, "3"]]:
    """Onset frame, stage 1: the anisotropic scale ``s = s_0 · exp(b·tanh(λ/b))`` (b =
    :data:`MAX_LOG_SCALE_REFINE`) and the distance along
    the viewing ray through the object's origin ``t = t_0 · exp(δ)``, rotation fixed, by
    λ_mask L_mask + λ_contact L_contact. Returns the result, the pose and the scale."""
    T0 = jnp.asarray(T_cam_obj)
    s0 = jnp.asarray(obj_scale)
    K = jnp.asarray(K)
    faces = jnp.where(mesh.face_valid[:, None], mesh.faces, 0)

    def unpack(p):
        # The refinement is bounded to ±22 % per axis around the ICP scale: an axis the
        # silhouette does not see (the 4 mm thickness of scissors seen face-on) otherwise grows
        # without limit (a 5× scale error in our runs).
        bound = MAX_LOG_SCALE_REFINE
        return (T0.at[:3, 3].multiply(jnp.exp(p["d"])),
                s0 * jnp.exp(bound * jnp.tanh(p["ls"] / bound)))

    def loss_fn(p):
        T, s = unpack(p)
        rendering = render.rasterize(losses.obj_to_cam(T, s, mesh.vertices), faces, K,
                                     config.raster, sigma_px2=hyper.sigma_px2)
        terms = {
            "mask": losses.mask_loss(rendering, frame.object_mask, frame.hand_mask,
                                     normalize="object")[0],
            "contact": losses.contact_loss(frame.verts_hand_cam, T, grid, s)[0],
        }
        if frame.depth_m is not None:
            terms["depth"] = losses.depth_loss(rendering, frame.depth_m, frame.object_mask,
                                               frame.hand_mask)[0]
        return combine(terms, hyper.weights)

    params = {"ls": jnp.zeros(3, s0.dtype), "d": jnp.zeros((), s0.dtype)}
    res = minimize(loss_fn, params, {"ls": hyper.lr_obj_log_scale, "d": hyper.lr_obj_t},
                   max_iters=config.iof_iters, tol=hyper.tol, window=config.window,
                   record_trace=config.record_trace)
    T, s = unpack(res.params)
    return res, T, s


def iof_joint_stage(
    mesh: ObjectMesh,
    grid: sdf.SdfGrid,
    obj_scale: Float[ArrayLike, "3"],
    K: Float[ArrayLike, "3 3"],
    frame: ObjectFrame,
    T_cam_obj: Float[ArrayLike, "4 4"],
    hand_keypoints_rel: Float[ArrayLike, "21 3"],
    hand_verts_rel: Float[ArrayLike, "778 3"],
    hand_t: Float[ArrayLike, "3"],
    keypoints_px: Float[ArrayLike, "21 2"],
    keypoints_conf: Float[ArrayLike, "21"],
    pool: losses.SurfacePoints,
    key: Array,
    hyper: TrackHyper,
    config: TrackConfig,
    hand_depth: HandDepth | None = None,
) -> tuple[MinimizeResult, Float[Array, "4 4"], Float[Array, "3"]]:
    """Onset frame, stage 2: hand translation and object pose together by
    λ_joint L_joint + λ_mask L_mask + λ_dino L_dino + λ_contact L_contact (scale fixed), plus
    the depth terms where given. ``frame.verts_hand_cam`` is ignored; the hand is
    ``hand_verts_rel + T_h``. Returns the result, the object pose and the hand translation."""
    T0 = jnp.asarray(T_cam_obj)
    R0 = T0[:3, :3]
    scale = jnp.asarray(obj_scale)
    object_terms = _ObjectTerms(mesh, K, frame, pool, key, hyper, config)
    kp_rel, v_rel = jnp.asarray(hand_keypoints_rel), jnp.asarray(hand_verts_rel)

    def loss_fn(p):
        T = pose_matrix(_rotate(R0, p["w"]), p["t"])
        terms = object_terms(T, scale)
        terms["joint"] = losses.joint_loss(kp_rel + p["th"], keypoints_px, keypoints_conf, K)[0]
        terms["contact"] = losses.contact_loss(v_rel + p["th"], T, grid, scale)[0]
        if hand_depth is not None:
            terms["hand_depth"] = hand_depth(p["th"])
        return combine(terms, hyper.weights)

    params = {"w": jnp.zeros(3, T0.dtype), "t": T0[:3, 3], "th": jnp.asarray(hand_t)}
    res = minimize(loss_fn, params,
                   {"w": hyper.lr_obj_rot, "t": hyper.lr_obj_t, "th": hyper.lr_hand_t},
                   max_iters=config.iof_iters, tol=hyper.tol, window=config.window,
                   record_trace=config.record_trace)
    return res, pose_matrix(_rotate(R0, res.params["w"]), res.params["t"]), res.params["th"]
