"""MANO forward and forward+backward throughput: hoijax (JAX) against smplx (PyTorch), same run.

Both run float32 on the same synthetic MANO file and the same machine, one after the other per
batch size. "hoijax" is :func:`hoijax.mano.forward_batch` (default chunking); the plain
``vmap(mano.forward)`` path is reported beside it. Compile time of the jitted JAX programs is reported apart from run time. Results go
to ``experiments/results/bench_mano_<backend>.json`` and a table on stdout. ``--no-smplx`` leaves
the PyTorch reference out (JAX throughput alone, e.g. on a GPU, where smplx would run on the CPU).

    python experiments/bench_mano.py                 # batches 1, 64, 1024
    python experiments/bench_mano.py --batches 1 64 --repeats 10
    python experiments/bench_mano.py --batches 1 1024 16384 --no-smplx
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from _common import package_versions, run_info

from hoijax import mano

RESULTS = Path(__file__).resolve().parent / "results"


def _median_time(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _inputs(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.normal(scale=0.5, size=(batch, 3)).astype(np.float32),
            rng.normal(scale=0.4, size=(batch, 45)).astype(np.float32),
            rng.normal(size=(batch, 10)).astype(np.float32),
            rng.normal(scale=0.1, size=(batch, 3)).astype(np.float32))


def bench_hoijax(model: mano.ManoModel, batch: int, repeats: int, path: str,
                 warmup: int = 2) -> dict:
    """``path="batch"``: :func:`mano.forward_batch`; ``"vmap"``: ``vmap(mano.forward)``."""
    args = tuple(jnp.asarray(a) for a in _inputs(batch))
    probe = jnp.asarray(np.random.default_rng(1).normal(size=(batch, 778, 3)), jnp.float32)

    def fwd(g, h, b, t):
        if path == "batch":
            return mano.forward_batch(model, g, h, b, t).vertices
        return jax.vmap(lambda *a: mano.forward(model, *a).vertices)(g, h, b, t)

    def loss(g, h, b, t):
        return jnp.sum(fwd(g, h, b, t) * probe)

    timings = {}
    for name, fn in (("forward", fwd), ("forward_backward", jax.grad(loss, argnums=(0, 1, 2, 3)))):
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile()
        compile_s = time.perf_counter() - t0
        run_s = _median_time(lambda c=compiled: jax.block_until_ready(c(*args)), repeats,
                             warmup)
        timings[name] = {"compile_s": compile_s, "median_s": run_s, "hands_per_s": batch / run_s}
    return timings


def bench_smplx(path: Path, batch: int, repeats: int) -> dict | None:
    try:
        import smplx
        import torch
    except ImportError:
        return None
    layer = smplx.MANO(str(path), use_pca=False, flat_hand_mean=False, batch_size=batch)
    g, h, b, t = (torch.tensor(a) for a in _inputs(batch))
    probe = torch.tensor(np.random.default_rng(1).normal(size=(batch, 778, 3)).astype(np.float32))

    def fwd():
        with torch.no_grad():
            return layer(global_orient=g, hand_pose=h, betas=b, transl=t).vertices

    def fwd_bwd():
        ins = [x.clone().requires_grad_(True) for x in (g, h, b, t)]
        out = layer(global_orient=ins[0], hand_pose=ins[1], betas=ins[2], transl=ins[3])
        (out.vertices * probe).sum().backward()
        return [x.grad for x in ins]

    return {name: {"median_s": (s := _median_time(fn, repeats)), "hands_per_s": batch / s}
            for name, fn in (("forward", fwd), ("forward_backward", fwd_bwd))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before the repeats")
    parser.add_argument("--no-smplx", dest="smplx", action="store_false",
                        help="skip the smplx (PyTorch) reference")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    model = mano.synthetic_mano("right")
    tmp = Path(tempfile.mkdtemp())
    right_pkl, _ = mano.write_synthetic_mano(tmp)
    backend = jax.default_backend()
    rows = []
    for batch in args.batches:
        ours = bench_hoijax(model, batch, args.repeats, "batch", args.warmup)
        ours_vmap = bench_hoijax(model, batch, args.repeats, "vmap", args.warmup)
        ref = bench_smplx(right_pkl, batch, args.repeats) if args.smplx else None
        row = {"batch": batch, "hoijax": ours, "hoijax_vmap": ours_vmap, "smplx": ref}
        if ref is not None:
            row["speedup"] = {k: ref[k]["median_s"] / ours[k]["median_s"] for k in ours}
        rows.append(row)
        print(_format_row(row), flush=True)

    meta = {
        "benchmark": "mano_forward",
        "run": run_info(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": __import__("os").cpu_count(),
        "jax_backend": backend,
        "devices": [str(d) for d in jax.devices()],
        "versions": package_versions("jax", "jaxlib", "numpy", "torch", "smplx"),
        "dtype": "float32",
        "repeats": args.repeats,
        "model": "synthetic MANO-format hand (778 vertices), axis-angle pose, 10 betas",
        "hoijax_path": "mano.forward_batch(chunk_size=64); hoijax_vmap: jit(vmap(mano.forward))",
        "smplx_path": "smplx.MANO(use_pca=False), torch.no_grad() forward; backward wrt all inputs",
        "torch_threads": _torch_threads() if args.smplx else None,
        "timing": ("compile_s = jit(f).lower(*args).compile(), apart; --warmup untimed calls, "
                   "then the median of --repeats calls with block_until_ready"),
    }
    out = args.out or RESULTS / f"bench_mano_{backend}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def _format_row(row: dict) -> str:
    parts = [f"batch {row['batch']:5d}"]
    for k in ("forward", "forward_backward"):
        ours = row["hoijax"][k]
        s = f"{k}: hoijax {ours['hands_per_s']:10.0f} hands/s"
        if row["smplx"] is not None:
            s += (f", smplx {row['smplx'][k]['hands_per_s']:10.0f} hands/s,"
                  f" ratio {row['speedup'][k]:5.2f}x")
        s += (f" (compile {ours['compile_s']:.2f} s; vmap(forward) path"
              f" {row['hoijax_vmap'][k]['hands_per_s']:.0f} hands/s)")
        parts.append(s)
    return " | ".join(parts)


if __name__ == "__main__":
    main()
