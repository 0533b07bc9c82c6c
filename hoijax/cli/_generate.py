"""``hoijax generate``: the synthetic benchmark written to disk, for ``track`` and ``eval``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Literal

from tyro.conf import Positional, arg


@dataclasses.dataclass
class Generate:
    """Write synthetic hand-object sequences (with ground truth) to disk, for track and eval."""

    out: Positional[Annotated[Path, arg(help_behavior_hint="(required)")]]
    """Folder to write: one sequence directory per sequence (seq_000, seq_001, ...)."""
    benchmark: Literal["v1", "v2"] = "v1"
    """v1: the original benchmark (five objects, palm grasps, the demo's); v2: eleven objects,
    contact grasps, slow and fast motion, 0.3-1 m cameras, damaged observations (README,
    "Benchmark v2")."""
    split: Literal["dev", "heldout"] = "dev"
    """v2 only: the development seeds (tune on these) or the held-out seeds (report on these)."""
    sequences: int | None = None
    """How many (default: 8 for v1, 32 for v2). v1 cycles box, can, mug, scissors, drill and
    light/medium/heavy occlusion."""
    frames: int = 30
    """Frames per sequence."""
    image_size: int | None = None
    """Square image side, pixels (default: 128 for v1; v2 alternates 128 and 256)."""
    seed: int | None = None
    """v1: seed of the first sequence (sequence i uses seed + i; default 0). v2 takes its seeds
    from --split."""
    hand_noise: float = 1.0
    """Scale of the simulated hand detector's errors (0: true MANO articulation)."""
    meshes: Annotated[tuple[Path, ...], arg(help_behavior_hint="(default: procedural)")] = ()
    """Object meshes (any trimesh-readable files): v1 uses them in turn instead of the
    procedural objects, v2 in every other sequence."""


def run_generate(cfg: Generate) -> int:
    import trimesh

    from hoijax import data

    meshes = []
    if cfg.meshes:
        try:
            meshes = [data.load_trimesh(p) for p in cfg.meshes]
        except data.SequenceFormatError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for m, p in zip(meshes, cfg.meshes):
            if not isinstance(m, trimesh.Trimesh) or not m.is_watertight:
                print(f"warning: {p} is not watertight: its SDF (L_interact) is unreliable",
                      file=sys.stderr)
    if cfg.benchmark == "v2":
        if cfg.seed is not None:
            print("error: --seed is for v1; v2 takes its seeds from --split", file=sys.stderr)
            return 2
        configs = data.benchmark_v2_configs(
            data.V2_SIZE if cfg.sequences is None else cfg.sequences, cfg.split,
            frames=cfg.frames, meshes=meshes, hand_noise=cfg.hand_noise,
            image_sizes=(128, 256) if cfg.image_size is None else (cfg.image_size,))
    else:
        configs = data.tracking_benchmark_configs(
            8 if cfg.sequences is None else cfg.sequences, cfg.frames,
            128 if cfg.image_size is None else cfg.image_size,
            seed=0 if cfg.seed is None else cfg.seed, hand_noise=cfg.hand_noise)
        if meshes:
            configs = [dataclasses.replace(c, object_mesh=meshes[i % len(meshes)])
                       for i, c in enumerate(configs)]
    paths = data.write_benchmark(cfg.out, configs)
    for p, c in zip(paths, configs):
        what = "user mesh" if c.object_mesh is not None else c.object_kind
        extra = ""
        if cfg.benchmark == "v2":
            got = data.read_manifest(p)["meta"]["motion"]
            extra = (f", {c.image_size[0]}², {c.distance_m:.2f} m, "
                     f"{got['peak_rot_deg_per_s']:.0f}°/s, {got['peak_trans_m_per_s']:.2f} m/s")
            if got["peak_trans_m_per_s"] < 0.9 * c.motion_trans_m_per_s:
                extra += f" (asked {c.motion_trans_m_per_s:.2f} m/s: slowed to stay in view)"
        print(f"{p}: {what}, {c.occlusion} occlusion{extra}, seed {c.seed}")
    print(f"wrote {len(paths)} sequences; next: hoijax track {cfg.out}/seq_* --out results/track")
    return 0
