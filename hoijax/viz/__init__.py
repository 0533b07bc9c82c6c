"""Pictures and viewers: error overlays (PNG and GIF), loss curves, metric and ablation plots,
meshes, the per-sequence scene (scene.npz) that the browser viewer (``hoijax view``) and the
HTML report read, and the metric-initialization demo's figure. A leaf package: only the command
line imports it."""

from hoijax.viz._hand2d import OPENPOSE_BONES, draw_hand_2d
from hoijax.viz._init_demo import demo_overlay
from hoijax.viz._overlay import (
    DETECTED_KEYPOINTS,
    HAND_CONTOUR,
    HAND_MASK_TINT,
    OBJECT_CONTOUR,
    OBJECT_MASK_TINT,
    contour,
    overlay_frame,
    upscale_factor,
)
from hoijax.viz._report import METRIC_DEFINITIONS, write_report
from hoijax.viz._scene import (
    CONTACT_M,
    SCENE_FILE,
    Scene,
    frame_labels,
    load_scene,
    oracle_result,
    save_scene,
    scene_from,
)
from hoijax.viz._track import (
    LEGEND,
    ablation_plot,
    draw_sequence,
    loss_curves,
    metric_plots,
    overlay_frames,
    write_meshes,
)

__all__ = ["CONTACT_M", "DETECTED_KEYPOINTS", "HAND_CONTOUR", "HAND_MASK_TINT", "LEGEND",
           "METRIC_DEFINITIONS", "OBJECT_CONTOUR", "OBJECT_MASK_TINT", "OPENPOSE_BONES", "SCENE_FILE", "Scene",
           "ablation_plot", "contour", "demo_overlay", "draw_hand_2d", "draw_sequence",
           "frame_labels", "load_scene", "loss_curves", "metric_plots", "oracle_result",
           "overlay_frame", "overlay_frames", "save_scene", "scene_from", "upscale_factor",
           "write_meshes", "write_report"]
