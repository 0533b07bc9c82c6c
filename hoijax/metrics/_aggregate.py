"""Host-side aggregation, HOLD's way: mean over a sequence's frames, then over sequences.

HOLD's ``code/evaluate.py`` stores per-frame values (NaN for frames without ground truth,
``is_valid`` false) and reports ``np.nanmean`` per sequence; ``summarize_metrics.py`` then
averages the per-sequence numbers with equal weight per sequence. Here invalid frames are the
padding of a batch (``Sequence.valid``) plus any NaN value; both are left out.
"""

from __future__ import annotations

import warnings

import numpy as np
from jaxtyping import ArrayLike


def sequence_means(values: ArrayLike, valid: ArrayLike | None = None) -> np.ndarray:
    """Mean over the frame axis (last) of each sequence, ignoring invalid frames and NaNs.

    Args:
        values: ``(N,)`` or ``(B, N)`` per-frame metric values.
        valid: same shape (or broadcastable), True for real frames; None means all.

    Returns:
        ``()`` or ``(B,)``: NaN for a sequence with no valid finite frame.
    """
    x = np.asarray(values, np.float64)
    ok = np.isfinite(x)
    if valid is not None:
        ok &= np.broadcast_to(np.asarray(valid, bool), x.shape)
    count = ok.sum(-1)
    total = np.where(ok, x, 0.0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def aggregate(values: ArrayLike, valid: ArrayLike | None = None) -> float:
    """Mean over frames, then over sequences (each sequence weighs the same).

    ``values`` is ``(N,)`` (one sequence) or ``(B, N)``; sequences with no valid frame are left
    out (with a warning), as ``np.nanmean`` does in HOLD.
    """
    per_seq = np.atleast_1d(sequence_means(values, valid))
    if not np.any(np.isfinite(per_seq)):
        warnings.warn("no valid frame in any sequence; the aggregate is NaN", stacklevel=2)
        return float("nan")
    if not np.all(np.isfinite(per_seq)):
        warnings.warn(f"{int(np.sum(~np.isfinite(per_seq)))} sequence(s) without a valid frame "
                      "left out of the aggregate", stacklevel=2)
    return float(np.nanmean(per_seq))


def aggregate_dict(metrics: dict[str, ArrayLike], valid: ArrayLike | None = None) -> dict[str, float]:
    """:func:`aggregate` of every entry of a ``{name: (B, N) or (N,) values}`` dict.

    An entry whose rank differs from ``valid``'s (e.g. ``(B,)``: one value per sequence, like
    the first-frame shape CD) is averaged without the mask, NaNs left out.
    """
    return {k: aggregate(v, valid if np.ndim(v) == np.ndim(valid) else None)
            for k, v in metrics.items()}
