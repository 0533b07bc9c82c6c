"""Pictures of tracking results: overlays (PNG and GIF), loss curves, metric plots, meshes."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hoijax import render
from hoijax.tracking import STEP_TERMS, hand_keypoints
from hoijax.viz._hand2d import draw_hand_2d
from hoijax.viz._overlay import DETECTED_KEYPOINTS, HAND_CONTOUR, overlay_frame
from hoijax.viz._scene import _downsampled, frame_labels, save_scene, scene_from

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@functools.partial(jax.jit, static_argnames=("settings",))
def _mesh_ids(verts, faces, mesh_id, K, settings):
    """Mesh id per pixel of every frame (one compiled program per image size and mesh size)."""
    return jax.lax.map(lambda v: render.rasterize(v, faces, K, settings, face_mesh_id=mesh_id,
                                                  num_meshes=2).mesh_id, verts)


def _render_ids(verts_h, verts_o, faces_h, faces_o, K, hw):
    """Mesh id per pixel (-1 background, 0 hand, 1 object) for every frame."""
    faces = jnp.concatenate([faces_h, faces_o + verts_h.shape[1]])
    mesh_id = jnp.concatenate([jnp.zeros(len(faces_h), jnp.int32),
                               jnp.ones(len(faces_o), jnp.int32)])
    settings = render.RasterSettings(*hw, pairs_per_face=32)
    return np.asarray(_mesh_ids(jnp.concatenate([verts_h, verts_o], axis=1), faces, mesh_id,
                                jnp.asarray(K), settings))


def _background(seq, f):
    if seq.rgb is not None:
        return np.asarray(seq.rgb[f]).astype(np.float32) / 255.0
    img = np.full(tuple(seq.image_size) + (3,), 0.15, np.float32)
    img[np.asarray(seq.object_mask[f])] = 0.45
    img[np.asarray(seq.hand_mask[f])] = 0.7
    return img


def _keypoints_px(result, seq, model, n: int) -> np.ndarray:
    from hoijax import geometry

    kp = hand_keypoints(result, seq.hand_init, model)[:n]
    return np.asarray(jax.vmap(lambda k: geometry.project(jnp.asarray(seq.K), k))(kp))


def _title(f: int, label: str, scene) -> str:
    head = f"frame {f} · {label}" + (" · anchor" if f == scene.anchor else "")
    if not scene.errors:
        return head
    e = scene.errors
    return (f"{head}\nobject {e['rot_err_deg'][f]:.1f}°, {e['trans_err_mm'][f]:.1f} mm · "
            f"hand {e['hand_mm'][f]:.1f} mm")


LEGEND = ("Grey frame; observed masks tinted: hand magenta, object cyan. Tracked contours: hand "
          "yellow, object red (dashed: frame not processed).\nTracked skeleton yellow, detected "
          "keypoints green. Before the first (after the last) processed frame the object pose is "
          "held from the nearest processed one\n('held from k'); the hand keeps its own "
          "initial translation plus that frame's correction.")
"""What the overlay's colours and labels mean (printed under overlay.png and in the report)."""


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def _panel(ax, frame, kp_tracked, kp_detected, scale: int):
    """One overlay frame with the tracked skeleton and the detected keypoints."""
    ax.imshow(frame, interpolation="nearest")
    draw_hand_2d(ax, kp_tracked * scale, color=_hex(HAND_CONTOUR), size=6)
    det = np.asarray(kp_detected, np.float64) * scale
    ax.scatter(det[:, 0], det[:, 1], s=18, marker="x", linewidths=1,
               c=_hex(DETECTED_KEYPOINTS), zorder=4)
    ax.set_xlim(-0.5, frame.shape[1] - 0.5)
    ax.set_ylim(frame.shape[0] - 0.5, -0.5)
    ax.axis("off")


def overlay_frames(seq, result, model, scene) -> list[np.ndarray]:
    """Every frame's error overlay (:func:`hoijax.viz.overlay_frame`), uint8, upscaled."""
    n = scene.num_frames
    vo = np.stack([scene.obj_verts_at(f) for f in range(n)]).astype(np.float32)
    ids = _render_ids(jnp.asarray(scene.hand_verts), jnp.asarray(vo),
                      jnp.asarray(model.faces), jnp.asarray(scene.obj_faces), seq.K,
                      tuple(int(x) for x in seq.image_size))
    labels = frame_labels(scene.processed)
    return [overlay_frame(_background(seq, f), ids[f], np.asarray(seq.hand_mask[f]),
                          np.asarray(seq.object_mask[f]), dashed=labels[f] != "processed")
            for f in range(n)]


def draw_sequence(out: Path, seq, result, model, ev: dict | None = None) -> None:
    """Under ``out``: overlay.png (a few frames), overlay.gif (every frame), loss_curves.png,
    .ply meshes of the processed frames, and scene.npz (what ``hoijax view`` and the report
    read). The errors in the labels are the scene's, on every frame (``ev``, the evaluation's,
    covers processed frames only and is not needed)."""
    del ev
    plt = _plt()
    out.mkdir(parents=True, exist_ok=True)
    scene = scene_from(out.name, seq, result, model)
    n = scene.num_frames
    frames = overlay_frames(seq, result, model, scene)
    labels = frame_labels(scene.processed)
    u = frames[0].shape[1] // scene.image_size[1]
    kp = _keypoints_px(result, seq, model, n)
    conf = np.asarray(seq.keypoints_conf)[:n]
    det = np.where(conf[..., None] > 0, np.asarray(seq.keypoints_px)[:n], np.nan)
    # the viewer's camera image is the overlay at the sequence's resolution
    scene.images = _downsampled(np.stack([f[::u, ::u] for f in frames]))
    save_scene(out, scene)

    pick = sorted({0, scene.anchor, n // 2, n - 1})
    fig, axes = plt.subplots(1, len(pick), figsize=(3.4 * len(pick), 4.6))
    for ax, f in zip(np.atleast_1d(axes), pick):
        _panel(ax, frames[f], kp[f], det[f], u)
        ax.set_title(_title(f, labels[f], scene), fontsize=8)
    fig.text(0.5, 0.01, LEGEND, ha="center", va="bottom", fontsize=6)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(out / "overlay.png", dpi=110)
    plt.close(fig)

    from matplotlib.animation import FuncAnimation, PillowWriter

    # the axes leave the top fifth of the figure to the two-line title, which is never clipped
    fig = plt.figure(figsize=(3.6, 4.4))
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.8))

    def draw(i):
        ax.clear()
        _panel(ax, frames[i], kp[i], det[i], u)
        ax.set_title(_title(i, labels[i], scene), fontsize=8)

    FuncAnimation(fig, draw, frames=n, blit=False).save(out / "overlay.gif",
                                                        writer=PillowWriter(fps=8), dpi=80)
    plt.close(fig)

    loss_curves(out / "loss_curves.png", result)
    vo = np.stack([scene.obj_verts_at(f) for f in range(n)])
    write_meshes(out / "meshes", result, scene.hand_verts, vo, np.asarray(model.faces),
                 scene.obj_faces)


def loss_curves(path: Path, result) -> None:
    """Per-iteration totals of every processed step, and the anchor-frame stages."""
    if result.object_trace is None:
        return
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    tr = np.asarray(result.object_trace)
    act = np.asarray(result.step_active)[1:]
    frames = np.asarray(result.step_frame)[1:]
    cmap = plt.get_cmap("viridis")
    steps = sorted(np.flatnonzero(act), key=lambda k: frames[k])  # legend in frame order
    for j, k in enumerate(steps):
        t = tr[k, :, 0]
        used = np.flatnonzero(t != 0)
        if used.size:
            axes[0].plot(used, t[used], lw=0.8, label=f"frame {frames[k]}",
                         color=cmap(j / max(len(steps) - 1, 1)))
    axes[0].set_yscale("log")
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("objective (weighted sum of terms)")
    axes[0].set_title("step 2 objective per processed frame (" + ", ".join(STEP_TERMS) + ")",
                      fontsize=9)
    if act.sum() <= 12:
        axes[0].legend(fontsize=6)
    if result.iof_trace is not None:
        it = np.asarray(result.iof_trace)
        for row, name in zip(it, ("pose (before ICP scale)", "scale on the ray", "joint")):
            used = np.flatnonzero(row[:, 0] != 0)
            if used.size:
                axes[1].plot(used, row[used, 0], label=name)
        axes[1].set_yscale("log")
        axes[1].set_xlabel("iteration")
        axes[1].set_ylabel("objective (weighted sum of terms)")
        axes[1].set_title(f"anchor frame {int(result.anchor)} stages", fontsize=9)
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_meshes(directory: Path, result, vh, vo, faces_h, faces_o, max_frames: int = 12
                 ) -> None:
    """Hand and object meshes (camera frame, metres) of up to ``max_frames`` processed frames,
    as .ply (trimesh, MeshLab and Blender read them)."""
    import trimesh

    directory.mkdir(parents=True, exist_ok=True)
    frames = np.flatnonzero(np.asarray(result.processed))[:max_frames]
    for f in frames:
        if f >= len(vh):
            continue
        trimesh.Trimesh(vh[f], faces_h, process=False).export(directory / f"frame{f:04d}_hand.ply")
        trimesh.Trimesh(vo[f], faces_o, process=False).export(
            directory / f"frame{f:04d}_object.ply")


def metric_plots(path: Path, names: list[str], evals: list[dict]) -> None:
    """Per-frame object rotation/translation errors and hand errors of every sequence."""
    plt = _plt()
    keys = [("rot_err_deg", "object rotation error (°)"),
            ("trans_err_mm", "object translation error (mm)"),
            ("hand_cam_mm", "hand joint error, camera frame (mm)")]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6))
    for ax, (k, title) in zip(axes, keys):
        for name, ev in zip(names, evals):
            v = ev["per_frame"][k]
            ok = np.isfinite(v)
            ax.plot(np.flatnonzero(ok), v[ok], marker="o", ms=3, lw=1, label=name)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("frame")
        ax.set_ylabel(title.split("(")[-1].rstrip(")"))
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ablation_plot(path: Path, rows: list[tuple[str, dict]]) -> None:
    """Bars of the ablation table's main metrics, one group per setting."""
    plt = _plt()
    keys = [("rot_err_deg_median", "rotation (°)"), ("trans_err_mm_median", "translation (mm)"),
            ("adds_mm_mean", "ADD-S (mm)"), ("hand_cam_mm_median", "hand, camera (mm)")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4))
    names = [n for n, _ in rows]
    for ax, (k, title) in zip(axes, keys):
        ax.bar(range(len(rows)), [r[k] for _, r in rows], color="tab:blue")
        ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
