"""Pictures: 2D hand skeletons and overlays (matplotlib). A leaf package: nothing imports it."""

from hoijax.viz._hand2d import OPENPOSE_BONES, draw_hand_2d

__all__ = ["OPENPOSE_BONES", "draw_hand_2d"]
