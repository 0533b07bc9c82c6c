"""Joint reprojection loss (AGILE Eq. 2)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from hoijax.geometry import project
from hoijax.losses._frames import safe_mean


def valid_detections(keypoints_px, keypoints_conf):
    """``(keypoints, confidences, valid)`` with invalid detections (non-finite or non-positive
    confidence, non-finite coordinates) zeroed before any arithmetic."""
    kp = jnp.asarray(keypoints_px)
    conf = jnp.asarray(keypoints_conf)
    valid = jnp.isfinite(conf) & (conf > 0) & jnp.all(jnp.isfinite(kp), axis=-1)
    return jnp.where(valid[:, None], kp, 0.0), jnp.where(valid, conf, 0.0), valid


def joint_loss(
    joints_cam: Float[ArrayLike, "J 3"],
    keypoints_px: Float[ArrayLike, "J 2"],
    keypoints_conf: Float[ArrayLike, " J"],
    K: Float[ArrayLike, "3 3"],
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Confidence-weighted mean squared reprojection error, px² (AGILE Eq. 2).

    ``L = Σ_i c_i ||Π(J_i) - j_i||² / Σ_i c_i`` over valid detections; with all confidences 1
    this is Eq. 2's ``1/N_j Σ ||Π(J_i) - j_i||²``. A detection is valid when its confidence is
    finite and positive and its coordinates are finite; invalid ones (e.g. NaN for "missing")
    are replaced before any arithmetic, so they give neither NaN values nor NaN gradients. No
    valid detection gives 0.

    Returns the loss and ``{"joint_px2": loss, "num_valid": count}``.
    """
    kp, conf, valid = valid_detections(keypoints_px, keypoints_conf)
    uv = project(K, joints_cam)
    err2 = jnp.sum((uv - kp) ** 2, axis=-1)
    loss = safe_mean(jnp.where(valid, err2, 0.0), conf)
    return loss, {"joint_px2": loss, "num_valid": jnp.sum(valid)}
