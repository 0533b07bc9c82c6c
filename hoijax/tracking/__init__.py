"""Batched contact-aware tracking (AGILE §3.2–3.3): initialization, the per-frame two-step
optimization with early stopping, and the bidirectional scan from the interaction onset frame.

Typical use::

    from hoijax import data, mano, tracking
    seqs = [data.load_sequence(p) for p in paths]
    config = tracking.TrackConfig(image_size=seqs[0].image_size)
    prep = tracking.stack_prepared([tracking.prepare(s, config) for s in seqs])
    result = tracking.track_batch(data.stack_sequences(seqs), prep, mano.synthetic_mano(),
                                  tracking.TrackHyper(), config, jax.random.PRNGKey(0))
"""

from hoijax.tracking._evaluate import (
    PER_FRAME_METRICS,
    RESULT_FORMAT,
    RESULT_FORMAT_VERSION,
    ResultFormatError,
    evaluate_sequence,
    load_result,
    save_result,
    summarize,
)
from hoijax.tracking._hand_fit import HandFitHyper, HandFitResult, fit_hand
from hoijax.tracking._onset import DEFAULT_ONSET_TAU, motion_ratio, onset_frame, touches_border
from hoijax.tracking._optimize import MinimizeResult, minimize
from hoijax.tracking._schedule import Schedule, bidirectional_schedule, num_steps
from hoijax.tracking._steps import (
    HandDepth,
    ObjectFrame,
    ObjectPrev,
    TrackConfig,
    TrackHyper,
    dino_support,
    hand_step,
    iof_joint_stage,
    iof_scale_stage,
    object_step,
    pose_fit_loss,
    pose_matrix,
)
from hoijax.tracking._track import (
    STEP_TERMS,
    TRACE_COUNT,
    Prepared,
    TrackResult,
    ablate_batch,
    hand_keypoints,
    hand_vertices,
    object_vertices,
    prepare,
    progress_to,
    stack_hypers,
    stack_prepared,
    track_batch,
    track_sequence,
    tracked_hand_params,
)

__all__ = [
    "DEFAULT_ONSET_TAU", "PER_FRAME_METRICS", "RESULT_FORMAT", "RESULT_FORMAT_VERSION",
    "STEP_TERMS", "TRACE_COUNT", "HandDepth", "HandFitHyper", "HandFitResult", "MinimizeResult",
    "ObjectFrame", "ObjectPrev", "Prepared",
    "ResultFormatError", "Schedule", "TrackConfig", "TrackHyper", "TrackResult",
    "ablate_batch", "bidirectional_schedule", "dino_support", "evaluate_sequence", "fit_hand",
    "hand_keypoints", "hand_step", "hand_vertices", "iof_joint_stage", "iof_scale_stage",
    "load_result", "minimize", "motion_ratio", "num_steps", "object_step", "object_vertices",
    "onset_frame", "pose_fit_loss", "pose_matrix", "prepare", "progress_to", "save_result",
    "stack_hypers", "stack_prepared",
    "summarize", "touches_border", "track_batch", "track_sequence", "tracked_hand_params",
]
