"""Pictures of tracking results: overlays (PNG and GIF), loss curves, metric plots, meshes."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hoijax import render
from hoijax.tracking import STEP_TERMS, hand_vertices, object_vertices

_HAND_RGB = np.array([0.95, 0.55, 0.2])
_OBJ_RGB = np.array([0.2, 0.6, 0.95])


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


def _compose(bg, ids):
    img = bg.copy()
    for k, rgb in ((0, _HAND_RGB), (1, _OBJ_RGB)):
        m = ids == k
        img[m] = 0.45 * img[m] + 0.55 * rgb
    return np.clip(img, 0, 1)


def draw_sequence(out: Path, seq, result, model, ev: dict | None) -> None:
    """overlay.png (a few frames), overlay.gif (every frame), loss_curves.png and .ply meshes
    of the processed frames, under ``out``."""
    plt = _plt()
    n = int(np.sum(np.asarray(seq.valid)))
    vh = np.asarray(hand_vertices(result, seq.hand_init, model))[:n]
    keep = np.asarray(seq.mesh.face_valid)
    faces_o = np.asarray(seq.mesh.faces)[keep]
    vo = np.asarray(object_vertices(result, seq.mesh.vertices))[:n]
    ids = _render_ids(jnp.asarray(vh), jnp.asarray(vo), jnp.asarray(model.faces),
                      jnp.asarray(faces_o), seq.K, tuple(int(x) for x in seq.image_size))
    frames = [np.asarray(_compose(_background(seq, f), ids[f])) for f in range(n)]

    pick = sorted({0, int(result.anchor), n // 2, n - 1})
    fig, axes = plt.subplots(1, len(pick), figsize=(3.2 * len(pick), 3.4))
    for ax, f in zip(np.atleast_1d(axes), pick):
        ax.imshow(frames[f])
        title = f"frame {f}" + (" (anchor)" if f == int(result.anchor) else "")
        if ev is not None and np.isfinite(ev["per_frame"]["rot_err_deg"][f]):
            title += (f"\n{ev['per_frame']['rot_err_deg'][f]:.1f}°, "
                      f"{ev['per_frame']['trans_err_mm'][f]:.1f} mm")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle("tracked hand (orange) and object (blue)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "overlay.png", dpi=110)
    plt.close(fig)

    from matplotlib.animation import FuncAnimation, PillowWriter

    fig, ax = plt.subplots(figsize=(3.2, 3.2))
    im = ax.imshow(frames[0])
    ax.axis("off")
    fig.tight_layout()
    anim = FuncAnimation(fig, lambda i: (im.set_data(frames[i]), ax.set_title(f"frame {i}"))[:1],
                         frames=n, blit=False)
    anim.save(out / "overlay.gif", writer=PillowWriter(fps=8), dpi=80)
    plt.close(fig)

    loss_curves(out / "loss_curves.png", result)
    write_meshes(out / "meshes", result, vh, vo, np.asarray(model.faces), faces_o)


def loss_curves(path: Path, result) -> None:
    """Per-iteration totals of every processed step, and the anchor-frame stages."""
    if result.object_trace is None:
        return
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    tr = np.asarray(result.object_trace)
    act = np.asarray(result.step_active)[1:]
    frames = np.asarray(result.step_frame)[1:]
    for k in np.flatnonzero(act):
        t = tr[k, :, 0]
        used = np.flatnonzero(t != 0)
        if used.size:
            axes[0].plot(used, t[used], lw=0.8, label=f"frame {frames[k]}")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("iteration")
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
