"""What a run should say about its inputs and its own losses, beyond the numbers: suspect input
that loads (an object mesh that is not watertight, object masks empty in most frames, collapsed keypoints, no detection in most frames)
and loss terms that were inactive (e.g. L_dino without feature support), so that no degradation
is silent. :func:`sequence_warnings` returns the lines; the driver prints them, puts them in
``summary.json`` (``warnings``, per sequence) and in each ``result.json``."""

from __future__ import annotations

import numpy as np

from hoijax import data, sdf
from hoijax.tracking._track import STEP_TERMS, TrackResult

MOSTLY = 0.5
"""A condition holding on more than this fraction of the valid frames is reported."""

COLLAPSED_PX = 2.0
"""Confident keypoints spread less than this (pixels, largest distance from their mean) count as
collapsed to one point."""


def term_activity(result: TrackResult, interact_in_hand: bool = False) -> dict[str, float]:
    """Per step-2 term (:data:`STEP_TERMS`), the fraction of processed frames where its final
    value was not exactly 0 (a term without support, e.g. L_dino with no feature point or
    L_depth without depth, is exactly 0; L_interact is 0 legitimately where the hand is off the
    object). NaN for a result without a processed frame. ``interact_in_hand``
    (``TrackConfig.interact_in_hand``): L_interact was left out of the objective in the frames
    before ``TrackResult.carry_from``, so it counts as inactive there whatever its value (the
    result logs every term's value, weighted in or not)."""
    processed = np.asarray(result.processed, bool)
    if not processed.any():
        return {t: float("nan") for t in STEP_TERMS}
    active = np.asarray(result.terms)[processed] != 0
    left_out = _interact_left_out(result, interact_in_hand)[processed]
    active[:, STEP_TERMS.index("interact")] &= ~left_out
    return {t: float(np.mean(active[:, i])) for i, t in enumerate(STEP_TERMS)}


def _interact_left_out(result: TrackResult, interact_in_hand: bool) -> np.ndarray:
    """Per frame, whether step 2 left L_interact out (``TrackConfig.interact_in_hand``: the
    frames before ``carry_from``, where the hand does not hold the object)."""
    n = np.asarray(result.processed).shape[0]
    if not interact_in_hand or result.carry_from is None:
        return np.zeros(n, bool)
    return np.arange(n) < int(result.carry_from)


def input_warnings(seq: data.Sequence) -> list[str]:
    """Suspect but loadable inputs of one (unbatched) sequence."""
    valid = np.asarray(seq.valid, bool)
    n = max(int(valid.sum()), 1)
    out = []
    faces = np.asarray(seq.mesh.faces)[np.asarray(seq.mesh.face_valid, bool)]
    open_edges, flipped = sdf.mesh_defects(faces)
    if open_edges or flipped:
        out.append(f"object mesh is not watertight ({open_edges} open or non-manifold edges, "
                   f"{flipped} inconsistently wound): its SDF sign, and so L_interact and "
                   "L_contact, are unreliable near the defects")
    empty = ~np.asarray(seq.object_mask, bool)[valid].any(axis=(1, 2))
    if empty.size and empty.mean() > MOSTLY:
        out.append(f"object mask empty in {int(empty.sum())} of {n} frames")
    conf = np.asarray(seq.keypoints_conf)[valid] > 0
    kp = np.asarray(seq.keypoints_px)[valid]
    undetected = ~conf.any(axis=1)
    if undetected.mean() > MOSTLY:
        out.append(f"no hand keypoint in {int(undetected.sum())} of {n} frames")
    collapsed = []
    for c, k in zip(conf, kp):
        if c.sum() >= 3:
            pts = k[c]
            collapsed.append(np.max(np.linalg.norm(pts - pts.mean(0), axis=-1)) < COLLAPSED_PX)
    if collapsed and np.mean(collapsed) > MOSTLY:
        out.append(f"hand keypoints collapsed to one point (within {COLLAPSED_PX:g} px) in "
                   f"{int(np.sum(collapsed))} of {len(collapsed)} detected frames")
    return out


def term_warnings(seq: data.Sequence, result: TrackResult, dino_weight: float,
                  depth_weight: float, interact_weight: float = 0.0,
                  interact_in_hand: bool = False) -> list[str]:
    """Terms switched on by their weight but inactive in most processed frames, the frames
    whose step 2 left L_interact out (``interact_in_hand``, ``TrackConfig.interact_in_hand``:
    before ``TrackResult.carry_from``), frames in
    which the object was not visible (``TrackResult.hidden``; with where the hand carried it
    from, and whether the onset rule chose that frame for want of contact at the anchor,
    ``TrackResult.carry_by_contact``), and a hand scale that ICP could not give
    (``TrackResult.hand_scale_fallback``)."""
    act = term_activity(result, interact_in_hand)
    out = []
    if dino_weight > 0:
        if seq.features is None or seq.mesh.vertex_features is None:
            out.append("L_dino is off: the sequence has no feature maps or no per-vertex object "
                       "features (hoijax features SEQ_DIR --weights FILE computes them)")
        elif act["dino"] <= MOSTLY:
            out.append(f"L_dino was active in only {100 * act['dino']:.0f} % of the processed "
                       "frames: too few object feature points had support at this feature "
                       "resolution")
    if depth_weight > 0 and seq.depth_m is not None and act["depth"] <= MOSTLY:
        out.append(f"L_depth was active in only {100 * act['depth']:.0f} % of the processed "
                   "frames")
    processed = np.asarray(result.processed, bool)
    fitted = processed & ~(np.zeros_like(processed) if result.hidden is None
                           else np.asarray(result.hidden, bool))
    left_out = fitted & _interact_left_out(result, interact_in_hand)
    if interact_weight > 0 and left_out.any():
        out.append(f"L_interact was left out of {int(left_out.sum())} of {int(fitted.sum())} "
                   f"fitted frames, those before frame {int(result.carry_from)} where the hand "
                   "does not yet hold the object (TrackConfig.interact_in_hand; the result "
                   "still logs its value there)")
    if result.hidden is not None and bool(np.any(np.asarray(result.hidden))):
        hidden = np.flatnonzero(np.asarray(result.hidden))
        k, m = len(hidden), int(np.sum(np.asarray(result.processed)))
        anchor = int(result.anchor)
        how = "moved with the hand"
        if result.carry_from is not None:  # (a hidden anchor is neither: said below)
            steps = hidden[hidden != anchor]
            held = int(np.sum(steps >= int(result.carry_from)))
            how = (f"moved with the hand in {held} (from frame {int(result.carry_from)} on, "
                   f"TrackConfig.carry_contact_m), left where it was in {len(steps) - held}")
            if len(steps) and result.carry_by_contact is not None \
                    and not bool(result.carry_by_contact):
                how += ("; that frame is Eq. 8's onset + 1, not where the hand reached the "
                        f"object: the hand did not touch it at the anchor frame {anchor} (or "
                        "carry_contact_m is 0), so the carry may start too early or too late")
        out.append(f"the object was not visible in {k} of {m} processed frames "
                   f"(TrackConfig.hidden_fraction): not fitted there, {how}")
        if bool(np.asarray(result.hidden)[anchor]):
            out.append(f"the object was not visible in the anchor frame {anchor}: its starting "
                       "pose and scale were kept (no anchor stages)")
    if result.hand_scale_fallback is not None and bool(result.hand_scale_fallback):
        out.append("the ICP hand scale was implausible (outside HandFitHyper.icp_scale_min/max);"
                   " the hand refinement started from scale 1 instead")
    return out
