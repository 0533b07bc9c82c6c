"""Pictures: 2D hand skeletons, tracking overlays (PNG and GIF), loss curves, metric and
ablation plots, meshes, and the metric-initialization demo's figure (matplotlib). A leaf
package: only the command line imports it."""

from hoijax.viz._hand2d import OPENPOSE_BONES, draw_hand_2d
from hoijax.viz._init_demo import demo_overlay
from hoijax.viz._track import (
    ablation_plot,
    draw_sequence,
    loss_curves,
    metric_plots,
    write_meshes,
)

__all__ = ["OPENPOSE_BONES", "ablation_plot", "demo_overlay", "draw_hand_2d", "draw_sequence",
           "loss_curves", "metric_plots", "write_meshes"]
