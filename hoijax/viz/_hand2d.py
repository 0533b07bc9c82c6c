"""Drawing 21-keypoint hands (OpenPose order) on matplotlib axes."""

from __future__ import annotations

import numpy as np

OPENPOSE_BONES: tuple[tuple[int, int], ...] = tuple(
    (0 if k == 0 else 1 + 4 * f + k - 1, 1 + 4 * f + k) for f in range(5) for k in range(4)
)
"""Parent → child keypoint pairs of the OpenPose hand: wrist to each finger base, then along it."""


def draw_hand_2d(ax, uv_px, *, color="tab:blue", label=None, marker="o", size=12,
                 bones: bool = True) -> None:
    """Plot (21, 2) pixel keypoints in OpenPose order; NaN keypoints (missed) are skipped."""
    uv = np.asarray(uv_px, np.float64)
    ok = np.all(np.isfinite(uv), axis=1)
    if bones:
        for a, b in OPENPOSE_BONES:
            if ok[a] and ok[b]:
                ax.plot(uv[[a, b], 0], uv[[a, b], 1], color=color, lw=1.0, alpha=0.8)
    ax.scatter(uv[ok, 0], uv[ok, 1], s=size, c=color, marker=marker, label=label, zorder=3)
