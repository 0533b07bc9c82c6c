"""Batched contact-aware tracking (AGILE §3.2–3.3): initialization, the per-frame two-step
optimization with early stopping, and the bidirectional scan from the interaction onset frame."""

from hoijax.tracking._onset import DEFAULT_ONSET_TAU, motion_ratio, onset_frame, touches_border
from hoijax.tracking._optimize import MinimizeResult, minimize
from hoijax.tracking._schedule import Schedule, bidirectional_schedule, num_steps

__all__ = [
    "DEFAULT_ONSET_TAU", "MinimizeResult", "Schedule", "bidirectional_schedule", "minimize",
    "motion_ratio", "num_steps", "onset_frame", "touches_border",
]
