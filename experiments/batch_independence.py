"""How much a sequence's result depends on its batch, under ``TrackConfig.batching`` vmap and
map (issue 17: "a result that depends on the batch slot").

Eight small synthetic sequences (boxes and cans of two mesh sizes) are tracked as one batch by
the driver, then the first box and the smallest can alone; the script records the largest
difference of the object pose and hand translation between the two, and the wall time of
each call (compilation included: these are not speed figures).

    python experiments/batch_independence.py [--modes vmap map] [--image-size 48]

Writes ``experiments/results/batch_independence_<backend>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np
from _common import package_versions

from hoijax import data, tracking

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", nargs="+", default=["vmap", "map"], choices=["vmap", "map"])
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--frames", type=int, default=6)
    args = ap.parse_args()
    seqs = {f"s{i}_{k}": data.generate_sequence(data.SyntheticConfig(
        seed=i, num_frames=args.frames, image_size=(args.image_size,) * 2, object_kind=k,
        occlusion="light", focal_factor=2.2, feature_stride=4, onset_fraction=0.4))
        for i, k in enumerate(["box", "can"] * 4)}
    faces = {n: int(s.mesh.faces.shape[0]) for n, s in seqs.items()}
    probes = ["s0_box", min((n for n in seqs if "can" in n), key=faces.get)]
    mano = tracking.ManoSource.synthetic()
    opts = tracking.RunOptions(sdf_resolution=16)
    out = {"args": vars(args), "backend": jax.default_backend(),
           "versions": package_versions("jax", "jaxlib"), "faces": faces, "modes": {}}
    for mode in args.modes:
        config = tracking.TrackConfig(stride=2, hand_iters=15, object_iters=20, iof_iters=20,
                                      num_dino_points=16, pool_points=128, batching=mode)
        t0 = time.perf_counter()
        batch = tracking.track_sequences(seqs, mano, config, tracking.TrackHyper(), opts,
                                         log=lambda m: None)
        row = {"batch_wall_s": time.perf_counter() - t0,
               "batches": [b["sequences"] for b in batch.timing["batches"]], "alone": {}}
        for name in probes:
            t0 = time.perf_counter()
            alone = tracking.track_sequences({name: seqs[name]}, mano, config,
                                             tracking.TrackHyper(), opts, log=lambda m: None)
            a, b = alone.results[name], batch.results[name]
            row["alone"][name] = {
                "wall_s": time.perf_counter() - t0,
                "max_abs_diff_T_cam_obj": float(np.abs(np.asarray(a.T_cam_obj)
                                                       - np.asarray(b.T_cam_obj)).max()),
                "max_abs_diff_hand_transl_m": float(np.abs(np.asarray(a.hand_transl)
                                                           - np.asarray(b.hand_transl)).max())}
            print(mode, name, row["alone"][name], flush=True)
        out["modes"][mode] = row
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"batch_independence_{jax.default_backend()}.json"
        path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
