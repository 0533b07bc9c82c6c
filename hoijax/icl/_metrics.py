"""Joint metrics of the EgoExo4D hand benchmark, beside the ARCTIC-style mesh metrics.

EgoExo4D annotates 21 3D joints per hand (no MANO), some of them missing, so its metrics work on
the annotated joints of a hand (``valid``) only. One hand, joints in metres, OpenPose order
(joint 0 the wrist); ``vmap`` over hands.

- :func:`egoexo_mpjpe_mm`: MPJPE as the EgoExo4D hand-pose evaluation computes it
  (``handpose/evaluation/evaluate.py`` of ``EGO4D/ego-exo4d-egopose``): the mean Euclidean error
  over the annotated joints, in the camera frame. With ``wrist_aligned`` (default) the prediction
  is taken relative to its own wrist and placed at the ground-truth wrist, which is the
  evaluation's ``--offset`` mode for wrist-relative predictions and the setting in which
  EgoHandICL's Table 2 numbers (≈ 21 mm) are reported; ``wrist_aligned=False`` is the
  camera-frame error.
- :func:`joints_pa_mpjpe_mm`: P-MPJPE over the annotated joints (similarity alignment fitted on
  those joints only).
- :func:`joint_fscores`: F@10 / F@15 of the joints: after the same Procrustes alignment, the
  F-score (harmonic mean of precision and recall, FreiHAND's definition) of the annotated
  predicted joints against the annotated ground-truth joints as two point sets, at 10 and
  15 mm.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from hoijax.geometry import procrustes_align
from hoijax.metrics import compare_clouds

JOINT_FSCORE_THRESHOLDS_M = (0.010, 0.015)
"""F@10 and F@15 (EgoHandICL's EgoExo4D table), metres."""


def _valid(valid, n):
    return jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)


def _masked_mean(x, valid):
    w = valid.astype(x.dtype)
    return jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1.0)


def egoexo_mpjpe_mm(
    joints_pred: Float[ArrayLike, "21 3"],
    joints_gt: Float[ArrayLike, "21 3"],
    valid: Bool[ArrayLike, " 21"] | None = None,
    *,
    wrist_aligned: bool = True,
) -> Float[Array, ""]:
    """EgoExo4D MPJPE of one hand, mm: mean joint error over the annotated joints (see the
    module docstring for ``wrist_aligned``). 0 when no joint is annotated."""
    p, g = jnp.asarray(joints_pred), jnp.asarray(joints_gt)
    v = _valid(valid, p.shape[0])
    if wrist_aligned:
        p = p - p[0] + g[0]
    return _masked_mean(jnp.linalg.norm(p - g, axis=-1), v) * 1000.0


def joints_pa_mpjpe_mm(
    joints_pred: Float[ArrayLike, "21 3"],
    joints_gt: Float[ArrayLike, "21 3"],
    valid: Bool[ArrayLike, " 21"] | None = None,
) -> Float[Array, ""]:
    """P-MPJPE over the annotated joints (alignment fitted on them), mm."""
    p, g = jnp.asarray(joints_pred), jnp.asarray(joints_gt)
    v = _valid(valid, p.shape[0])
    aligned = procrustes_align(p, g, v.astype(p.dtype))
    return _masked_mean(jnp.linalg.norm(aligned - g, axis=-1), v) * 1000.0


def joint_fscores(
    joints_pred: Float[ArrayLike, "21 3"],
    joints_gt: Float[ArrayLike, "21 3"],
    valid: Bool[ArrayLike, " 21"] | None = None,
    thresholds_m: Float[ArrayLike, " T"] = JOINT_FSCORE_THRESHOLDS_M,
    *,
    align: bool = True,
) -> Float[Array, " T"]:
    """Joint F-scores at ``thresholds_m`` (F@10, F@15 by default) over the annotated joints,
    after Procrustes alignment on them (``align=False``: as given)."""
    p, g = jnp.asarray(joints_pred), jnp.asarray(joints_gt)
    v = _valid(valid, p.shape[0])
    if align:
        p = procrustes_align(p, g, v.astype(p.dtype))
    return compare_clouds(p, g, jnp.asarray(thresholds_m, p.dtype), v, v).fscore
