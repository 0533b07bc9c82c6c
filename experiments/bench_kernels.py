"""Rasterizer on the GPU: Pallas kernels (hoijax.kernels) against the pure-JAX binned path.

Per frame, the value and gradient (and, apart, the value alone) of an L2 silhouette loss
``sum((rasterize(...).silhouette - target)²)`` with respect to all scene vertices, through
:func:`hoijax.render.rasterize` with ``backend="pallas"`` and ``backend="jax"``, in the same
run, same settings, same frames.

Scene: the synthetic MANO hand (778 vertices, 1538 faces) palm to the camera at z ≈ 0.45 m and
a procedural can (``hoijax.data.make_object_trimesh("can")``, 1010 vertices, 2016 faces)
standing behind it, partly occluded; the intrinsics scale with the image, so the scene covers
the same fraction of every resolution. Each frame jitters both meshes by a small random rigid
motion; targets are the silhouettes of a further-perturbed copy.

Rows: resolution × batch × backend × kind; batches run as ``jit(vmap(...))``. Compile time
(``jit(f).lower(...).compile()``) is reported apart; then a checked first call (overflow
asserted False), warm-up calls and the median of repeats with ``block_until_ready``. A program
whose temporaries exceed ``--max-temp-gb`` is compiled but not run (reported as skipped).

Physical floor, per frame: the kernels' arithmetic, ``pairs × tile² × ops`` with the
operations per pixel–face counted from the traced kernel code
(:func:`hoijax.kernels.pixel_face_ops`), over the fp32 non-tensor peak; and their memory
traffic (every kernel operand read or written once: per pair its geometry and ids, per pixel
the outputs and cotangents) over the HBM bandwidth. The floor is the larger of the two;
``achieved_fraction`` = floor / measured time per frame (so 1 would be the roofline). The
floor covers the fine stage only (the part the kernels replace), so it is a lower bound for
the whole step. A parity block compares the two backends on the first frame (forward fields
and gradients; ``--parity-frames N``: the first N frames under ``vmap``) and checks each
difference against a float32 tolerance (:data:`PARITY_TOL`): ``pass`` and ``failures``.
``--parity-only`` writes the parity blocks alone (no timings); ``--no-parity`` skips them. A
row or parity block that raises is recorded (``error``) and the run goes on; the script exits 1
when a parity check failed or something raised. The results file is rewritten after every
resolution, so a run stopped early keeps the finished ones (``complete``: false).

    python experiments/bench_kernels.py --out experiments/results/bench_kernels_gpu.json
    python experiments/bench_kernels.py --quick          # CPU smoke test (interpreted kernels)
    python experiments/bench_kernels.py --resolutions 256 --batches 64 --tile-sizes 4 8
    python experiments/bench_kernels.py --parity-only --tile-sizes 4 8 --parity-frames 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from _common import package_versions, run_info
from bench_render import (  # the same scene helpers as the pure-JAX rasterizer benchmark
    FOCAL_PER_PX,
    HAND_DEPTH_M,
    _rotation,
    _temp_gb,
    intrinsics,
    make_frames,
)

from hoijax import kernels, mano, render
from hoijax.data import make_object_trimesh

RESULTS = Path(__file__).resolve().parent / "results"

DEFAULT_PPF = 16
"""Pairs per face (the library default); raised where a resolution needs more."""
CAPACITY_MARGIN = 1.15
"""pairs_per_face >= the most pairs any frame needs × this, / F."""
PEAKS = {"H100": (60e12, 3.35e12), "H200": (60e12, 4.8e12)}
"""fp32 non-tensor FLOP/s and HBM bytes/s by device kind (``--peak-*`` override)."""
BACKENDS = ("pallas", "jax")
KINDS = ("value_and_grad", "forward")
PARITY_TOL = {
    "max_abs_diff_silhouette": 1e-4,
    "max_abs_diff_visible": 1e-4,
    "max_abs_diff_alpha": 1e-4,
    "face_id_mismatch_fraction": 1e-3,
    "max_abs_diff_depth_m_where_both_covered": 1e-4,
    "grad_max_abs_diff_over_max_abs": 1e-3,
}
"""Pallas vs pure JAX, float32, upper bounds of :func:`parity`'s entries. Looser than the CPU
tests' (1e-5 on fields and gradients, interpreted kernels on small scenes): on a GPU the two
paths round differently (Triton vs XLA fusions, FMA contraction, the pure-JAX path's
scatter-adds in no fixed order), and a z-buffer near-tie may flip a pixel's face. A wrong
kernel differs by O(0.1-1). Not yet checked against a GPU run."""


# --------------------------------------------------------------------------- scene


def build_scene():
    """Rest scene: (hand vertices, hand faces, object vertices, object faces), camera frame."""
    model = mano.synthetic_mano("right")
    out = mano.forward(model, jnp.zeros(3), jnp.zeros(45), jnp.zeros(10))
    # MANO-like frame (fingers along -x, dorsal +y) -> camera: fingers up, palm to the camera.
    R = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)
    hand = np.asarray(out.vertices, float) @ R.T
    hand = hand - 0.5 * (hand.max(0) + hand.min(0)) + [0.0, 0.0, HAND_DEPTH_M]
    can = make_object_trimesh("can")  # axis along x
    obj = np.asarray(can.vertices) @ _rotation(np.array([0, 0, np.pi / 2])).T  # axis along y
    obj = obj + [0.045, 0.015, HAND_DEPTH_M + 0.05]  # behind the thumb side of the palm
    return hand, np.asarray(model.faces), obj, np.asarray(can.faces)


# --------------------------------------------------------------------------- programs


def _rasterize(settings, consts, backend):
    faces, K, fmi = consts
    return lambda verts: render.rasterize(verts, faces, K, settings, face_mesh_id=fmi,
                                          num_meshes=2, backend=backend)


def step_fn(settings, consts, backend: str, kind: str):
    """Batched ``(verts (B, V, 3), target (B, 2, H, W)) -> ((loss (B,), overflow (B,)), grad)``
    for ``value_and_grad``, ``(loss, overflow)`` for ``forward``."""
    ras = _rasterize(settings, consts, backend)

    def loss(verts, target):
        r = ras(verts)
        return jnp.sum((r.silhouette - target) ** 2), r.overflow

    one = jax.value_and_grad(loss, has_aux=True) if kind == "value_and_grad" else loss
    return jax.vmap(one)


def time_fn(fn, args, *, repeats: int, warmup: int, budget_s: float, max_temp_gb: float):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    temp_gb = _temp_gb(compiled)
    if temp_gb is not None and temp_gb > max_temp_gb:
        return {"compile_s": compile_s, "temp_gb": temp_gb,
                "skipped": f"needs {temp_gb:.1f} GB of temporaries (> --max-temp-gb)"}
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    first_s = time.perf_counter() - t0
    (loss, overflow) = out[0] if isinstance(out[0], tuple) else out
    if bool(np.any(np.asarray(overflow))):
        raise AssertionError("pair list overflowed on some frame: raise pairs_per_face")
    loss = float(np.sum(np.asarray(loss)))
    del out
    n = max(3, min(repeats, int(budget_s // max(first_s, 1e-6))))
    for _ in range(warmup if first_s < 1.0 else 0):
        jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "temp_gb": temp_gb, "first_call_s": first_s,
            "median_s": statistics.median(times), "times_s": times, "repeats": n,
            "loss": loss}


# --------------------------------------------------------------------------- floors


def pairs_needed(verts, consts, size: int, tile: int) -> np.ndarray:
    """(face, tile) pairs each frame needs (the fine stage is dead code here: cheap)."""
    s = render.RasterSettings(size, size, tile_size=tile, pairs_per_face=1)
    fn = jax.jit(jax.vmap(lambda v: _rasterize(s, consts, "jax")(v).num_pairs))
    return np.asarray(fn(verts))


def kernel_floor(pairs: float, size: int, tile: int, ops: dict, kind: str,
                 peak_flops: float, peak_bw: float) -> dict:
    """Arithmetic and memory floors of the fine stage per frame (float32, two meshes)."""
    M, lanes = 2, tile * tile
    tiles = math.ceil(size / tile) ** 2
    per_pair_ops = ops["forward"] + (ops["backward"] if kind == "value_and_grad" else 0)
    flops = pairs * lanes * per_pair_ops
    # Forward: per pair 10 floats + 2 ints; per pixel 2M floats + 1 int out; offsets.
    fwd_bytes = pairs * 12 * 4 + tiles * lanes * (2 * M + 1) * 4 + (tiles + 1) * 4
    # Backward: per pair 6 floats + 1 int in, 7 floats out; per pixel M cotangents.
    bwd_bytes = pairs * 14 * 4 + tiles * lanes * M * 4 + (tiles + 1) * 4
    nbytes = fwd_bytes + (bwd_bytes if kind == "value_and_grad" else 0)
    t_flops, t_bytes = flops / peak_flops, nbytes / peak_bw
    return {"floor_flops": flops, "floor_bytes": nbytes, "floor_compute_s": t_flops,
            "floor_memory_s": t_bytes, "floor_s": max(t_flops, t_bytes),
            "floor_bound": "compute" if t_flops >= t_bytes else "memory"}


# --------------------------------------------------------------------------- parity


def parity(settings, consts, verts, target) -> dict:
    """Both backends on one frame (``verts`` (V, 3)) or a batch under ``vmap`` (``verts``
    (B, V, 3)): largest differences of the forward fields and gradients, each checked against
    :data:`PARITY_TOL` (``pass``, ``failures``)."""
    out = {}
    for b in BACKENDS:
        ras = _rasterize(settings, consts, b)
        if verts.ndim == 3:
            ras = jax.vmap(ras)
        r = jax.jit(ras)(verts)
        g = jax.jit(jax.grad(lambda v, ras=ras: jnp.sum((ras(v).silhouette - target) ** 2)))(
            verts)
        out[b] = (jax.device_get(r), np.asarray(g))
    (a, ga), (b, gb) = out["jax"], out["pallas"]
    both = (np.asarray(a.face_id) >= 0) & (np.asarray(b.face_id) >= 0)
    res = {f"max_abs_diff_{k}": float(np.max(np.abs(np.asarray(getattr(a, k))
                                                    - np.asarray(getattr(b, k)))))
           for k in ("silhouette", "visible", "alpha")}
    res["face_id_mismatch_fraction"] = float(np.mean(np.asarray(a.face_id)
                                                     != np.asarray(b.face_id)))
    res["max_abs_diff_depth_m_where_both_covered"] = float(
        np.max(np.abs(np.asarray(a.depth) - np.asarray(b.depth))[both], initial=0.0))
    res["grad_max_abs_diff_over_max_abs"] = float(np.max(np.abs(ga - gb))
                                                  / max(np.max(np.abs(ga)), 1e-30))
    res["frames"] = int(verts.shape[0]) if verts.ndim == 3 else 1
    res["tolerances"] = dict(PARITY_TOL)
    res["failures"] = [k for k, tol in PARITY_TOL.items()
                       if not (math.isfinite(res[k]) and res[k] <= tol)]
    res["pass"] = not res["failures"]
    return res


# --------------------------------------------------------------------------- benchmark


def bench_resolution(size, tile, batches, opts, scene, ops, peaks, log):
    hand, hf, obj, of = scene
    sc = render.Scene.from_meshes([hand.astype(np.float32), obj.astype(np.float32)], [hf, of])
    consts = (sc.faces, jnp.asarray(intrinsics(size)), sc.face_mesh_id)
    F = int(sc.faces.shape[0])
    verts_np, tverts_np = make_frames(hand, obj, max(batches))
    verts = jnp.asarray(verts_np)
    need = pairs_needed(verts, consts, size, tile)
    ppf = max(DEFAULT_PPF, math.ceil(CAPACITY_MARGIN * need.max() / F))
    st = render.RasterSettings(size, size, tile_size=tile, pairs_per_face=ppf)
    tsil = jax.jit(jax.vmap(lambda v: _rasterize(st, consts, "jax")(v).silhouette))
    target = tsil(jnp.asarray(tverts_np))
    info = {"resolution": size, "tile_size": tile, "pairs_per_face": ppf,
            "pair_capacity": st.pair_capacity(F), "num_faces": F,
            "pairs_needed_max": int(need.max()), "pairs_needed_mean": float(need.mean()),
            "coverage": float(np.mean(np.asarray(target[:, 0]) > 0.5)
                              + np.mean(np.asarray(target[:, 1]) > 0.5))}
    log(f"  {size}² tile {tile}: pairs needed max {need.max()} (ppf {ppf})")
    if opts.parity:
        n = opts.parity_frames
        t0 = time.perf_counter()
        try:
            p = parity(st, consts, verts[0] if n == 1 else verts[:n],
                       target[0] if n == 1 else target[:n])
        except Exception as e:  # noqa: BLE001 (recorded; the other resolutions still run)
            p = {"error": f"{type(e).__name__}: {e}", "failures": ["error"], "pass": False}
        p["wall_s"] = time.perf_counter() - t0
        info["parity_first_frame" if n == 1 else "parity"] = p
        log(f"  {size}² tile {tile}: parity {'PASS' if p['pass'] else 'FAIL'} "
            + json.dumps({k: v for k, v in p.items() if k != "tolerances"}))
    rows = []
    for batch in (() if opts.parity_only else batches):
        args = (verts[:batch], target[:batch])
        for kind in opts.kinds:
            floor = kernel_floor(float(need[:batch].mean()), size, tile, ops, kind, *peaks)
            for backend in BACKENDS:
                try:
                    t = time_fn(step_fn(st, consts, backend, kind), args, repeats=opts.repeats,
                                warmup=opts.warmup, budget_s=opts.budget_s,
                                max_temp_gb=opts.max_temp_gb)
                except Exception as e:  # noqa: BLE001 (recorded; the other rows still run)
                    t = {"error": f"{type(e).__name__}: {e}"}
                row = {"resolution": size, "tile_size": tile, "pairs_per_face": ppf,
                       "batch": batch, "backend": backend, "kind": kind, **t, **floor}
                if "median_s" in t:
                    row["per_frame_s"] = t["median_s"] / batch
                    row["achieved_fraction"] = floor["floor_s"] / row["per_frame_s"]
                rows.append(row)
                log(_format_row(row))
    return rows, info


def _format_row(r: dict) -> str:
    head = (f"{r['resolution']:4d}² t{r['tile_size']} b{r['batch']:<4d} {r['backend']:<7s} "
            f"{r['kind']:<15s}")
    if "error" in r:
        return f"{head} ERROR: {r['error'][:300]}"
    if "median_s" not in r:
        return f"{head} SKIPPED: {r['skipped']} (compile {r['compile_s']:.1f} s)"
    return (f"{head} frame {r['per_frame_s'] * 1e6:10.1f} µs  call {r['median_s'] * 1e3:9.2f} ms"
            f"  compile {r['compile_s']:6.2f} s  floor {r['floor_s'] * 1e6:8.2f} µs "
            f"({r['floor_bound']})  achieved {r['achieved_fraction']:.2e}  n={r['repeats']}")


def _speedups(rows) -> list[str]:
    lines = ["", "pallas vs jax, time per frame (jax / pallas):"]
    key = lambda r: (r["resolution"], r["tile_size"], r["batch"], r["kind"])  # noqa: E731
    timed = {(key(r), r["backend"]): r for r in rows if "per_frame_s" in r}
    for (k, b), r in sorted(timed.items()):
        if b == "pallas" and (k, "jax") in timed:
            j = timed[(k, "jax")]
            lines.append(f"  {k[0]:4d}² t{k[1]} b{k[2]:<4d} {k[3]:<15s} pallas "
                         f"{r['per_frame_s'] * 1e6:9.1f} µs  jax {j['per_frame_s'] * 1e6:9.1f} µs"
                         f"  speedup {j['per_frame_s'] / r['per_frame_s']:6.2f}x")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--tile-sizes", type=int, nargs="+", default=[4])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--repeats", type=int, default=20, help="timed calls (median)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=20.0,
                        help="repeats shrink to fit this per row (never below 3)")
    parser.add_argument("--max-temp-gb", type=float, default=48.0,
                        help="skip a compiled program whose temporaries exceed this")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="fp32 non-tensor peak (default by device: H100/H200 60)")
    parser.add_argument("--peak-tbps", type=float, default=None,
                        help="memory bandwidth (default by device: H100 3.35, H200 4.8)")
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke test: 32², batches 1 and 2, 3 repeats (the kernels "
                             "run interpreted)")
    parser.add_argument("--parity-only", action="store_true",
                        help="only the parity blocks (no timings)")
    parser.add_argument("--no-parity", dest="parity", action="store_false",
                        help="skip the parity blocks")
    parser.add_argument("--parity-frames", type=int, default=1,
                        help="frames compared (more than 1: under vmap, as the timed rows)")
    parser.add_argument("--out", type=Path, default=None)
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.resolutions, opts.batches, opts.repeats, opts.warmup = [32], [1, 2], 3, 1
    if opts.parity_only and not opts.parity:
        parser.error("--parity-only and --no-parity exclude each other")
    if opts.parity_frames < 1:
        parser.error("--parity-frames must be >= 1")
    if opts.parity_only:  # frames made = the largest batch; the parity takes the first ones
        opts.batches = [opts.parity_frames]
    elif opts.parity and opts.parity_frames > max(opts.batches):
        parser.error("--parity-frames exceeds the largest batch")

    backend = jax.default_backend()
    kind_name = jax.devices()[0].device_kind
    peak = next((v for k, v in PEAKS.items() if k in kind_name), PEAKS["H100"])
    peaks = (opts.peak_tflops * 1e12 if opts.peak_tflops else peak[0],
             opts.peak_tbps * 1e12 if opts.peak_tbps else peak[1])
    ops = kernels.pixel_face_ops(num_meshes=2)
    print(f"device {kind_name} ({backend}); floor peaks {peaks[0] / 1e12:.0f} TFLOP/s fp32, "
          f"{peaks[1] / 1e12:.2f} TB/s; ops per pixel-face {ops}", flush=True)
    if backend != "gpu":
        print("NOTE: not a GPU: the Pallas kernels run in the interpreter (smoke test only; "
              "timings and achieved fractions are meaningless)", flush=True)
    scene = build_scene()
    t_start, load_start = time.perf_counter(), list(os.getloadavg())
    out = opts.out or RESULTS / f"bench_kernels_{backend}{'_quick' if opts.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    info_run = run_info()
    rows, infos, lines = [], [], []

    def write(complete: bool) -> None:
        meta = {
            "benchmark": ("raster_kernels_parity" if opts.parity_only
                          else "raster_kernels_pallas_vs_jax"),
            "complete": complete,
            "run": info_run,
            "machine": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "jax_backend": backend,
            "device_kind": kind_name,
            "devices": [str(d) for d in jax.devices()],
            "versions": package_versions("jax", "jaxlib", "jax-cuda12-plugin",
                                         "jax-cuda12-pjrt", "jax-cuda13-plugin",
                                         "jax-cuda13-pjrt", "numpy", "trimesh", "equinox"),
            "interpreted_kernels": backend != "gpu",
            "dtype": "float32",
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
            "load_average_at_start": load_start,
            "load_average_at_end": list(os.getloadavg()),
            "wall_s": time.perf_counter() - t_start,
            "scene": ("synthetic MANO right hand (778 v, 1538 f), rest pose, palm to the camera "
                      f"at z={HAND_DEPTH_M} m + make_object_trimesh('can') (1010 v, 2016 f) "
                      "behind it; per frame a random rigid jitter (4 deg, 5 mm) of each mesh"),
            "intrinsics": f"fx = fy = {FOCAL_PER_PX} * size, c = size/2 - 0.5",
            "loss": ("sum((rasterize(..., backend).silhouette - target)**2), both meshes, sigma "
                     "1 px², eps 1e-4; value_and_grad wrt all vertices (kind value_and_grad) or "
                     "the value alone (forward); jit(vmap(.)) over the batch"),
            "timing": ("compile_s = jit(f).lower(*args).compile(), apart; one checked call "
                       "(overflow asserted False), warm-up, median of max(3, min(--repeats, "
                       "--budget-s / first call)) calls with block_until_ready"),
            "floor": ("fine stage only, per frame: flops = mean pairs needed x tile² x ops per "
                      "pixel-face (kernels.pixel_face_ops: forward, + backward for "
                      "value_and_grad; each primitive 1 op, FMA = 2) / peak fp32; bytes = kernel "
                      "operands touched once / HBM bandwidth; floor_s = max; achieved_fraction = "
                      "floor_s / per_frame_s"),
            "parity": ("parity_first_frame (--parity-frames 1) or parity (the first N frames "
                       "under vmap): pallas vs jax on the same frames and targets; each entry "
                       "<= its tolerance (PARITY_TOL) -> pass"),
            "ops_per_pixel_face": ops,
            "peak_flops": peaks[0],
            "peak_bytes_per_s": peaks[1],
            "scene_stats": infos,
            "speedup_lines": lines[2:],
        }
        out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))

    for tile in opts.tile_sizes:
        for size in opts.resolutions:
            r, info = bench_resolution(size, tile, sorted(set(opts.batches)), opts, scene, ops,
                                       peaks, lambda s: print(s, flush=True))
            rows += r
            infos.append(info)
            write(complete=False)
    lines = _speedups(rows)
    print("\n".join(lines))
    write(complete=True)
    print(f"wrote {out}")
    checks = [i.get("parity_first_frame", i.get("parity")) for i in infos]
    failed = [(i["resolution"], i["tile_size"], c["failures"])
              for i, c in zip(infos, checks, strict=True) if c is not None and not c["pass"]]
    errors = [r for r in rows if "error" in r]
    if failed:
        print(f"PARITY FAILED (resolution, tile, entries): {failed}", flush=True)
    if errors:
        print(f"{len(errors)} row(s) raised (recorded under 'error')", flush=True)
    return 1 if failed or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
