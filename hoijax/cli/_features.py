"""``hoijax features``: DINO feature maps of a sequence's frames and per-vertex features of its
object, written into the sequence directory so that the tracker's L_dino is on.

For each sequence directory (the hoijax sequence format, with its ``rgb`` part):

* ``features.npy`` (N, Hf, Wf, C): :func:`hoijax.features.frame_features` of the frames
  (manifest: ``parts.features``, ``feature_size``, ``arrays.features``);
* ``<mesh stem>_features.npy`` (V, C): :func:`hoijax.features.object_vertex_features` of the
  sequence's mesh file, coloured by its texture (:func:`hoijax.data.read_textured_mesh`); a mesh
  without colours is rendered uniformly grey, with a warning (manifest: ``parts.mesh_features``,
  ``mesh.features_file``, ``mesh.feature_dim``);
* ``meta.features`` in the manifest: ``weights_sha256``, ``weights_file``, ``preset``,
  ``image_size`` (the ViT's input size for the frames), ``feature_size``, ``views``,
  ``render_size``, ``texture``, ``dtype``.

A sequence whose manifest already records the same weights hash, preset and settings is
skipped ("cached") unless ``--force``. Exit codes: 0 all done, 1 some sequence failed (each
named; the others still finish), 2 no usable weights file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import tyro
from tyro.conf import Positional

DOWNLOAD_HINT = """\
DINO weights are not bundled. Download one checkpoint file and pass it with --weights:
  DINOv2 ViT-S/14 (preset dinov2_vits14, the default), either
    Meta's   https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth
    or HF    https://huggingface.co/facebook/dinov2-small  (file model.safetensors)
  other DINOv2 sizes: dinov2_vit{b,l,g}14 (Meta dinov2_vit*14_pretrain.pth,
    HF facebook/dinov2-{base,large,giant}); with registers: dinov2_vit*14_reg
    (dinov2_vit*14_reg4_pretrain.pth, HF facebook/dinov2-with-registers-*)
  DINOv3 ViT-S/16 (preset dinov3_vits16): HF facebook/dinov3-vits16-pretrain-lvd1689m
    (file model.safetensors; gated: accept the licence on the model page first)
e.g.  hoijax features SEQ_DIR --weights dinov2_vits14_pretrain.pth --preset dinov2_vits14"""


@dataclasses.dataclass
class Features:
    """Compute DINO features of sequences' frames and objects, written into the directories."""

    sequences: Annotated[Positional[list[Path]],
                         tyro.conf.arg(metavar="SEQ_DIR", help_behavior_hint="(one or more)")]
    """Sequence directories (hoijax sequence format, with RGB frames)."""
    weights: Path | None = None
    """DINO checkpoint: Meta .pth or Hugging Face model.safetensors (see the error without it)."""
    preset: str = "dinov2_vits14"
    """Architecture of the checkpoint (dinov2_vits14, dinov2_vitb14, dinov3_vits16, ...)."""
    batch: int = 8
    """Frames (and object renderings) per ViT call."""
    views: int = 16
    """Viewpoints the object is rendered from for its per-vertex features."""
    render_size: int = 224
    """Side of the object renderings, pixels."""
    max_side: int | None = None
    """Resize frames so their longer side is about this many pixels before the ViT; unset, they
    keep their own size, rounded to a multiple of the patch size."""
    min_side: int | None = None
    """Upscale smaller frames so their longer side is about this many pixels before the ViT,
    for finer feature maps (a 128-pixel frame gives DINOv2 a 9 × 9 map, too coarse for the
    tracker's L_dino support on small objects; 448 gives 32 × 32)."""
    float16: bool = False
    """Store the feature files as float16 (half the disk; loaded as float32)."""
    force: bool = False
    """Recompute even when the manifest records the same weights and settings."""
    progress: bool = True
    """Show progress bars."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _input_hw(image_hw: tuple[int, int], patch: int, max_side: int | None,
              min_side: int | None = None) -> tuple[int, int]:
    from hoijax.features import patch_aligned_hw

    h, w = image_hw
    if max_side is not None and max(h, w) > max_side:
        s = max_side / max(h, w)
        h, w = max(1, round(h * s)), max(1, round(w * s))
    if min_side is not None and max(h, w) < min_side:
        s = min_side / max(h, w)
        h, w = max(1, round(h * s)), max(1, round(w * s))
    return patch_aligned_hw((h, w), patch)


def _write_manifest(directory: Path, manifest: dict) -> None:
    from hoijax.data._format import MANIFEST

    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, directory / MANIFEST)


class _SequenceError(Exception):
    pass


def _process(directory: Path, cfg: Features, weights_sha: str, get_model) -> str:
    """Compute and write one sequence's features; returns "cached" or "computed"."""
    import numpy as np

    from hoijax import data, features

    manifest = data.read_manifest(directory)
    if not manifest["parts"].get("rgb"):
        raise _SequenceError("has no rgb part (no RGB frames to compute features of)")
    entry = manifest["arrays"].get("rgb")
    if not isinstance(entry, dict) or not (directory / str(entry.get("file"))).is_file():
        raise _SequenceError("manifest lists rgb but its file is missing")
    h, w = manifest["image_size"]
    params_cfg = features.vit_preset(cfg.preset)
    input_hw = _input_hw((h, w), params_cfg.patch_size, cfg.max_side, cfg.min_side)
    key = {"weights_sha256": weights_sha, "preset": cfg.preset, "image_size": list(input_hw),
           "views": cfg.views, "render_size": cfg.render_size,
           "dtype": "float16" if cfg.float16 else "float32"}
    old = manifest.get("meta", {}).get("features")
    mesh_info = manifest["mesh"]
    if (not cfg.force and isinstance(old, dict)
            and all(old.get(k) == v for k, v in key.items())
            and manifest["parts"].get("features") and manifest["parts"].get("mesh_features")
            and (directory / manifest["arrays"].get("features", {}).get("file", "")).is_file()
            and mesh_info.get("features_file")
            and (directory / mesh_info["features_file"]).is_file()):
        return "cached"

    rgb = np.load(directory / entry["file"], allow_pickle=False)
    if rgb.ndim != 4 or rgb.shape[1:] != (h, w, 3) or rgb.shape[0] != manifest["num_frames"]:
        raise _SequenceError(f"rgb has shape {rgb.shape}, expected "
                             f"({manifest['num_frames']}, {h}, {w}, 3)")
    if rgb.dtype != np.uint8:
        raise _SequenceError(f"rgb has dtype {rgb.dtype}, expected uint8")

    mesh_path = directory / mesh_info["file"]
    mesh = data.read_textured_mesh(mesh_path)
    if mesh_info.get("num_vertices") not in (None, len(mesh.vertices)):
        raise _SequenceError(f"{mesh_path.name} has {len(mesh.vertices)} vertices, the manifest "
                             f"says {mesh_info['num_vertices']}")
    model = manifest.get("meta", {}).get("object_model")
    if not mesh.has_texture and model and Path(model).is_file():
        # A converted dataset stores plain geometry; its textured original is recorded.
        mesh = data.transfer_appearance(mesh.vertices, mesh.faces,
                                        data.read_textured_mesh(model))
    if not mesh.has_texture:
        msg = (f"warning: {directory}: {mesh_path.name} has no texture or colours; the object's "
               "features come from a uniform grey rendering (shape only), recorded as "
               '"texture": false')
        print(msg, file=sys.stderr)

    params, config = get_model()
    bar = _bar(cfg, rgb.shape[0] + cfg.views, f"{directory.name}")
    t0 = time.perf_counter()
    fmaps = features.frame_features(params, config, rgb, batch=cfg.batch, input_hw=input_hw,
                                    progress=bar.update)
    t1 = time.perf_counter()
    vfeats, info = features.object_vertex_features(
        params, config, mesh.vertices, mesh.faces, mesh.colors, views=cfg.views,
        image_size=cfg.render_size, batch=cfg.batch, progress=bar.update, uv=mesh.uv,
        texture=mesh.texture)
    t2 = time.perf_counter()
    bar.close()

    dtype = np.float16 if cfg.float16 else np.float32
    feat_file = "features.npy"
    mesh_feat_file = f"{Path(mesh_info['file']).stem}_features.npy"
    np.save(directory / feat_file, fmaps.astype(dtype), allow_pickle=False)
    np.save(directory / mesh_feat_file, vfeats.astype(dtype), allow_pickle=False)
    manifest["parts"]["features"] = True
    manifest["parts"]["mesh_features"] = True
    manifest["feature_size"] = list(fmaps.shape[1:])
    manifest["arrays"]["features"] = {"file": feat_file, "shape": list(fmaps.shape),
                                      "dtype": "float32", "encoding": "raw"}
    mesh_info["features_file"] = mesh_feat_file
    mesh_info["feature_dim"] = int(vfeats.shape[1])
    manifest.setdefault("meta", {})["features"] = {
        **key, "weights_file": cfg.weights.name, "feature_size": list(fmaps.shape[1:]),
        "texture": bool(mesh.has_texture), "texture_source": mesh.source,
        "texture_sampling": ("per pixel" if mesh.uv is not None and mesh.texture is not None
                             else "per vertex"),
        "unseen_vertices": info["unseen"],
        "seconds": {"frames": round(t1 - t0, 3), "object": round(t2 - t1, 3)},
    }
    _write_manifest(directory, manifest)
    return "computed"


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(cfg: Features, total: int, desc: str):
    if not cfg.progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)


def run_features(cfg: Features) -> int:
    """The command; returns the exit code (module doc)."""
    from hoijax import features

    if not cfg.sequences:
        print("error: give one or more sequence directories", file=sys.stderr)
        return 2
    if cfg.weights is None or not Path(cfg.weights).is_file():
        what = ("no --weights given" if cfg.weights is None
                else f"weights file not found: {cfg.weights}")
        print(f"error: {what}\n{DOWNLOAD_HINT}", file=sys.stderr)
        return 2
    try:
        config = features.vit_preset(cfg.preset)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cfg.views < 1 or cfg.batch < 1 or cfg.render_size < config.patch_size:
        print("error: --views and --batch must be >= 1 and --render-size at least the patch "
              f"size ({config.patch_size})", file=sys.stderr)
        return 2
    from hoijax.cli._cache import enable_compile_cache

    enable_compile_cache()
    weights_sha = sha256_file(Path(cfg.weights))
    model: dict = {}

    def get_model():
        if "params" not in model:
            model["params"] = features.load_vit_params(cfg.weights, config)
        return model["params"], config

    failed = []
    for directory in cfg.sequences:
        directory = Path(directory)
        t0 = time.perf_counter()
        try:
            status = _process(directory, cfg, weights_sha, get_model)
        except features.CheckpointError as e:
            print(f"error: {cfg.weights}: {e}\n{DOWNLOAD_HINT}", file=sys.stderr)
            return 2
        except Exception as e:  # one bad sequence must not stop the others
            what = str(e) if isinstance(e, _SequenceError) else f"{type(e).__name__}: {e}"
            print(f"error: {directory}: {what}", file=sys.stderr)
            failed.append(str(directory))
            continue
        print(f"{directory}: {status} ({time.perf_counter() - t0:.1f} s)", flush=True)
    if failed:
        print(f"{len(failed)} of {len(cfg.sequences)} sequence(s) failed: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0
