"""Batched contact-aware tracking (AGILE §3.2–3.3): initialization, the per-frame two-step
optimization with early stopping, and the bidirectional scan from the anchor frame.

The driver does load → prepare → batch → track → score → save::

    from hoijax import data, mano, tracking
    seqs = {p.name: data.load_sequence(p) for p in paths}
    run = tracking.track_sequences(seqs, tracking.ManoSource.synthetic(),
                                   tracking.TrackConfig(), tracking.TrackHyper())
    tracking.save_run("results/track", run, seqs)

Underneath, :func:`track_batch` is ``jit(vmap(track_sequence))`` over padded batches and
:func:`ablate_batch` adds a ``vmap`` over a grid of :class:`TrackHyper`. The stages
``track_sequence`` composes are in :mod:`hoijax.tracking.stages`.
"""

from hoijax.tracking import stages
from hoijax.tracking._driver import (
    PER_FRAME_FIELDS,
    ManoMismatchError,
    ManoSource,
    RunOptions,
    TrackRun,
    check_mano,
    evaluate_run,
    gather_run,
    jsonable,
    padding_bucket,
    processed_frames,
    save_run,
    sequence_key,
    track_sequences,
    trim_frames,
)
from hoijax.tracking._programs import program_cache, use_program_cache
from hoijax.tracking._checks import input_warnings, term_activity, term_warnings
from hoijax.tracking._evaluate import (
    ACCURACY_FRACTION,
    AGILE_COLUMNS,
    PER_FRAME_METRICS,
    PER_SEQUENCE_METRICS,
    RESULT_FORMAT,
    RESULT_FORMAT_VERSION,
    ResultFormatError,
    agile_table,
    evaluate_sequence,
    true_symmetry,
    load_result,
    object_shape_at,
    save_result,
    summarize,
    sequence_row,
)
from hoijax.tracking._hand_fit import fit_hand
from hoijax.tracking._onset import DEFAULT_ONSET_TAU, motion_ratio, onset_frame, touches_border
from hoijax.tracking._gauss_newton import minimize_lm
from hoijax.tracking._optimize import MinimizeResult, minimize, minimize_stages
from hoijax.tracking._schedule import (
    Schedule,
    adaptive_schedule,
    bidirectional_schedule,
    num_steps,
)
from hoijax.tracking._settings import (
    HandFitConfig,
    HandFitHyper,
    TrackConfig,
    TrackHyper,
    stack_hypers,
)
from hoijax.tracking._stages import carried_pose
from hoijax.tracking._track import (
    STEP_TERMS,
    Prepared,
    SEQUENCE_AXIS,
    Progress,
    TrackResult,
    ablate_batch,
    hand_keypoints,
    hand_vertices,
    hidden_frames,
    object_diameter,
    object_vertices,
    prepare,
    predict_pose,
    sequence_mesh,
    stack_prepared,
    track_batch,
    track_sequence,
    tracked_hand_params,
)

__all__ = [
    "program_cache", "use_program_cache",
    "DEFAULT_ONSET_TAU", "predict_pose", "RunOptions", "SEQUENCE_AXIS", "gather_run", "sequence_mesh", "HandFitConfig", "HandFitHyper", "ManoMismatchError", "ManoSource",
    "ACCURACY_FRACTION", "input_warnings", "term_activity", "term_warnings", "AGILE_COLUMNS", "agile_table", "MinimizeResult", "PER_FRAME_METRICS", "PER_SEQUENCE_METRICS",
    "Prepared", "Progress", "RESULT_FORMAT",
    "RESULT_FORMAT_VERSION", "ResultFormatError", "STEP_TERMS", "Schedule", "TrackConfig",
    "TrackHyper", "TrackResult", "TrackRun", "ablate_batch", "adaptive_schedule",
    "bidirectional_schedule",
    "carried_pose", "check_mano", "evaluate_run", "evaluate_sequence", "true_symmetry", "fit_hand", "hand_keypoints",
    "hand_vertices", "hidden_frames", "jsonable", "load_result", "minimize", "minimize_lm", "minimize_stages",
    "motion_ratio", "num_steps",
    "object_diameter", "object_shape_at", "object_vertices", "onset_frame", "prepare", "padding_bucket",
    "processed_frames", "save_result", "save_run",
    "sequence_key",
    "sequence_row",
    "stack_hypers", "stack_prepared", "stages", "summarize", "touches_border", "track_batch",
    "track_sequence", "track_sequences", "tracked_hand_params", "trim_frames", "PER_FRAME_FIELDS",
]
