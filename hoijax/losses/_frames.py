"""Moving points between the camera and the (scaled) object frame with a 4×4 pose."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def obj_to_cam(T_cam_obj: Float[ArrayLike, "4 4"], scale: Float[ArrayLike, "3"],
               points_can: Float[ArrayLike, "*N 3"]) -> Float[Array, "*N 3"]:
    """``R (s ⊙ p) + T``: canonical object points to the camera frame (AGILE Eq. 4)."""
    T_cam_obj, scale, points_can = (jnp.asarray(x) for x in (T_cam_obj, scale, points_can))
    return (points_can * scale) @ T_cam_obj[:3, :3].T + T_cam_obj[:3, 3]


def cam_to_obj(T_cam_obj: Float[ArrayLike, "4 4"], points_cam: Float[ArrayLike, "*N 3"]
               ) -> Float[Array, "*N 3"]:
    """``R^T (p - T)``: camera points to the scaled (metric) object frame (AGILE Eq. 5)."""
    T_cam_obj, points_cam = jnp.asarray(T_cam_obj), jnp.asarray(points_cam)
    return (points_cam - T_cam_obj[:3, 3]) @ T_cam_obj[:3, :3]


def safe_mean(values: Float[Array, "*N"], weights: Float[Array, "*N"]) -> Float[Array, ""]:
    """``Σ w v / Σ w``, 0 (with zero gradient) when the weights sum to 0."""
    total = jnp.sum(weights)
    return jnp.sum(weights * values) / jnp.where(total > 0, total, 1.0)
