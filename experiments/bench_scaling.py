"""Tracking throughput against the number of devices the sequences are split over.

    python experiments/bench_scaling.py [--devices 1 2 4] [--sequences 8] [--frames 11]
        [--image-size 64] [--repeats 2] [--forced-cpu]

Each device count runs in its own process (JAX fixes its devices at start): with
``--forced-cpu`` the host's CPU is split into that many XLA devices
(``--xla_force_host_platform_device_count``), which measures the splitting's overhead and
whatever parallelism the cores allow; on a multi-GPU machine it uses the first N GPUs as is.
Per count: the first call (compile + run) and the median of warm runs of one batch of
``--sequences`` sequences (``tracking.track_batch`` with a mesh over the devices), seconds per
processed frame, and the speed-up over one device in the same run. Also measures
what a run costs the host per sequence, apart from the devices (``--host-frames``): loading
a saved sequence, its preparation (SDF grid and surface samples, on the CPU), its size on disk
and in memory. Writes ``experiments/results/bench_scaling_<backend>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def worker(args) -> dict:
    import jax
    import numpy as np

    from hoijax import data, tracking

    config = tracking.TrackConfig(object_iters=args.object_iters, hand_iters=args.hand_iters,
                                  iof_iters=args.iof_iters)
    seqs = [data.generate_sequence(c) for c in data.tracking_benchmark_configs(
        args.sequences, args.frames, args.image_size)]
    names = [f"s{i}" for i in range(len(seqs))]
    batch = data.stack_sequences(seqs)
    prep = tracking.stack_prepared([tracking.prepare(s, config) for s in seqs])
    keys = jax.numpy.stack([tracking.sequence_key(0, n) for n in names])
    mesh = tracking.sequence_mesh(args.worker)
    model = tracking.ManoSource.synthetic().model("right")

    def run():
        return jax.block_until_ready(tracking.track_batch(
            batch, prep, model, tracking.TrackHyper(), config, keys, mesh=mesh))

    t0 = time.perf_counter()
    res = run()
    first = time.perf_counter() - t0
    warm = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = run()
        warm.append(time.perf_counter() - t0)
    processed = int(np.sum(np.asarray(res.processed)))
    med = statistics.median(warm)
    return {"devices": args.worker, "backend": jax.default_backend(),
            "device_kinds": sorted({d.device_kind for d in mesh.devices.flat}),
            "first_call_s": first, "compile_s_estimate": first - med, "warm_median_s": med,
            "warm_s": warm, "processed_frames": processed,
            "s_per_processed_frame": med / processed}


def host_costs(frames: int, image_size: int, repeats: int) -> dict:
    """Per-sequence host costs: load, prepare (SDF 32³ + samples), bytes on disk / in memory."""
    import tempfile

    import jax
    import numpy as np

    from hoijax import data, tracking

    seq = data.generate_sequence(data.SyntheticConfig(
        seed=0, num_frames=frames, image_size=(image_size, image_size), object_kind="mug"))
    config = tracking.TrackConfig()
    with tempfile.TemporaryDirectory() as tmp:
        path = data.save_sequence(seq, Path(tmp) / "seq")
        disk = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
        load, prep = [], []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            loaded = jax.block_until_ready(data.load_sequence(path))
            load.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            jax.block_until_ready(tracking.prepare(loaded, config, sdf_resolution=32))
            prep.append(time.perf_counter() - t0)
    memory = sum(np.asarray(x).nbytes for x in jax.tree.leaves(seq))
    return {"frames": frames, "image_size": image_size, "mesh_faces": int(seq.mesh.faces.shape[0]),
            "load_s_median": statistics.median(load[1:]),
            "prepare_s_median": statistics.median(prep[1:]), "prepare_s_first": prep[0],
            "disk_bytes": disk, "memory_bytes": memory,
            "disk_bytes_per_frame": disk / frames, "memory_bytes_per_frame": memory / frames}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--frames", type=int, default=11)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--object-iters", type=int, default=200)
    ap.add_argument("--hand-iters", type=int, default=100)
    ap.add_argument("--iof-iters", type=int, default=200)
    ap.add_argument("--forced-cpu", action="store_true",
                    help="split the CPU into N XLA devices (a machine without accelerators)")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--host-frames", type=int, default=60,
                    help="frames of the sequence the host costs are measured on (0: skip)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args)))
        return

    rows = []
    for n in args.devices:
        env = dict(os.environ)
        if args.forced_cpu:
            env.update(JAX_PLATFORMS="cpu",
                       XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        cmd = [sys.executable, __file__, "--worker", str(n),
               *[f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                 if k in ("sequences", "frames", "image_size", "repeats", "object_iters",
                          "hand_iters", "iof_iters")]]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{n} device(s): first call {row['first_call_s']:.1f} s, warm "
              f"{row['warm_median_s']:.2f} s, {row['s_per_processed_frame']:.3f} s per "
              f"processed frame")
    base = rows[0]["warm_median_s"]
    for r in rows:
        r["speedup_vs_first"] = base / r["warm_median_s"]
    host = host_costs(args.host_frames, args.image_size, args.repeats) if args.host_frames else None
    if host:
        print(f"host, per sequence of {host['frames']} frames at {host['image_size']}²: load "
              f"{host['load_s_median']:.2f} s, prepare {host['prepare_s_median']:.2f} s, "
              f"{host['memory_bytes'] / 1e6:.1f} MB in memory, {host['disk_bytes'] / 1e6:.1f} MB "
              "on disk")
    backend = rows[0]["backend"]
    out = args.out or RESULTS / f"bench_scaling_{backend}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rows": rows, "host": host}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
