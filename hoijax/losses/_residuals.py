"""Residual forms of the tracking terms, for the Gauss–Newton / Levenberg–Marquardt solver
(:func:`hoijax.tracking.minimize_lm`).

Each function returns a flat vector ``r`` such that the term's Gauss–Newton matrix at the
current point is ``2 J_rᵀ J_r`` and, where the term is a sum of squares, ``Σ r² = L`` (so
``2 J_rᵀ r = ∇L``). The solver multiplies each by ``√λ`` and takes the gradient itself from
the scalar loss, so a residual form only has to give a good curvature model:

- **L_mask** and **L_joint** are sums of squares: ``r`` is exact (``Σ r² = L``, tested).
- **L_depth** and the hand's depth points (pseudo-Huber ``ρ(e) = √(1+e²) - 1``): iteratively
  reweighted, ``r = √(ω/2N)·e`` with ``ω = ρ'(e)/e = 1/√(1+e²)`` held fixed at the current point
  (no gradient through it), so ``2 J_rᵀ r = ∇L`` there (tested) and a far outlier adds little
  curvature.
- **L_interact** (a gated mean of distances ``‖e_i‖``): reweighted the same way, ``r_i =
  √(w_i/(2N·max(‖e_i‖, ε)))·e_i`` with the weight fixed, so ``2 J_rᵀ r = ∇L`` wherever no
  distance is below ``ε`` (tested).
- **L_dino** (``1 - S`` with ``S = f̂·m(u)``, ``m`` the bilinear blend of the normalized feature
  taps at the projection ``u``): ``r = (f̂ - m(u))/√(2n)``. Then ``Σ r² = L - Σ(1-‖m‖²)/2n``:
  the difference is the blend's shortening between taps, whose curvature is not that of a
  match; ``J_r`` is the Jacobian of the matched feature, the curvature a feature-metric
  alignment uses.

L_contact has no residual form here (a hinge on a soft minimum): it enters the solver through
the exact gradient only, its curvature left to the damping.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Shaped

from hoijax.features import image_to_feature_uv
from hoijax.features._similarity import _bilinear_taps, _normalize
from hoijax.geometry import project, safe_norm
from hoijax.losses._depth import DEFAULT_DEPTH_SCALE_M, depth_errors, point_plane_errors
from hoijax.losses._dino import SurfacePoints, interpolate_at
from hoijax.losses._frames import obj_to_cam
from hoijax.losses._joint import valid_detections
from hoijax.render import Rendering
from hoijax.sdf import DEFAULT_SIGMA_PER_M, SdfGrid
from hoijax.losses._interact import DEFAULT_MAX_DIST_M, gated_motion

IRLS_EPS_M = 1e-4
"""Smallest distance the reweighted L_interact residual divides by, metres."""


def _count(weights: Float[Array, "*N"]) -> Float[Array, ""]:
    total = jnp.sum(weights)
    return jnp.where(total > 0, total, 1.0)


def mask_residuals(
    rendering: Rendering,
    object_mask: Shaped[ArrayLike, "H W"],
    hand_mask: Shaped[ArrayLike, "H W"],
    *,
    object_id: int = 0,
) -> Float[Array, " HW"]:
    """Per-pixel residuals of :func:`~hoijax.losses.mask_loss` (``occlusion="hand_mask"``,
    ``normalize="object"``): ``√((1-M_h)/A)·(α - M_o)``, ``A`` the counted object area."""
    alpha = rendering.silhouette[object_id]
    target = jnp.asarray(object_mask).astype(alpha.dtype)
    weight = 1.0 - jnp.asarray(hand_mask, alpha.dtype)
    area = jnp.maximum(jnp.sum(weight * target), 1.0)
    return (jnp.sqrt(weight / area) * (alpha - target)).reshape(-1)


def joint_residuals(
    joints_cam: Float[ArrayLike, "J 3"],
    keypoints_px: Float[ArrayLike, "J 2"],
    keypoints_conf: Float[ArrayLike, " J"],
    K: Float[ArrayLike, "3 3"],
) -> Float[Array, " J2"]:
    """Residuals of :func:`~hoijax.losses.joint_loss`: ``√(c_i/Σc)·(Π(J_i) - j_i)``, invalid
    detections 0."""
    kp, conf, valid = valid_detections(keypoints_px, keypoints_conf)
    uv = project(K, joints_cam)
    w = jnp.sqrt(conf / _count(conf))
    return (w[:, None] * jnp.where(valid[:, None], uv - kp, 0.0)).reshape(-1)


def _robust(e: Float[Array, " N"], ok: Bool[Array, " N"]) -> Float[Array, " N"]:
    """Reweighted pseudo-Huber residuals over the counted entries (weights held fixed)."""
    omega = jax.lax.stop_gradient(1.0 / jnp.sqrt(1.0 + e * e))
    w = jnp.where(ok, omega, 0.0) / (2.0 * _count(ok.astype(e.dtype)))
    return jnp.sqrt(w) * jnp.where(ok, e, 0.0)


def depth_residuals(
    rendering: Rendering,
    depth_m: Float[ArrayLike, "H W"],
    object_mask: Shaped[ArrayLike, "H W"],
    hand_mask: Shaped[ArrayLike, "H W"] | None = None,
    *,
    object_id: int = 0,
    scale_m: Float[ArrayLike, ""] | float = DEFAULT_DEPTH_SCALE_M,
) -> Float[Array, " HW"]:
    """Reweighted residuals of :func:`~hoijax.losses.depth_loss` over the same pixels."""
    e, ok, _, _ = depth_errors(rendering, depth_m, object_mask, hand_mask, object_id, scale_m)
    return _robust(e.reshape(-1), ok.reshape(-1))


def point_to_surface_residuals(
    points: Float[ArrayLike, "P 3"],
    points_valid: Bool[ArrayLike, " P"],
    verts: Float[ArrayLike, "V 3"],
    normals: Float[ArrayLike, "V 3"],
    *,
    scale_m: Float[ArrayLike, ""] | float = DEFAULT_DEPTH_SCALE_M,
) -> Float[Array, " P"]:
    """Reweighted residuals of :func:`~hoijax.losses.point_to_surface_loss`."""
    return _robust(*point_plane_errors(points, points_valid, verts, normals, scale_m))


def interaction_residuals(
    verts_cam: Float[ArrayLike, "N 3"],
    verts_cam_prev: Float[ArrayLike, "N 3"],
    T_cam_obj: Float[ArrayLike, "4 4"],
    T_cam_obj_prev: Float[ArrayLike, "4 4"],
    grid: SdfGrid,
    obj_scale: Float[ArrayLike, "3"],
    *,
    sigma_per_m: Float[ArrayLike, ""] | float = DEFAULT_SIGMA_PER_M,
    max_dist_m: Float[ArrayLike, ""] | float = DEFAULT_MAX_DIST_M,
) -> Float[Array, " N3"]:
    """Reweighted residuals of :func:`~hoijax.losses.interaction_loss` (its gates, from the
    previous frame, are constants)."""
    gate, e = gated_motion(verts_cam, verts_cam_prev, T_cam_obj, T_cam_obj_prev, grid,
                           obj_scale, sigma_per_m, max_dist_m)
    dist = jax.lax.stop_gradient(jnp.maximum(safe_norm(e), IRLS_EPS_M))
    w = jax.lax.stop_gradient(gate) / (2.0 * e.shape[0] * dist)
    return (jnp.sqrt(w)[:, None] * e).reshape(-1)


def dino_residuals(
    points: SurfacePoints,
    vertices: Float[ArrayLike, "V 3"],
    faces: Int[ArrayLike, "F 3"],
    vertex_features: Float[ArrayLike, "V C"],
    T_cam_obj: Float[ArrayLike, "4 4"],
    obj_scale: Float[ArrayLike, "3"],
    K: Float[ArrayLike, "3 3"],
    feature_map: Float[ArrayLike, "Hf Wf C"],
    hand_mask: Shaped[ArrayLike, "H W"],
) -> Float[Array, " PC"]:
    """Feature-metric residuals of :func:`~hoijax.losses.dino_loss` (``form="l1"``,
    ``fixed_support=True``): ``(f̂_i - m(u_i))/√(2n)`` over the valid points (module doc)."""
    feats = _normalize(interpolate_at(points, vertex_features, faces))
    p_cam = obj_to_cam(jnp.asarray(T_cam_obj), jnp.asarray(obj_scale),
                       points.positions(vertices, faces))
    fmap = jnp.asarray(feature_map)
    uv = image_to_feature_uv(project(K, p_cam), jnp.asarray(hand_mask).shape, fmap.shape[:2])
    rows, cols, w, _ = _bilinear_taps(uv, fmap.shape[0], fmap.shape[1])
    blend = jnp.einsum("nk,nkc->nc", w.astype(fmap.dtype), _normalize(fmap[rows, cols]))
    used = points.valid
    scale = jnp.sqrt(1.0 / (2.0 * _count(used.astype(fmap.dtype))))
    return (scale * jnp.where(used[:, None], feats - blend, 0.0)).reshape(-1)
