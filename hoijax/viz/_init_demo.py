"""The demo's figure: overlays on a few frames, error curves, and one depth cloud."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

from hoijax import geometry
from hoijax.viz._hand2d import draw_hand_2d


def demo_overlay(path: Path, seq: dict, fit: dict, metrics: dict, image_size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    K = jnp.asarray(seq["K"])
    n = len(seq["uv_px"])
    frames = sorted({0, n // 2, n - 1})
    fig, axes = plt.subplots(2, 3, figsize=(15, 9.5))
    for ax, i in zip(axes[0], frames):
        gt_verts = np.asarray(geometry.project(K, jnp.asarray(seq["gt_verts_cam"][i])))
        est_verts = np.asarray(geometry.project(K, jnp.asarray(fit["verts_cam"][i])))
        ax.scatter(*gt_verts.T, s=2, c="0.75", label="true hand (vertices)")
        ax.scatter(*est_verts.T, s=1, c="tab:blue", alpha=0.25, label="recovered hand")
        draw_hand_2d(ax, np.asarray(geometry.project(K, jnp.asarray(seq["gt_keypoints_cam"][i]))),
                     color="tab:green", label="true keypoints")
        draw_hand_2d(ax, seq["uv_px"][i], color="tab:red", marker="x", size=25, bones=False,
                     label="detections")
        draw_hand_2d(ax, np.asarray(geometry.project(K, jnp.asarray(fit["keypoints_cam"][i]))),
                     color="tab:blue", label="recovered keypoints")
        ax.set_xlim(0, image_size)
        ax.set_ylim(image_size, 0)
        ax.set_aspect("equal")
        pf = metrics["per_frame"]
        ax.set_title(f"frame {i}: root err {pf['root_error_mm'][i]:.1f} mm, "
                     f"MPJPE {pf['mpjpe_mm'][i]:.1f} mm")
    axes[0, 0].legend(loc="lower left", fontsize=7)

    pf = metrics["per_frame"]
    ax = axes[1, 0]
    ax.plot(pf["root_error_mm"], label="root (wrist) error")
    ax.plot(pf["mpjpe_mm"], label="MPJPE (21 keypoints)")
    ax.set_xlabel("frame")
    ax.set_ylabel("mm")
    ax.set_title("3D errors after ICP scale + PnP translation")
    ax.legend()

    ax = axes[1, 1]
    ax.plot(pf["icp_scale"], ".", label="per-frame ICP scale")
    ax.axhline(metrics["scale_true"], color="tab:green", label="true scale")
    ax.axhline(metrics["scale_estimated"], color="tab:blue", ls="--", label="median (used)")
    ax.set_xlabel("frame")
    ax.set_title(f"hand scale: error {metrics['scale_error_percent']:.2f}%")
    ax.legend()

    ax = axes[1, 2]
    i = frames[1]
    pts = seq["depth_points"][i]
    ax.scatter(pts[:, 0] * 1e3, pts[:, 2] * 1e3, s=3, c="0.6", label="depth points (30% clutter)")
    est = fit["verts_cam"][i]
    ax.scatter(est[:, 0] * 1e3, est[:, 2] * 1e3, s=2, c="tab:blue", alpha=0.5,
               label="recovered hand")
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("depth z (mm)")
    ax.set_title(f"frame {i}, top view")
    ax.set_aspect("equal")
    ax.legend(fontsize=7)
    fig.suptitle("hoijax demo: metric hand initialization (AGILE §3.2) on a synthetic sequence")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
