"""The tracker's stages and the pytrees they read and write, for recombining them.

Every optimization stage is ``stage(config, hyper, state, inp) -> (state, result)``;
:func:`~hoijax.tracking.track_sequence` composes them as AGILE's pipeline (§3.2–3.3)::

    hand = hand_stage(config, hyper, seq, model, keys)            # init (+ refinement)
    start, anchor, _ = initial_object(config, seq, obj, onset)    # given pose or search
    start, _ = hand_step(config, hyper, start, frame(anchor))     # step 1 at the anchor
    on, _ = anchor_stages(config, hyper, start, anchor_input)     # joint, ICP, scale, joint
    cur, _ = track_frame(config, hyper, prev, frame(f), begin, hidden)  # steps 1 and 2

:func:`frame_objective` is the one objective they all minimize.
"""

from hoijax.tracking._hand_fit import HandFitResult, fit_hand
from hoijax.tracking._init import (
    HandInit,
    HandObs,
    PoseSearchResult,
    candidate_rotations,
    frames_at_rest_before,
    hand_in_mano_frame,
    init_hand,
    init_object_scale,
    sample_mask_points,
    search_object_pose,
)
from hoijax.tracking._objective import dino_support, frame_objective, pose_fit_loss
from hoijax.tracking._stages import (
    MAX_LOG_SCALE_REFINE,
    PALM_KEYPOINTS,
    AnchorInput,
    HiddenObject,
    anchor_icp_scale,
    anchor_joint,
    anchor_scale,
    anchor_stages,
    carried_pose,
    carry_from,
    hand_stage,
    hand_step,
    initial_object,
    object_step,
    pose_matrix,
    track_frame,
)
from hoijax.tracking._state import (
    FrameInput,
    FrameObs,
    Hand,
    HandPose,
    ObjectModel,
    TrackState,
    frame_at,
    observations,
)

__all__ = [
    "MAX_LOG_SCALE_REFINE", "PALM_KEYPOINTS", "AnchorInput", "FrameInput", "HiddenObject",
    "FrameObs", "Hand", "HandFitResult", "HandInit", "HandObs", "HandPose", "ObjectModel",
    "PoseSearchResult", "TrackState", "anchor_icp_scale", "anchor_joint", "anchor_scale",
    "anchor_stages", "candidate_rotations", "carried_pose", "carry_from", "dino_support",
    "fit_hand", "frame_at", "frame_objective", "frames_at_rest_before", "hand_in_mano_frame",
    "hand_stage", "hand_step", "init_hand", "init_object_scale", "initial_object",
    "object_step", "observations", "pose_fit_loss", "pose_matrix", "sample_mask_points",
    "search_object_pose", "track_frame",
]
