"""EgoHandICL's training objective (§3.3): MANO parameters, vertices, 3D perceptual, keypoints.

``L = λm L_mano + λv L_V + λ3D L_3D (+ λkp L_kp)`` with the paper's weights λm = 0.05,
λv = 5.0, λ3D = 0.01:

- ``L_mano = ‖Θ − Θgt‖² + ‖β − βgt‖² + ‖Φ − Φgt‖²`` as in the paper: the **sum** of the squared
  errors of a hand's 61 parameters in their own units (pose and orientation in radians, betas,
  translation in metres: the "camera" Φ), averaged over the present hands;
- ``L_V``: L1 error of the MANO vertices, metres (``hoijax.losses.vertex_loss``), both hands
  posed by hoijax's MANO with ``transl``, so depth errors count;
- ``L_3D``: ``‖φ(P) − φ(P_gt)‖²`` of point clouds of predicted and ground-truth hands
  (:func:`hoijax.icl.perceptual_3d_loss`; a fixed subset of :data:`PERCEPTUAL_NUM_POINTS`
  vertices per hand);
- ``L_kp``: for frames without MANO ground truth (EgoExo4D-like), the L1 error of the 21 3D
  keypoints replaces the three terms above (weight λkp, default 5.0 like λv).

Each term averages over the present hands of the example it applies to (a per-example
``has_mano_gt`` flag selects the supervision); absent hands count nowhere. One example; the
caller vmaps and averages.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from hoijax import losses as hlosses
from hoijax import mano
from hoijax.icl._params import hands_forward
from hoijax.icl._pointnet import DEFAULT_POINTNET_FEATURES, perceptual_3d_loss
from hoijax.losses._frames import safe_mean

PERCEPTUAL_NUM_POINTS = 128
"""Vertices per hand fed to φ (evenly spaced vertex ids; a fixed subset keeps φ cheap)."""


def _perceptual_vertex_ids(num_verts: int) -> np.ndarray:
    return np.linspace(0, num_verts - 1, PERCEPTUAL_NUM_POINTS).round().astype(np.int32)


class IclLossWeights(eqx.Module):
    """Weights of the EgoHandICL loss terms (traced: a grid of settings can be vmapped)."""

    mano: Float[ArrayLike, ""] = 0.05
    """λm, MANO parameter squared error (sum over a hand's 61 entries)."""
    vertex: Float[ArrayLike, ""] = 5.0
    """λv, vertex L1 (metres)."""
    perceptual_3d: Float[ArrayLike, ""] = 0.01
    """λ3D, PointNet feature L2."""
    keypoint: Float[ArrayLike, ""] = 5.0
    """λkp, 3D keypoint L1 (metres) for frames without MANO ground truth."""


def icl_loss(
    pred_params: Float[ArrayLike, "H 61"],
    gt_params: Float[ArrayLike, "H 61"],
    presence: Bool[ArrayLike, " H"],
    models: Sequence[mano.ManoModel],
    pointnet_params: dict,
    weights: IclLossWeights = IclLossWeights(),
    *,
    keypoints_gt: Float[ArrayLike, "H 21 3"] | None = None,
    has_mano_gt: Bool[ArrayLike, ""] = True,
    pointnet_features: Sequence[int] = DEFAULT_POINTNET_FEATURES,
    keypoints_valid: Bool[ArrayLike, "H 21"] | None = None,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """The weighted loss of one example and its terms (``total``, ``mano_params``,
    ``vertex_l1``, ``perceptual_3d``, ``keypoint_l1``, unweighted except ``total``).

    ``gt_params`` are ignored where ``has_mano_gt`` is False and ``keypoints_gt`` (metres,
    OpenPose order, smplx tips) is then required in spirit: when it is ``None`` the keypoints of
    ``gt_params`` are used, which makes ``L_kp`` a MANO-consistent stand-in for tests.
    ``keypoints_valid`` marks the annotated joints (``L_kp`` averages over them only)."""
    pred = jnp.asarray(pred_params, jnp.float32)
    gt = jax.lax.stop_gradient(jnp.asarray(gt_params, jnp.float32))
    presence = jnp.asarray(presence, bool)
    has_gt = jnp.asarray(has_mano_gt, bool)
    mano_mask = presence & has_gt
    kp_mask = presence & ~has_gt

    per_hand_sq = jnp.sum((pred - gt) ** 2, axis=-1)
    l_mano = safe_mean(per_hand_sq, mano_mask.astype(per_hand_sq.dtype))
    verts_pred, kp_pred = hands_forward(models, pred)
    verts_gt, kp_gt_mano = hands_forward(models, gt)
    verts_gt = jax.lax.stop_gradient(verts_gt)
    l_vert, _ = hlosses.vertex_loss(verts_pred, verts_gt, mano_mask)

    ids = _perceptual_vertex_ids(verts_pred.shape[1])
    per_hand_3d = jax.vmap(lambda p, g: perceptual_3d_loss(
        pointnet_params, p, g, pointnet_features)[0])(verts_pred[:, ids], verts_gt[:, ids])
    l_3d = safe_mean(per_hand_3d, mano_mask.astype(per_hand_3d.dtype))

    kp_target = kp_gt_mano if keypoints_gt is None else jnp.asarray(keypoints_gt, jnp.float32)
    kp_valid = (jnp.ones(kp_pred.shape[:2], bool) if keypoints_valid is None
                else jnp.asarray(keypoints_valid, bool))
    per_joint = jnp.mean(jnp.abs(kp_pred - jax.lax.stop_gradient(kp_target)), axis=-1)
    per_hand_kp = jax.vmap(safe_mean)(per_joint, kp_valid.astype(per_joint.dtype))
    l_kp = safe_mean(per_hand_kp, (kp_mask & jnp.any(kp_valid, axis=-1)).astype(
        per_hand_kp.dtype))

    total = (weights.mano * l_mano + weights.vertex * l_vert
             + weights.perceptual_3d * l_3d + weights.keypoint * l_kp)
    return total, {"total": total, "mano_params": l_mano, "vertex_l1": l_vert,
                   "perceptual_3d": l_3d, "keypoint_l1": l_kp}
