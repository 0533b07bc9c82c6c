"""Overlays that show error: the tracked silhouettes' contours over the observed masks.

The frame is turned grey so that no colour of the image can be mistaken for a drawn one; the
observed hand and object masks are tinted (magenta, cyan) and the tracked silhouettes are drawn
as 1-pixel contours (yellow hand, red object), solid on processed frames and dashed on the
interpolated or held ones. Where tracked and observed agree, each contour runs along the edge of
its tint; an offset shows as a gap between them.
"""

from __future__ import annotations

import numpy as np

HAND_CONTOUR = (255, 217, 0)
"""RGB of the tracked hand's contour (yellow)."""
OBJECT_CONTOUR = (235, 30, 30)
"""RGB of the tracked object's contour (red)."""
HAND_MASK_TINT = (214, 77, 214)
"""RGB the observed hand mask is tinted towards (magenta)."""
OBJECT_MASK_TINT = (51, 191, 217)
"""RGB the observed object mask is tinted towards (cyan)."""
DETECTED_KEYPOINTS = (60, 255, 60)
"""RGB of the detector's 2D keypoints (green crosses); the tracked skeleton is yellow."""
_TINT = 0.4


def upscale_factor(width: int) -> int:
    """Integer upsampling that brings small frames to about 256 px, so 1-px contours stay thin
    next to the image's pixels."""
    return max(1, 256 // int(width))


def contour(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` (H, W) with a 4-neighbour outside it (the image border counts as
    outside)."""
    m = np.pad(np.asarray(mask, bool), 1)
    inner = m[1:-1, 1:-1]
    return inner & ~(m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:])


def _up(a: np.ndarray, k: int) -> np.ndarray:
    return a if k == 1 else np.repeat(np.repeat(a, k, axis=0), k, axis=1)


def overlay_frame(image: np.ndarray, tracked_ids: np.ndarray, hand_mask: np.ndarray,
                  object_mask: np.ndarray, *, dashed: bool = False,
                  upscale: int | None = None) -> np.ndarray:
    """(H·u, W·u, 3) uint8: ``image`` (H, W, 3; uint8 or floats in [0, 1]) in grey, the
    observed masks tinted, the contours of ``tracked_ids`` (per pixel: -1 background, 0 hand,
    1 object) on top; ``dashed`` for frames the optimizer did not process."""
    img = np.asarray(image)
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    u = upscale_factor(img.shape[1]) if upscale is None else upscale
    grey = 0.3 + 0.5 * (img @ np.array([0.299, 0.587, 0.114], np.float32))
    out = np.repeat(grey[..., None], 3, axis=-1) * 255.0
    for mask, tint in ((object_mask, OBJECT_MASK_TINT), (hand_mask, HAND_MASK_TINT)):
        m = np.asarray(mask, bool)
        out[m] = (1 - _TINT) * out[m] + _TINT * np.asarray(tint, np.float32)
    out = _up(np.clip(out, 0, 255).astype(np.uint8), u)
    ids = _up(np.asarray(tracked_ids), u)
    rr, cc = np.indices(ids.shape)
    dash = ((rr + cc) // (3 * u)) % 2 == 0 if dashed else True
    for k, colour in ((1, OBJECT_CONTOUR), (0, HAND_CONTOUR)):
        out[contour(ids == k) & dash] = colour
    return out
