"""``hoijax generate``: the synthetic benchmark written to disk, for ``track`` and ``eval``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated

from tyro.conf import Positional, arg


@dataclasses.dataclass
class Generate:
    """Write synthetic hand-object sequences (with ground truth) to disk, for track and eval."""

    out: Positional[Annotated[Path, arg(help_behavior_hint="(required)")]]
    """Folder to write: one sequence directory per sequence (seq_000, seq_001, ...)."""
    sequences: int = 8
    """How many (cycling box, can, mug, scissors, drill; light/medium/heavy occlusion)."""
    frames: int = 30
    """Frames per sequence."""
    image_size: int = 128
    """Square image side, pixels."""
    seed: int = 0
    """Seed of the first sequence (sequence i uses seed + i): use seeds the tuning never saw
    for held-out checks."""
    hand_noise: float = 1.0
    """Scale of the simulated hand detector's errors (0: true MANO articulation)."""
    meshes: Annotated[tuple[Path, ...], arg(help_behavior_hint="(default: procedural)")] = ()
    """Object meshes (any trimesh-readable files) used in turn instead of the procedural
    objects."""


def run_generate(cfg: Generate) -> int:
    import trimesh

    from hoijax import data

    configs = data.tracking_benchmark_configs(cfg.sequences, cfg.frames, cfg.image_size,
                                              seed=cfg.seed, hand_noise=cfg.hand_noise)
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
        configs = [dataclasses.replace(c, object_mesh=meshes[i % len(meshes)])
                   for i, c in enumerate(configs)]
    paths = data.write_benchmark(cfg.out, configs)
    for p, c in zip(paths, configs):
        what = "user mesh" if c.object_mesh is not None else c.object_kind
        print(f"{p}: {what}, {c.occlusion} occlusion, seed {c.seed}")
    print(f"wrote {len(paths)} sequences; next: hoijax track {cfg.out}/seq_* --out results/track")
    return 0
