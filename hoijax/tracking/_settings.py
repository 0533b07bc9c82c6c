"""The tracker's one settings tree: static :class:`TrackConfig`, traced :class:`TrackHyper`.

Static settings fix shapes or loop bounds (iteration caps, stride, sample counts, the
rasterizer's pair capacity, the pose search's candidate counts), so changing one recompiles.
Every number that does not (loss weights, step sizes, tolerances, the hand fit's priors) is a
traced leaf of :class:`TrackHyper`, nested by stage, so an ablation grid stacks hypers and
``vmap``s over them in one compiled program. The command line derives its flags from these
classes (``hoijax.cli``), the experiments and the ablation grids build them directly.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from hoijax import losses, render


def _scalar(x) -> Array:
    return jnp.asarray(x, jnp.result_type(float))


@dataclasses.dataclass(frozen=True)
class HandFitConfig:
    """Static settings of the hand refinement (:func:`hoijax.tracking.fit_hand`)."""

    enabled: bool = True
    """Refine the detector's articulation, wrist rotation, scale and translations against the
    keypoints and hand depth before tracking (beyond AGILE, which keeps them: False)."""
    keypoint_iters: int = 100
    """Cap of the first stage: keypoints only, the scale held."""
    align_iters: int = 100
    """Cap of the second stage: depth, the articulation and rotation held."""
    iters: int = 200
    """Cap of the third stage: everything."""
    fine_iters: int = 100
    """Cap of the last stage: everything, smaller steps."""
    num_points: int = 128
    """Hand depth points per frame (drawn once)."""
    fit_betas: bool = True
    """Also fit a per-sequence shape delta on the detector's shape coefficients, with the
    articulation (held in the depth-alignment stage, like it), against the prior
    HandFitHyper.betas_sigma; the result stores it (TrackResult.hand_betas). The default since
    2026-12-08 (False keeps the detector's, as before): on benchmark v2 the fit alone reaches a
    lower root-relative MPJPE with it (README, Benchmark v2)."""
    solver: Literal["adam", "lm"] = "lm"
    """adam: first order, in the four stages above with their caps. lm (the default): the first
    two stages (keypoints, depth alignment) with Adam, then Levenberg-Marquardt on the same
    objective with everything free, instead of the last two; the per-frame Jacobian blocks come
    from graph colouring (34 tangent columns per evaluation whatever the length: 16
    per-sequence unknowns, one fewer without depth, where the scale is held, and 18 per frame;
    10 more for the shape coefficients with fit_betas). Its Gauss-Newton matrix is dense over
    all frames, so its memory grows as N squared and its solve as N cubed: fine for tens of
    frames, not for thousands."""
    lm_iters: int = 40
    """Cap of the LM evaluations (solver lm)."""


@dataclasses.dataclass(frozen=True)
class TrackConfig:
    """Static settings of the tracker: they fix shapes or loop bounds, so changing one
    recompiles. The image size is not one of them: it is the masks' (static) shape."""

    stride: int = 5
    """Process every stride-th frame from the anchor frame (AGILE: 5)."""
    process_ends: bool = True
    """Also process the first and the last valid frame when the stride skips them, so every
    other frame is interpolated between two processed ones, none extrapolated (AGILE: not
    said)."""
    motion_prediction: float = 0.0
    """Start each frame's object pose from the previous processed frames' motion, extrapolated
    at constant velocity (rotation about the object's origin, translation linear) and scaled by
    this factor: 0 starts from the previous pose (AGILE), 1 from the full extrapolation. The
    history restarts at the anchor frame for the backward pass."""
    max_step_motion: float = 0.0
    """Shorten the schedule's steps where the motion would outrun the stride: from each
    processed frame the tracker goes to the farthest frame within the stride to which the hand
    moved at most this fraction of the object's diameter (the mean displacement of its 21
    keypoints in the camera frame, after the hand stage), at least one frame on
    (tracking.adaptive_schedule). 0: the fixed stride (AGILE). With slow motion everywhere
    the two schedules are the same. Needs process_ends."""
    hidden_fraction: float = 0.05
    """A processed frame whose visible object mask has fewer pixels than this fraction of the
    sequence's largest is not fitted (step 2 does not run; TrackResult.hidden): where the hand
    holds it (carry_contact_m) the object moves with the hand's palm since the previous
    processed frame (a held object stays fixed in the hand), elsewhere it stays where it was.
    A hidden anchor frame skips its stages and keeps the starting pose and scale. Without it
    the mask term of an empty or nearly empty mask pulls the object out of view. 0: every
    frame fitted (AGILE)."""
    carry_contact_m: float = 0.02
    """Which hidden frames (hidden_fraction) move with the palm: the frames after the
    anchor, and those before it from the first frame of the unbroken run, up to the anchor, in
    which the hand comes within this distance of the object at the anchor's pose (the object's
    SDF; before the grasp the object rests there and the hand approaches it). The object
    stays where it was in the others. Where the hand does not touch the object at the anchor,
    or with 0, the onset frame decides (frames after it are carried): Eq. 8 on benchmark v2
    comes too early, and carried frames of the resting phase with the palm. Default: the gap
    at which L_contact starts closing it (the upper end of losses.DEFAULT_CONTACT_BAND_M)."""
    interact_in_hand: bool = True
    """L_interact only in the frames where the hand holds the object (from
    TrackResult.carry_from on, the rule that moves hidden objects with the palm), none in the
    resting frames before it. Its gates come from the previous processed frame (AGILE Eq. 6),
    so on the backward pass the contact at the anchor gated the approach frames and the
    resting object was dragged after the retreating hand (a dev sequence: 89 mm off at frame
    1, λ L_interact 6.6 against λ L_mask 4.5 there). False: every processed frame (AGILE)."""
    hand_iters: int = 200
    """Step 1 iteration cap (supplementary §6)."""
    object_iters: int = 400
    """Step 2 iteration cap (supplementary §6)."""
    iof_iters: int = 300
    """Iteration cap of each anchor-frame stage."""
    window: int = 10
    """Moving-average window of the early stop."""
    solver: Literal["adam", "lm"] = "adam"
    """The per-frame and anchor-frame solver: adam (AGILE's: first order, the caps above) or lm
    (Levenberg-Marquardt on the terms' residual forms, tracking.minimize_lm: the caps below;
    faster, not yet as accurate)."""
    lm_iters: int = 30
    """Levenberg–Marquardt evaluation cap of steps 1 and 2."""
    lm_anchor_iters: int = 60
    """Levenberg–Marquardt evaluation cap of each anchor-frame stage."""
    lm_coarse_sigma_px2: tuple[float, ...] | None = None
    """Levenberg–Marquardt on a stage that renders the object first minimizes with these
    silhouette blurs σ² (px², wide to sharp), then at TrackHyper.sigma_px2: a coarse-to-
    fine continuation in one loop (tracking.minimize_lm's levels). None: off."""
    lm_mask_levels: tuple[float, ...] | None = None
    """Levenberg–Marquardt on a stage that renders the object first minimizes with L_mask's
    weight scaled by these factors (each in [0, 1); (0,): without L_mask), then with the full
    weight: a continuation in the same loop, before any blur level. The near-hard
    silhouette's Gauss–Newton model holds within about a pixel, and from a start
    centimetres off LM settled in a local minimum of L_mask; the smoother terms (L_depth,
    L_dino, L_interact) bring the pose close first. None: off."""
    lm_level_iters: int = 10
    """Evaluation cap of each earlier level (lm_mask_levels, lm_coarse_sigma_px2)."""
    num_dino_points: int = 128
    """N_p, visible surface points per iteration for L_dino."""
    dino_support: Literal["strict", "adaptive"] = "strict"
    """Where L_dino may take points: strict, the object eroded by one feature cell (unbiased,
    but none at all for a small object at DINO's native resolution); adaptive, half a cell or
    the bare object when the strict rule leaves less than two cells' worth."""
    depth_occluders: bool = True
    """L_mask leaves out, besides the observed hand mask, the pixels off the object mask whose
    observed depth lies in front of the rendered object (losses.depth_occluders): an occluder
    that is not the hand then no longer reads as background (beyond AGILE, whose L_mask knows
    only the hand: False; needs depth)."""
    occluder_margin_m: float = 0.03
    """How far in front of the object's nearest rendered point such a pixel must be, metres."""
    pool_points: int = 2048
    """Surface samples per object that the visible points are drawn from."""
    hand_fit: HandFitConfig = HandFitConfig()
    """The hand refinement before tracking."""
    hand_depth_points: int = 256
    """Hand depth points per frame for the hand-depth term (fixed draws from the hand mask)."""
    pairs_per_face: int = 16
    """Rasterizer pair capacity per face (see hoijax.render.RasterSettings); the
    driver doubles it for a sequence that overflows."""
    search_directions: int = 24
    """Pose search without a given pose: directions of the object's axis (Fibonacci sphere)."""
    search_inplane: int = 8
    """Pose search: in-plane turns per direction."""
    search_downsample: int = 4
    """Pose search: image downsampling of the silhouette comparison."""
    record_trace: bool = True
    """Keep per-iteration loss values (for loss curves)."""
    batching: Literal["vmap", "map"] = "vmap"
    """How the sequences (and settings) of one program run: vmap, vectorised (fastest on a
    GPU), where XLA's batched arithmetic rounds differently from the unbatched one and the
    optimizer's hundreds of steps amplify it, so a sequence's poses move by up to about 1e-2
    with the batch it is in; or map, one after another in a loop, each sequence padded to a
    bucket of its own (tracking.padding_bucket): a sequence then gives the same result, bit
    for bit, alone or in any batch."""

    def __post_init__(self):
        if self.solver not in ("adam", "lm"):
            raise ValueError(f"TrackConfig.solver must be 'adam' or 'lm', got {self.solver!r}")
        if self.batching not in ("vmap", "map"):
            raise ValueError("TrackConfig.batching must be 'vmap' or 'map', got "
                             f"{self.batching!r}")
        levels = len(self.lm_coarse_sigma_px2 or ()) + len(self.lm_mask_levels or ())
        if any(not v > 0 for v in self.lm_coarse_sigma_px2 or ()):
            raise ValueError("TrackConfig.lm_coarse_sigma_px2 must be positive blurs (px²), got "
                             f"{self.lm_coarse_sigma_px2!r}")
        if any(not 0 <= v < 1 for v in self.lm_mask_levels or ()):
            raise ValueError("TrackConfig.lm_mask_levels must be L_mask weight factors in "
                             f"[0, 1), got {self.lm_mask_levels!r}")
        if levels and levels * (self.lm_level_iters + 1) >= min(self.lm_iters,
                                                                 self.lm_anchor_iters):
            raise ValueError(
                f"TrackConfig: {levels} earlier levels (blur and mask) of lm_level_iters="
                f"{self.lm_level_iters} leave no evaluations of lm_iters={self.lm_iters} / "
                f"lm_anchor_iters={self.lm_anchor_iters} for the problem itself")
        if not self.max_step_motion >= 0.0:
            raise ValueError("TrackConfig.max_step_motion must be ≥ 0 (0: the fixed stride), "
                             f"got {self.max_step_motion!r}")
        if self.max_step_motion > 0 and not self.process_ends:
            raise ValueError("TrackConfig.max_step_motion needs process_ends (the adaptive "
                             "schedule always processes the first and last frames)")
        if not 0.0 <= self.hidden_fraction < 1.0:
            raise ValueError("TrackConfig.hidden_fraction must be in [0, 1), got "
                             f"{self.hidden_fraction!r}")
        if not self.carry_contact_m >= 0.0:
            raise ValueError("TrackConfig.carry_contact_m must be >= 0, got "
                             f"{self.carry_contact_m!r}")
        if not 0.0 <= self.motion_prediction <= 2.0:
            raise ValueError("TrackConfig.motion_prediction must be in [0, 2], got "
                             f"{self.motion_prediction!r}")

    def raster(self, image_size: tuple[int, int]) -> render.RasterSettings:
        """Rasterizer settings of full-resolution frames of ``image_size`` (H, W)."""
        return render.RasterSettings(*image_size, pairs_per_face=self.pairs_per_face)

    def doubled(self) -> TrackConfig:
        """The same settings with twice the rasterizer's pair capacity."""
        return dataclasses.replace(self, pairs_per_face=2 * self.pairs_per_face)


class HandFitHyper(eqx.Module):
    """Traced numbers of :func:`hoijax.tracking.fit_hand` (a grid of them vmaps without
    recompiling)."""

    keypoint_sigma_px: Float[Array, ""] = eqx.field(default=2.0, converter=_scalar)
    """Noise of a keypoint with confidence 1, px (confidence multiplies its cost)."""
    keypoint_huber_px: Float[Array, ""] = eqx.field(default=8.0, converter=_scalar)
    """Reprojection error beyond which the keypoint cost grows linearly, px."""
    depth_sigma_m: Float[Array, ""] = eqx.field(default=0.003, converter=_scalar)
    """Noise of a depth point's distance to the surface, metres (sensor plus shape error)."""
    depth_huber_m: Float[Array, ""] = eqx.field(default=0.01, converter=_scalar)
    """Distance beyond which the depth cost grows linearly, metres."""
    depth_points_weight: Float[Array, ""] = eqx.field(default=20.0, converter=_scalar)
    """Weight of a frame's mean depth cost, in independent points: neighbouring depth points
    share their errors (shape, pose), so the sample is worth far fewer points than its size.
    Larger values (50–200) fit some sequences better and pull others into a wrong wrist
    rotation to make up for the kept shape error."""
    point_to_point: Float[Array, ""] = eqx.field(default=0.05, converter=_scalar)
    """Share of the squared point-to-point distance added to the point-to-plane one (keeps the
    scan from sliding along the surface; small, as vertices are ~9 mm apart)."""
    pca_seq_sigma: Float[Array, ""] = eqx.field(default=0.6, converter=_scalar)
    """Prior σ of the per-sequence articulation delta, PCA units."""
    pca_frame_sigma: Float[Array, ""] = eqx.field(default=0.25, converter=_scalar)
    """Prior σ of the per-frame articulation deltas, PCA units."""
    rot_seq_sigma_rad: Float[Array, ""] = eqx.field(default=0.1, converter=_scalar)
    """Prior σ of the per-sequence wrist-rotation delta, radians per axis."""
    rot_frame_sigma_rad: Float[Array, ""] = eqx.field(default=0.04, converter=_scalar)
    """Prior σ of the per-frame wrist-rotation deltas, radians per axis."""
    log_scale_sigma: Float[Array, ""] = eqx.field(default=0.1, converter=_scalar)
    """Prior σ of the log scale change λ."""
    betas_sigma: Float[Array, ""] = eqx.field(default=0.5, converter=_scalar)
    """Prior σ of the per-sequence shape delta (only with ``fit_betas``)."""
    smooth_pose_sigma_rad: Float[Array, ""] = eqx.field(default=0.03, converter=_scalar)
    """σ of the second difference over frames of each refined articulation coordinate,
    radians."""
    smooth_rot_sigma_rad: Float[Array, ""] = eqx.field(default=0.02, converter=_scalar)
    """σ of the second difference of the refined wrist rotation, radians (chordal)."""
    smooth_transl_sigma_m: Float[Array, ""] = eqx.field(default=0.005, converter=_scalar)
    """σ of the second difference of the refined camera-frame translation, metres."""
    lr_pca: Float[Array, ""] = eqx.field(default=0.03, converter=_scalar)
    """Adam step of the articulation deltas, PCA units."""
    lr_rot: Float[Array, ""] = eqx.field(default=0.005, converter=_scalar)
    """Adam step of the rotation deltas, radians."""
    lr_log_scale: Float[Array, ""] = eqx.field(default=0.004, converter=_scalar)
    """Adam step of λ."""
    lr_transl: Float[Array, ""] = eqx.field(default=0.004, converter=_scalar)
    """Adam step of the translations, metres."""
    lr_betas: Float[Array, ""] = eqx.field(default=0.02, converter=_scalar)
    """Adam step of the shape delta (only with ``fit_betas``)."""
    fine_lr_factor: Float[Array, ""] = eqx.field(default=0.2, converter=_scalar)
    """Step sizes of the last stage relative to the others."""
    tol: Float[Array, ""] = eqx.field(default=1e-6, converter=_scalar)
    """Early stop of each stage (moving average of the largest coordinate change per step)."""
    lm_tol: Float[Array, ""] = eqx.field(default=1e-5, converter=_scalar)
    """LM stops a stage when its step's largest coordinate is below this (PCA units, radians,
    metres)."""
    icp_scale_min: Float[Array, ""] = eqx.field(default=0.8, converter=_scalar)
    """Smallest plausible ICP hand scale: below it the refinement starts from 1 instead (the
    MANO model's own size; its depth stage then fits the scale). AGILE's ICP scale alone,
    without the refinement, is never replaced."""
    icp_scale_max: Float[Array, ""] = eqx.field(default=1.25, converter=_scalar)
    """Largest plausible ICP hand scale (see ``icp_scale_min``)."""


class TrackHyper(eqx.Module):
    """Traced numbers of the tracker: an ablation grid vmaps over these without recompiling.

    Turning a term off is setting its weight to 0 (its gradient is then exactly zero):
    :meth:`without`."""

    weights: losses.LossWeights = eqx.field(default_factory=losses.LossWeights)
    """λ of every term."""
    lr_hand_t: Float[Array, ""] = eqx.field(default=1e-3, converter=jnp.asarray)
    """Adam step for the hand translation, metres (supplementary §6)."""
    lr_obj_rot: Float[Array, ""] = eqx.field(default=2e-3, converter=jnp.asarray)
    """Adam step for the object rotation, radians (supplementary §6)."""
    lr_obj_t: Float[Array, ""] = eqx.field(default=1e-3, converter=jnp.asarray)
    """Adam step for the object translation, metres (supplementary §6)."""
    lr_obj_log_scale: Float[Array, ""] = eqx.field(default=2e-3, converter=jnp.asarray)
    """Adam step for the log object scale at the anchor frame."""
    tol: Float[Array, ""] = eqx.field(default=2e-5, converter=jnp.asarray)
    """Early stop: the moving average of the largest coordinate change per step (metres or
    radians) falls below this. AGILE's 1e-4 stopped our steps after ~100 iterations with
    millimetres still to go in depth; 2e-5 runs them to convergence."""
    aniso_scale_prior: Float[Array, ""] = eqx.field(default=50.0, converter=jnp.asarray)
    """Weight ``w`` of a prior on the anchor-frame scale's departure from the mesh's own
    proportions, ``w · Σ_i (log s_i − mean_j log s_j)²`` (0: off, AGILE's, the scale's axes
    move freely within ±22 %). An axis that neither the silhouette nor the depth map sees (the
    object's extent along the viewing ray) otherwise drifts towards the bound. For scale:
    one axis 15 % off the others costs ``0.018 w``, and λ_mask L_mask is 0.5 for a tenth of
    the object's area mismatched."""
    sigma_px2: Float[Array, ""] = eqx.field(default=0.05, converter=jnp.asarray)
    """Soft-silhouette σ, px². Small on purpose: the soft silhouette ``1 - Π(1 - p)`` over a
    tessellated, double-sided mesh is inflated where several faces' blurred edges overlap, which
    moves L_mask's minimum behind the truth (σ = 1 px²: 6.5 cm on a 96² box; 0.05 px²: a few
    mm)."""
    gate_sigma_per_m: Float[Array, ""] = eqx.field(default=40.0, converter=jnp.asarray)
    """σ of the SDF gate (Eq. 6)."""
    hand_fit: HandFitHyper = eqx.field(default_factory=HandFitHyper)
    """The hand refinement's priors and step sizes."""

    def without(self, *terms: str) -> TrackHyper:
        """These settings with the named loss terms' weights at 0 ("w/o L_term"); an entry
        may join terms with "+" (``"depth+hand_depth"``)."""
        names = [t for entry in terms for t in entry.split("+")]
        unknown = sorted(set(names) - set(losses.LossWeights.__dataclass_fields__))
        if unknown:
            raise KeyError(f"no loss term {unknown}; known: "
                           f"{sorted(losses.LossWeights.__dataclass_fields__)}")
        return eqx.tree_at(lambda h: [getattr(h.weights, t) for t in names], self,
                           [jnp.zeros_like(getattr(self.weights, t)) for t in names])

    @classmethod
    def ablate(cls, term: str, **kwargs) -> TrackHyper:
        """The defaults (with ``kwargs``) without one loss term."""
        return cls(**kwargs).without(term)

    @classmethod
    def agile(cls, **kwargs) -> TrackHyper:
        """AGILE's objective: without the metric-depth terms (depth serves only the
        initialization) and without the anisotropic scale prior (unless ``kwargs`` sets it).
        For AGILE's L_mask also set ``TrackConfig.depth_occluders=False``, and for its
        L_interact in every frame ``TrackConfig.interact_in_hand=False``."""
        kwargs.setdefault("aniso_scale_prior", 0.0)
        return cls(**kwargs).without("depth", "hand_depth")


def stack_hypers(hypers: list[TrackHyper]) -> TrackHyper:
    """Stack settings along a new leading axis (a grid for :func:`ablate_batch`)."""
    return jax.tree.map(lambda *x: jnp.stack(x), *hypers)
