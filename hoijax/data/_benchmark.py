"""Benchmark v2: a wider synthetic distribution, with development and held-out seeds.

Each sequence draws its settings from its own seed (recorded in the manifest's ``meta``):

- **Object.** The eleven procedural kinds in turn (``ALL_OBJECT_KINDS``: the original five
  plus sphere, torus, bottle, ellipsoid, marker and spatula: continuous symmetry, thin and
  elongated objects, handles), or the user's meshes in turn for every other sequence.
- **Grasp.** ``contact``: a contact point sampled on the surface, the palm against it along
  its normal with a random roll, penetration checked against the exact SDF.
- **Motion.** ``slow`` (peaks 10–30°/s and 0.03–0.1 m/s) or ``fast`` (45–90°/s and
  0.15–0.5 m/s) at 30 fps, alternating; one sequence in four slides 0.5–2 cm in the hand.
- **Camera.** 0.3–1.0 m from the scene, the focal length scaled with the distance (a
  detector's crop), images of 128² and 256² alternating in pairs, feature maps at stride 8
  (16² and 32²: DINO's patch 14 on 224²–448² crops).
- **Damage.** Occlusion levels light / medium / heavy in turn (heavy: the hand hides 80–99 %
  of the object), and the medium ones get an external occluder hiding 30–60 % of what is
  left;
  keypoint noise 1–4 px at 128², dropouts 0–20 %, confident outliers 0–10 %; mask damage
  0–1 (erosion/dilation, holes, a wrong blob); sensor depth (σ 1–3 mm at 0.5 m growing as z²,
  1 mm steps, edge holes) with 0–15 % blob holes; rendered features correlating 0.6–0.95 with
  the mesh's per-vertex features, plus noise.
- **Initial estimates.** Detector-like: the hand detector's errors at the generator's
  defaults, the object's initial pose 15° RMS and 2 cm RMS off.

Seeds: the development split uses ``DEV_SEED + i``, the held-out split
``HELDOUT_SEED + i``. Tune on ``dev``; report on ``heldout`` and never look at it before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from hoijax.data._objects import ALL_OBJECT_KINDS
from hoijax.data._synthetic import SyntheticConfig

Split = Literal["dev", "heldout"]
DEV_SEED = 1000
"""First seed of the development split."""
HELDOUT_SEED = 9000
"""First seed of the held-out split."""
V2_SIZE = 32
"""Sequences in the benchmark (each split)."""


def split_seed(split: str) -> int:
    """The first seed of a split."""
    if split == "dev":
        return DEV_SEED
    if split == "heldout":
        return HELDOUT_SEED
    raise ValueError(f"split must be 'dev' or 'heldout', got {split!r}")


def benchmark_v2_configs(n: int = V2_SIZE, split: str = "dev", *, frames: int = 30,
                         image_sizes: Sequence[int] = (128, 256), meshes: Sequence[Any] = (),
                         hand_noise: float = 1.0, with_rgb: bool = True
                         ) -> list[SyntheticConfig]:
    """``n`` configs of benchmark v2 (see the module docstring); ``split`` is ``"dev"`` or
    ``"heldout"`` (:data:`Split`), seeds from :func:`split_seed`.

    ``image_sizes`` alternate in pairs of sequences; ``meshes`` (``trimesh.Trimesh``, metric)
    replace the procedural object in every other sequence; ``hand_noise`` scales the hand
    detector's errors. The settings depend only on the seed and the position ``i``."""
    base = split_seed(split)
    d = SyntheticConfig()
    out = []
    for i in range(n):
        seed = base + i
        rng = np.random.default_rng([seed, 20_002])
        fast = i % 2 == 1
        distance = float(rng.uniform(0.3, 1.0))
        size = int(image_sizes[(i // 2) % len(image_sizes)])
        mesh = meshes[(i // 2) % len(meshes)] if meshes and i % 2 == 0 else None
        out.append(SyntheticConfig(
            seed=seed, num_frames=frames, image_size=(size, size),
            distance_m=distance, focal_factor=2.2 * distance / 0.5 * float(rng.uniform(0.85, 1.15)),
            object_kind=ALL_OBJECT_KINDS[i % len(ALL_OBJECT_KINDS)], object_mesh=mesh,
            occlusion=("light", "medium", "heavy")[i % 3],
            occluder=float(rng.uniform(0.3, 0.6)) if i % 3 == 1 else 0.0,
            grasp="contact",
            speed=float(rng.uniform(1.0, 2.0) if fast else rng.uniform(0.4, 1.0)),
            motion_rot_deg_per_s=float(rng.uniform(45, 90) if fast else rng.uniform(10, 30)),
            motion_trans_m_per_s=float(rng.uniform(0.15, 0.5) if fast else rng.uniform(0.03, 0.1)),
            slide_m=float(rng.uniform(0.005, 0.02)) if i % 4 == 1 else 0.0,
            feature_stride=8,
            keypoint_noise_px=float(rng.uniform(1.0, 4.0)) * size / 128,
            keypoint_dropout=float(rng.uniform(0.0, 0.2)),
            keypoint_outliers=float(rng.uniform(0.0, 0.1)),
            mask_damage=float(rng.uniform(0.0, 1.0)),
            depth_model="sensor", depth_noise_m=float(rng.uniform(0.001, 0.003)),
            depth_holes=float(rng.uniform(0.0, 0.15)),
            feature_correlation=float(rng.uniform(0.6, 0.95)),
            feature_noise=float(rng.uniform(0.03, 0.1)),
            object_init_rot_deg=15.0 / np.sqrt(3), object_init_trans_m=0.02,
            pose_pca_noise=hand_noise * d.pose_pca_noise, betas_noise=hand_noise * d.betas_noise,
            orient_noise_deg=hand_noise * d.orient_noise_deg,
            depth_bias_m=hand_noise * d.depth_bias_m, with_rgb=with_rgb))
    return out


__all__ = ["DEV_SEED", "HELDOUT_SEED", "Split", "V2_SIZE", "benchmark_v2_configs",
           "split_seed"]
