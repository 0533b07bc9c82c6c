"""Speed of the data side: the synthetic benchmark generator and SDF grid construction.

Measures, on the current JAX backend:

- ``generate_sequence`` for a 100-frame sequence at 256² (box and drill): the first call
  (compilation included) and the median of warm repeats;
- ``sdf_grid_from_mesh`` at 64³ on icospheres of 320, 1 280 and 5 120 faces (host-side build,
  the jitted kernels' compilation included in the first call, median of repeats after it).

Writes ``experiments/results/bench_data_<backend>.json`` and prints a table::

    python experiments/bench_data.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np
import trimesh
from _common import package_versions

from hoijax import data, sdf

RESULTS = Path(__file__).resolve().parent / "results"


def _timed(fn, repeats: int) -> dict:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        warm.append(time.perf_counter() - t0)
    return {"first_s": first, "median_s": statistics.median(warm), "repeats": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = {"generator": {}, "sdf_grid": {}}
    for kind in ("box", "drill"):
        cfg = data.SyntheticConfig(seed=0, num_frames=100, image_size=(256, 256),
                                   object_kind=kind)
        r = _timed(lambda cfg=cfg: data.generate_sequence(cfg).hand_mask, args.repeats)
        rows["generator"][kind] = r
        print(f"generate_sequence {kind:6s} 100×256²: first {r['first_s']:6.2f} s, "
              f"warm median {r['median_s']:6.2f} s")
    for sub in (2, 3, 4):
        ico = trimesh.creation.icosphere(subdivisions=sub, radius=0.05)
        v, f = np.asarray(ico.vertices), np.asarray(ico.faces)
        r = _timed(lambda v=v, f=f: sdf.sdf_grid_from_mesh(v, f, resolution=64).values,
                   args.repeats)
        rows["sdf_grid"][str(len(f))] = r
        print(f"sdf_grid_from_mesh 64³ {len(f):5d} faces: first {r['first_s']:6.2f} s, "
              f"warm median {r['median_s']:6.2f} s")
    backend = jax.default_backend()
    out = {
        "backend": backend, "machine": platform.processor() or platform.machine(),
        "cpu_count": __import__("os").cpu_count(),
        "versions": package_versions("jax", "jaxlib", "trimesh", "manifold3d"),
        "results": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"bench_data_{backend}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
