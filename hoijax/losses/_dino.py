"""Semantic feature loss (AGILE Eq. 4): surface samples, z-buffer visibility, similarity.

The tracker calls :func:`sample_surface` and :func:`select_visible_points` every k iterations
("periodically, we sample a set of N_p visible points", §3.3) and :func:`dino_loss` every
iteration. Sizes (pool, N_p) are static; everything else is traced.
"""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, Shaped

from hoijax.features import image_to_feature_uv, sample_similarity
from hoijax import geometry
from hoijax.geometry import project
from hoijax.losses._frames import obj_to_cam, safe_mean
from hoijax.render import Rendering

DinoForm = Literal["l1", "paper"]
"""Which form of L_dino :func:`dino_loss` returns (see there)."""
DEFAULT_DEPTH_TOL_M = 5e-3
"""A sample is visible when its depth is within this of the z-buffer's, metres."""


class SurfacePoints(eqx.Module):
    """Points on a mesh as (face, barycentric) pairs, so they follow the mesh's pose."""

    face: Int[Array, " P"]
    """Face index of each point."""
    bary: Float[Array, "P 3"]
    """Barycentric coordinates in that face (non-negative, summing to 1)."""
    valid: Bool[Array, " P"]
    """Points to use (False for padding: fewer visible points than slots)."""

    def positions(self, vertices: Float[ArrayLike, "V 3"], faces: Int[ArrayLike, "F 3"]
                  ) -> Float[Array, "P 3"]:
        """Positions in the frame of ``vertices``."""
        return interpolate_at(self, vertices, faces)


def interpolate_at(points: SurfacePoints, vertex_attrs: Float[ArrayLike, "V C"],
                   faces: Int[ArrayLike, "F 3"]) -> Float[Array, "P C"]:
    """Per-vertex attributes (positions, features) blended with the points' barycentrics."""
    corners = jnp.asarray(vertex_attrs)[jnp.asarray(faces)[points.face]]  # (P, 3, C)
    return jnp.einsum("pk,pkc->pc", points.bary.astype(corners.dtype), corners)


def sample_surface(
    key: PRNGKeyArray,
    vertices: Float[ArrayLike, "V 3"],
    faces: Int[ArrayLike, "F 3"],
    num_points: int,
    face_valid: Bool[ArrayLike, " F"] | None = None,
) -> SurfacePoints:
    """``num_points`` (static) points uniformly distributed over the surface area
    (:func:`hoijax.geometry.sample_surface`), as :class:`SurfacePoints`."""
    face, bary = geometry.sample_surface(key, vertices, faces, num_points, face_valid)
    return SurfacePoints(face=face, bary=bary, valid=jnp.ones((num_points,), bool))


def _pixel_lookup(image: Shaped[Array, "H W"], uv_px: Float[Array, "P 2"]):
    """Nearest-pixel lookup and an in-image flag (pixel centres at integer uv)."""
    H, W = image.shape
    col = jnp.round(uv_px[:, 0])
    row = jnp.round(uv_px[:, 1])
    inside = (col >= 0) & (col <= W - 1) & (row >= 0) & (row <= H - 1)
    r = jnp.clip(row, 0, H - 1).astype(jnp.int32)
    c = jnp.clip(col, 0, W - 1).astype(jnp.int32)
    return image[r, c], inside


def select_visible_points(
    key: PRNGKeyArray,
    pool: SurfacePoints,
    vertices: Float[ArrayLike, "V 3"],
    faces: Int[ArrayLike, "F 3"],
    T_cam_obj: Float[ArrayLike, "4 4"],
    obj_scale: Float[ArrayLike, "3"],
    K: Float[ArrayLike, "3 3"],
    rendering: Rendering,
    num_points: int,
    *,
    object_id: int = 0,
    depth_tol_m: Float[ArrayLike, ""] | float = DEFAULT_DEPTH_TOL_M,
    exclude_mask: Shaped[ArrayLike, "H W"] | None = None,
) -> SurfacePoints:
    """Pick ``num_points`` (static) of the pool's points visible at the current pose, at random.

    A point is visible when its projection falls in the image on a pixel whose z-buffer
    (``rendering.mesh_id``/``depth``, rendered at this pose, possibly with the hand) shows the
    object and its camera depth is within ``depth_tol_m`` of that pixel's depth (so points on
    the far side of the object, or behind the hand, are not). The choice is a top-k over
    random priorities masked by visibility; with fewer visible points than slots the rest are
    marked ``valid=False``. Points whose projection ``exclude_mask`` (image resolution) covers
    are not taken either: pass the observed hand mask to decide the occluded set here, once, for
    :func:`dino_loss` with ``fixed_support=True`` (the tracker also excludes pixels near the
    observed object's border, where bilinear reads of a coarse feature map blend in background). The result carries no gradient (it is
    re-drawn periodically)."""
    vertices = jax.lax.stop_gradient(jnp.asarray(vertices))
    T_cam_obj = jax.lax.stop_gradient(jnp.asarray(T_cam_obj))
    obj_scale = jax.lax.stop_gradient(jnp.asarray(obj_scale))
    p_cam = obj_to_cam(T_cam_obj, obj_scale, pool.positions(vertices, faces))
    uv = project(K, p_cam)
    mesh_at, inside = _pixel_lookup(rendering.mesh_id, uv)
    depth_at, _ = _pixel_lookup(jax.lax.stop_gradient(rendering.depth), uv)
    visible = (pool.valid & inside & (mesh_at == object_id) & (p_cam[:, 2] > 0)
               & (jnp.abs(p_cam[:, 2] - depth_at) <= depth_tol_m))
    if exclude_mask is not None:
        covered, _ = _pixel_lookup(jnp.asarray(exclude_mask), uv)
        visible = visible & ~covered.astype(bool)
    priority = jnp.where(visible, jax.random.uniform(key, visible.shape), -1.0)
    _, idx = jax.lax.top_k(priority, num_points)
    return SurfacePoints(face=pool.face[idx], bary=pool.bary[idx], valid=visible[idx])


def dino_loss(
    points: SurfacePoints,
    vertices: Float[ArrayLike, "V 3"],
    faces: Int[ArrayLike, "F 3"],
    vertex_features: Float[ArrayLike, "V C"],
    T_cam_obj: Float[ArrayLike, "4 4"],
    obj_scale: Float[ArrayLike, "3"],
    K: Float[ArrayLike, "3 3"],
    feature_map: Float[ArrayLike, "Hf Wf C"],
    hand_mask: Shaped[ArrayLike, "H W"],
    *,
    form: DinoForm = "l1",
    fixed_support: bool = False,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Semantic feature loss of the sampled points at the current pose (AGILE Eq. 4).

    Each point's feature ``f_i`` is the per-vertex object feature blended with its
    barycentrics; ``u_i = Π(R (s ⊙ p_i) + T)``; ``S_i(u_i)`` is the cosine similarity of
    ``f_i`` with the target feature map read bilinearly at ``u_i``
    (:func:`hoijax.features.sample_similarity`). ``M_occ(u_i)`` is 0 where the observed
    ``hand_mask`` (image resolution, nearest pixel) covers ``u_i``, else 1; 𝒱 is the set of
    valid points (visible at sampling time) that project inside the feature map.

    ``form`` (static):

    * ``"paper"``: Eq. 4 as printed, ``-(1/|𝒱|) Σ_{i∈𝒱} M_occ(u_i) · S_i(u_i)``, in [-1, 1].
    * ``"l1"`` (default; the supplementary's "L_dino (L1)", weight 10): the L1 distance of each
      unoccluded similarity from its ideal value 1, averaged over the unoccluded points,
      ``Σ_{i∈𝒱} M_occ(1 - S_i) / Σ_{i∈𝒱} M_occ`` in [0, 2] (``|1 - S| = 1 - S`` as ``S ≤ 1``).
      Its per-point gradient is Eq. 4's; only the normalization (occluded points dropped
      rather than counted as zeros) and a constant differ. 0 at perfect correspondence.

    ``fixed_support`` (static): the set 𝒱 and the occlusion weights are those of
    ``points.valid`` alone (decided when the points were drawn, e.g. by
    :func:`select_visible_points` with its ``hand_mask``), not re-decided at every pose.
    Re-deciding them per evaluation, as Eq. 4 reads literally, lets an optimizer lower the mean
    by pushing badly matching points under the hand mask or off the feature map, a real escape
    route: a 128² synthetic frame tracked from 6° and 1 cm off drifted 30 cm away that way. A
    point that leaves the map keeps its border-clamped similarity (zero gradient there).

    ``hand_mask`` is at image resolution; its shape is the image size used to map pixels to
    feature-map cells (:func:`hoijax.features.image_to_feature_uv`), so the feature map may be
    coarser (e.g. one cell per ViT patch). No usable point gives 0 with a zero gradient. Returns the loss and ``{"dino": loss,
    "similarity": mean S over used points, "num_points": count}``.
    """
    feats = interpolate_at(points, vertex_features, faces)
    p_cam = obj_to_cam(jnp.asarray(T_cam_obj), jnp.asarray(obj_scale),
                       points.positions(vertices, faces))
    uv_px = project(K, p_cam)
    fmap = jnp.asarray(feature_map)
    hand_mask = jnp.asarray(hand_mask)
    uv_feat = image_to_feature_uv(uv_px, hand_mask.shape, fmap.shape[:2])
    sim, in_map = sample_similarity(feats, fmap, uv_feat)
    if fixed_support:
        used = points.valid
        occ = jnp.ones_like(sim)
    else:
        covered, _ = _pixel_lookup(hand_mask, jax.lax.stop_gradient(uv_px))
        used = points.valid & in_map & (p_cam[:, 2] > 0)
        occ = jnp.where(covered.astype(bool), 0.0, 1.0).astype(sim.dtype)
    sim = jnp.where(used, sim, 0.0)
    if form == "paper":
        loss = -safe_mean(occ * sim, used.astype(sim.dtype))
    elif form == "l1":
        loss = safe_mean(1.0 - sim, occ * used)
    else:
        raise ValueError(f"form must be 'l1' or 'paper', got {form!r}")
    kept = used & (occ > 0)
    return loss, {"dino": loss, "similarity": safe_mean(sim, kept.astype(sim.dtype)),
                  "num_points": jnp.sum(kept)}
