"""A small PointNet: the 3D feature encoder φ of EgoHandICL's perceptual loss (Eq. L_3D).

The paper uses Uni3D-ti (a pretrained point-cloud transformer) as φ. hoijax ships no weights, so
the default φ is this PointNet with **frozen random weights** (seeded): a fixed random
nonlinear feature map of the normalized cloud. Random-feature losses of this kind still compare
global shape (a random ReLU network's max-pooled features are a kernel embedding of the point
set), which is what the term is for; they carry no learned prior about hands. To use a
pretrained encoder, pass its parameters (the same tree as :func:`init_pointnet` returns, e.g.
restored with orbax) wherever ``pointnet_params`` is taken; the weights are never trained by
EgoHandICL's optimizer.

Clouds are normalized the way Uni3D's pipeline does (centred on the centroid, scaled to unit
maximum radius), so the term sees shape and articulation, not position or size. The division is
guarded: a degenerate cloud (all points equal) maps to zeros with finite gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from hoijax.geometry import safe_norm

DEFAULT_POINTNET_FEATURES = (32, 64, 128)
"""Widths of the shared per-point MLP; the last one is the global feature size."""


class PointNet(nn.Module):
    """Shared per-point MLP (Dense + ReLU per layer, none after the last) and a max-pool.

    Input one cloud ``(P, 3)``; output its global feature ``(features[-1],)``. Parameter tree:
    ``Dense_{i}`` {kernel (in, out), bias (out,)}."""

    features: Sequence[int] = DEFAULT_POINTNET_FEATURES

    @nn.compact
    def __call__(self, points: Float[Array, "P 3"]) -> Float[Array, " C"]:
        x = points
        for i, width in enumerate(self.features):
            x = nn.Dense(width, name=f"Dense_{i}")(x)
            if i + 1 < len(self.features):
                x = jax.nn.relu(x)
        return jnp.max(x, axis=0)


def init_pointnet(
    key: Array | None = None, features: Sequence[int] = DEFAULT_POINTNET_FEATURES
) -> dict:
    """Random PointNet parameters (the default frozen φ uses ``jax.random.key(0)``)."""
    key = jax.random.key(0) if key is None else key
    return PointNet(tuple(features)).init(key, jnp.zeros((1, 3), jnp.float32))["params"]


def normalize_cloud(points: Float[ArrayLike, "P 3"]) -> Float[Array, "P 3"]:
    """Centre on the centroid and scale to unit maximum radius (zeros for a degenerate cloud)."""
    p = jnp.asarray(points)
    centred = p - jnp.mean(p, axis=0)
    radius = jnp.max(safe_norm(centred))
    ok = radius > 1e-9
    return jnp.where(ok, centred / jnp.where(ok, radius, 1.0), 0.0)


def pointnet_features(
    params: dict, points: Float[ArrayLike, "P 3"],
    features: Sequence[int] = DEFAULT_POINTNET_FEATURES,
) -> Float[Array, " C"]:
    """φ(normalize(points)): the global PointNet feature of one cloud."""
    return PointNet(tuple(features)).apply({"params": params}, normalize_cloud(points))


def perceptual_3d_loss(
    params: dict,
    points_pred: Float[ArrayLike, "P 3"],
    points_gt: Float[ArrayLike, "P 3"],
    features: Sequence[int] = DEFAULT_POINTNET_FEATURES,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """EgoHandICL's ``L_3D = ‖φ(P) − φ(P_gt)‖²``, averaged over feature channels.

    φ's parameters get no gradient (frozen encoder). Returns the loss and
    ``{"perceptual_3d": loss}``."""
    params = jax.lax.stop_gradient(params)
    f_pred = pointnet_features(params, points_pred, features)
    f_gt = pointnet_features(params, jax.lax.stop_gradient(jnp.asarray(points_gt)), features)
    loss = jnp.mean((f_pred - f_gt) ** 2)
    return loss, {"perceptual_3d": loss}
