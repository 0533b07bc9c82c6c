"""What fills TIGeR's occlusion bins: the ground-truth objects' size and roundness per bin.

The sphere prior of the synthetic data is 5 cm in radius. Where the objects of a bin are about
that size and round, the unrefined sphere is already close to them (TIGeR's Table IIIc notes
the same for sphere-like cans). Prior-only: no model is trained. Held-out scenes of
``tiger_table.py`` by default (generator seed 1000, 100 scenes × 3 frames).

    python experiments/tiger_bin_objects.py [--test-seed 1000 --test-scenes 100]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hoijax import tiger

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test-seed", type=int, default=1000)
    ap.add_argument("--test-scenes", type=int, default=100)
    ap.add_argument("--test-frames-per-scene", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "tiger_bin_objects.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = tiger.SyntheticTigerConfig(num_scenes=args.test_scenes, seed=args.test_seed,
                                     frames_per_scene=args.test_frames_per_scene)
    d = tiger.make_synthetic_tiger(cfg, all_priors=True)
    sph = d.take(np.asarray(d.prior_source) == tiger.PRIOR_SOURCES.index("sphere"))
    r = tiger.occlusion_rate(sph)
    extent = np.ptp(sph.points_obj, axis=1)
    rms = np.sqrt((sph.points_obj.astype(np.float64) ** 2).sum(-1).mean(-1))
    rows = []
    for b, idx in enumerate(tiger.occlusion_bins(r)):
        rows.append({"bin": b + 1, "r_occ_min": float(r[idx].min()),
                     "r_occ_max": float(r[idx].max()), "frames": int(len(idx)),
                     "median_rms_radius_cm": float(100 * np.median(rms[idx])),
                     "median_max_extent_cm": float(100 * np.median(extent[idx].max(1))),
                     "median_min_over_max_extent": float(np.median(extent[idx].min(1)
                                                                   / extent[idx].max(1)))})
    prior_rms = float(100 * np.sqrt((sph.prior_obj[0].astype(np.float64) ** 2).sum(-1).mean()))
    payload = {"sphere_prior_rms_radius_cm": prior_rms, "bins": rows,
               "command": "python experiments/tiger_bin_objects.py --test-seed "
                          f"{args.test_seed} --test-scenes {args.test_scenes} "
                          f"--test-frames-per-scene {args.test_frames_per_scene}",
               "wall_s": time.perf_counter() - t0}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"sphere prior: RMS radius {prior_rms:.2f} cm")
    print("| bin | R_occ | RMS radius (cm) | longest extent (cm) | shortest / longest |")
    print("|---|---|---:|---:|---:|")
    for x in rows:
        print(f"| {x['bin']} | {x['r_occ_min']:.2f}–{x['r_occ_max']:.2f} | "
              f"{x['median_rms_radius_cm']:.2f} | {x['median_max_extent_cm']:.1f} | "
              f"{x['median_min_over_max_extent']:.2f} |")


if __name__ == "__main__":
    main()
