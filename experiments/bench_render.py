"""Binned rasterizer against dense O(H·W·F) JAX: value+grad of an L2 silhouette loss, same run.

Scene: the synthetic MANO hand (778 vertices, 1538 faces) facing the camera at z ≈ 0.45 m and a
capsule "can" (7 cm wide, 12 cm tall; 1026 vertices, 2048 faces) standing behind it, partly
occluded: 3586 faces in all. The intrinsics scale with the image so the hand covers about 22 %
and the object about 9 % of the pixels at every resolution. Each frame jitters the hand and the
object by a small random rigid motion; its target is the per-mesh soft silhouette of a further
perturbed copy, so the loss ``sum((silhouette - target)²)`` and its gradient with respect to all
scene vertices are non-trivial.

Paths, each a jitted ``value_and_grad`` (compile time reported apart from run time):

* ``binned_t<T>_ppf<N>``: :func:`hoijax.render.rasterize` with ``RasterSettings(tile_size=T,
  pairs_per_face=N)``; the overflow flag of every frame is returned and asserted False.
  Batches run as ``vmap`` over frames and as ``lax.map(batch_size=8)`` (both reported; the
  faster one is marked). A program whose temporaries exceed ``--max-temp-gb`` is compiled but
  not run, and reported as skipped: ``vmap`` over 64 frames needs about 25 GB.
* ``dense_banded<r>``: the dense O(H·W·F) loss of :func:`hoijax.render.soft_silhouette_dense`
  (every pixel against every face), its value+grad accumulated over bands of ``r`` image rows
  in a ``lax.scan`` so one band's residuals are alive at a time.
* ``dense``: plain ``jax.value_and_grad`` of the whole-image ``soft_silhouette_dense``; its
  backward keeps H·W·F residuals (about 7 GB at 128²), so it is slower and, past
  ``--max-temp-gb``, skipped (256²). The forward-only dense row is this one.

Dense runs at batch 1 only; ratios use the faster measured dense value+grad, and dense at
batch > 1 is *extrapolated* as batch × that batch-1 time, labelled so.

Also: forward-only (loss value) timings at batch 1 for the default binned path and dense, a tile
size sweep at batch 1, and work counts (pixel–face evaluations: binned = pair capacity × T²,
as computed; "needed" = pairs the scene needs × T²; dense = H·W·F). Results go to
``experiments/results/bench_render_<backend>.json`` and a table on stdout.

    python experiments/bench_render.py                  # 128² and 256², batches 1 and 64
    python experiments/bench_render.py --quick          # 128², batch 1 and 8 (…_quick.json)
    python experiments/bench_render.py --resolutions 256 --batches 1 --repeats 5
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
import trimesh

from _common import package_versions

from hoijax import mano, render

RESULTS = Path(__file__).resolve().parent / "results"

FOCAL_PER_PX = 1.8
"""fx = fy = FOCAL_PER_PX · width: the scene covers the same fraction of any resolution."""
HAND_DEPTH_M = 0.45
DEFAULT_TILE, DEFAULT_PPF = 4, 16  # the library defaults (RasterSettings)
SWEEP_TILES = (4, 8, 16)
CAPACITY_MARGIN = 1.15
"""The sweep's pairs_per_face: the most pairs any frame needs, times this, rounded up."""
LAX_MAP_CHUNK = 8


def _times(fn, repeats: int, warmup: int = 2, first: tuple[float, ...] = ()) -> list[float]:
    """Wall times of ``repeats`` calls after ``warmup`` calls; ``first``: samples already taken."""
    for _ in range(warmup):
        fn()
    times = list(first)
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


# --------------------------------------------------------------------------- scene


def _rotation(axis_angle: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(axis_angle))
    if angle == 0.0:
        return np.eye(3)
    return trimesh.transformations.rotation_matrix(angle, axis_angle / angle)[:3, :3]


def build_scene():
    """Rest scene: (hand vertices, hand faces, object vertices, object faces), camera frame."""
    model = mano.synthetic_mano("right")
    out = mano.forward(model, jnp.zeros(3), jnp.zeros(45), jnp.zeros(10))
    # MANO-like frame (fingers along -x, dorsal +y) -> camera: fingers up, palm to the camera.
    R = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)
    hand = np.asarray(out.vertices, float) @ R.T
    hand = hand - 0.5 * (hand.max(0) + hand.min(0)) + [0.0, 0.0, HAND_DEPTH_M]
    can = trimesh.creation.capsule(height=0.05, radius=0.033, count=[32, 32])
    obj = np.asarray(can.vertices) @ _rotation(np.array([np.pi / 2, 0, 0])).T  # axis along y
    obj = obj + [0.045, 0.015, HAND_DEPTH_M + 0.05]  # behind the thumb side of the palm
    return hand, np.asarray(model.faces), obj, np.asarray(can.faces)


def _jitter(verts: np.ndarray, rng, rot_deg: float, trans_m: float) -> np.ndarray:
    centre = verts.mean(0)
    R = _rotation(np.deg2rad(rot_deg) * rng.normal(size=3))
    return (verts - centre) @ R.T + centre + trans_m * rng.normal(size=3)


def make_frames(hand, obj, batch: int, seed: int = 0):
    """(frames, targets_scene): per frame, jittered scene vertices and a further-perturbed copy."""
    rng = np.random.default_rng(seed)
    frames, targets = [], []
    for _ in range(batch):
        h, o = _jitter(hand, rng, 4.0, 0.005), _jitter(obj, rng, 4.0, 0.005)
        frames.append(np.concatenate([h, o]))
        targets.append(np.concatenate([_jitter(h, rng, 2.0, 0.003), _jitter(o, rng, 2.0, 0.003)]))
    return np.stack(frames).astype(np.float32), np.stack(targets).astype(np.float32)


def intrinsics(size: int) -> np.ndarray:
    f = FOCAL_PER_PX * size
    return np.array([[f, 0, size / 2 - 0.5], [0, f, size / 2 - 0.5], [0, 0, 1]], np.float32)


# --------------------------------------------------------------------------- losses


def binned_silhouette(settings):
    def sil(verts, faces, K, face_mesh_id):
        r = render.rasterize(verts, faces, K, settings, face_mesh_id=face_mesh_id, num_meshes=2)
        return r.silhouette, r.overflow
    return sil


def dense_silhouette(size: int):
    def sil(verts, faces, K, face_mesh_id):
        s = render.soft_silhouette_dense(verts, faces, K, size, size,
                                         face_mesh_id=face_mesh_id, num_meshes=2)
        return s, jnp.zeros((), bool)
    return sil


def dense_banded_value_and_grad(size: int, band_pixels: int):
    """Dense value+grad accumulated over bands of image rows, one band at a time.

    The same O(H·W·F) arithmetic as ``value_and_grad`` of the plain dense loss, but each band's
    gradient is taken inside a ``lax.scan``, so only one band's pixel–face residuals are alive
    (``jax.value_and_grad`` of the whole image keeps H·W·F of them: 7 GB at 128², ~30 GB at
    256²). A band is rendered by :func:`soft_silhouette_dense` with the principal point shifted
    by the band's first row, which is the same pixel grid.
    """
    rows = max(1, band_pixels // size)
    while size % rows:
        rows -= 1
    n_bands = size // rows

    def band_loss(verts, t_band, r0, faces, K, fmi):
        Kb = K.at[1, 2].add(-r0.astype(K.dtype))
        s = render.soft_silhouette_dense(verts, faces, Kb, rows, size, face_mesh_id=fmi,
                                         num_meshes=2, pixel_chunk=rows * size)
        return jnp.sum((s - t_band) ** 2)

    band_vg = jax.value_and_grad(band_loss)

    def vg(verts, target, faces, K, fmi):
        bands = target.reshape(2, n_bands, rows, size).transpose(1, 0, 2, 3)

        def body(carry, x):
            loss, grad = band_vg(verts, x[0], x[1], faces, K, fmi)
            return (carry[0] + loss, carry[1] + grad), None

        init = (jnp.zeros((), verts.dtype), jnp.zeros_like(verts))
        (loss, grad), _ = jax.lax.scan(body, init, (bands, jnp.arange(n_bands) * rows))
        return (loss, jnp.zeros((), bool)), grad

    return vg, rows


def loss_fns(sil_fn):
    """(forward, value_and_grad) for one frame: ``(verts, target, faces, K, fmi)``."""
    def loss(verts, target, faces, K, fmi):
        s, overflow = sil_fn(verts, faces, K, fmi)
        return jnp.sum((s - target) ** 2), overflow

    return loss, jax.value_and_grad(loss, has_aux=True)


def batched(fn, path: str):
    """Batch a per-frame function over (verts, target): ``vmap`` or ``lax.map`` chunks."""
    if path == "single":
        return fn

    def run(verts, target, faces, K, fmi):
        one = lambda x: fn(x[0], x[1], faces, K, fmi)  # noqa: E731
        if path == "vmap":
            return jax.vmap(one)((verts, target))
        return jax.lax.map(one, (verts, target), batch_size=LAX_MAP_CHUNK)
    return run


def _overflowed(out) -> bool:
    """Overflow flags of ``(loss, overflow)`` or ``((loss, overflow), grad)``, any frame."""
    overflow = out[0][1] if isinstance(out[0], tuple) else out[1]
    return bool(np.any(np.asarray(overflow)))


def time_fn(fn, args, *, repeats: int, max_temp_gb: float, warmup: int = 2,
            budget_s: float | None = None, min_repeats: int = 1) -> dict:
    """Compile (timed apart), check overflow on a first call, then the median of repeats.

    Calls slower than a second need no warm-up: the checked call is the first sample (this
    keeps the dense rows affordable), and with ``budget_s`` the repeats shrink to fit it
    (never below ``min_repeats``).
    """
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    temp_gb = _temp_gb(compiled)
    if temp_gb is not None and temp_gb > max_temp_gb:
        return {"compile_s": compile_s, "temp_gb": temp_gb, "skipped":
                f"needs {temp_gb:.1f} GB of temporaries (> --max-temp-gb {max_temp_gb:g})"}
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    first_s = time.perf_counter() - t0
    if _overflowed(out):
        raise AssertionError("rasterizer pair list overflowed on some frame: raise pairs_per_face")
    loss = out[0][0] if isinstance(out[0], tuple) else out[0]
    loss = float(np.sum(np.asarray(loss)))  # summed over frames
    del out
    first = ()
    if first_s > 1.0:
        warmup, first = 0, (first_s,)
        if budget_s is not None:
            repeats = max(min_repeats, min(repeats, int(budget_s // first_s)))
    times = _times(lambda: jax.block_until_ready(compiled(*args)), repeats, warmup, first)
    return {"compile_s": compile_s, "temp_gb": temp_gb, "first_call_s": first_s,
            "median_s": statistics.median(times), "times_s": times, "repeats": repeats,
            "overflow": False, "loss": loss, "loadavg_1m": os.getloadavg()[0]}


def _temp_gb(compiled) -> float | None:
    try:
        mem = compiled.memory_analysis()
        return None if mem is None else mem.temp_size_in_bytes / 1e9
    except Exception:  # noqa: BLE001 (not every backend reports it)
        return None


# --------------------------------------------------------------------------- benchmark


def pairs_needed(verts, faces, K, fmi, size: int, tile: int) -> np.ndarray:
    """(face, tile) pairs each frame needs (the fine stage is dead code here, so it is cheap)."""
    s = render.RasterSettings(size, size, tile_size=tile, pairs_per_face=1)
    fn = jax.jit(jax.vmap(lambda v: render.rasterize(v, faces, K, s, face_mesh_id=fmi,
                                                     num_meshes=2).num_pairs))
    return np.asarray(fn(verts))


def targets_for(target_verts, faces, K, fmi, size: int) -> np.ndarray:
    settings = render.RasterSettings(size, size, tile_size=8, pairs_per_face=16)
    out = []
    for v in target_verts:
        r, _ = render.rasterize_checked(v, faces, K, settings, num_meshes=2, face_mesh_id=fmi)
        out.append(np.asarray(r.silhouette))
    return np.stack(out).astype(np.float32)


def bench_resolution(size: int, batches, opts, scene, log) -> tuple[list[dict], dict]:
    hand, hf, obj, of = scene
    sc = render.Scene.from_meshes([hand.astype(np.float32), obj.astype(np.float32)], [hf, of])
    faces, fmi = sc.faces, sc.face_mesh_id
    F = int(faces.shape[0])
    K = jnp.asarray(intrinsics(size))
    verts_np, tverts_np = make_frames(hand, obj, max(batches))
    verts = jnp.asarray(verts_np)
    target = jnp.asarray(targets_for(tverts_np, faces, K, fmi, size))
    consts = (faces, K, fmi)
    args1 = (verts[0], target[0], *consts)
    tf = dict(max_temp_gb=opts.max_temp_gb)

    info = {"resolution": size, "num_faces": F, "num_verts": int(verts.shape[1]),
            "K": intrinsics(size).tolist(),
            "coverage_hand": float((np.asarray(target)[:, 0] > 0.5).mean()),
            "coverage_object": float((np.asarray(target)[:, 1] > 0.5).mean()),
            "pairs_needed": {}}
    for t in SWEEP_TILES:
        need = pairs_needed(verts, faces, K, fmi, size, t)
        info["pairs_needed"][t] = {"max": int(need.max()), "mean": float(need.mean()),
                                   "per_face_max": float(need.max() / F)}
    dense_evals = size * size * F
    rows = []
    dense = {}  # kind -> the fastest measured dense batch-1 row

    def add(path, batch, kind, tile, ppf, t, batching, extrapolated=False):
        row = {"resolution": size, "batch": batch, "path": path, "kind": kind,
               "batching": batching, "tile_size": tile, "pairs_per_face": ppf,
               "extrapolated": extrapolated, **t}
        if "median_s" in t:
            row["per_frame_s"] = t["median_s"] / batch
        if tile is not None:
            cap = ppf * F
            row["pair_capacity"] = cap
            row["pairs_needed_max"] = info["pairs_needed"][tile]["max"]
            row["pixel_face_evals"] = cap * tile * tile
            row["pixel_face_evals_needed"] = info["pairs_needed"][tile]["max"] * tile * tile
        else:
            row["pixel_face_evals"] = dense_evals
        row["dense_pixel_face_evals"] = dense_evals
        row["work_ratio_dense_over_this"] = dense_evals / row["pixel_face_evals"]
        d = dense.get(kind)
        if d is not None and "per_frame_s" in row and not path.startswith("dense"):
            row["ratio_vs_dense_per_frame"] = d["median_s"] / row["per_frame_s"]
            row["ratio_vs_dense_path"] = d["path"]
        rows.append(row)
        log(_format_row(row))
        return row

    # Dense, batch 1 (measured): the banded value+grad, the plain value+grad of
    # soft_silhouette_dense (skipped where its temporaries do not fit), and the forward.
    banded_vg, band_rows = dense_banded_value_and_grad(size, opts.dense_band_pixels)
    dense_fwd, dense_vg = loss_fns(dense_silhouette(size))
    measured = [add(f"dense_banded{band_rows}", 1, "value_and_grad", None, None,
                    time_fn(banded_vg, args1, repeats=opts.dense_repeats, warmup=1, **tf),
                    "single")]
    if opts.plain_dense:
        measured.append(add("dense", 1, "value_and_grad", None, None,
                            time_fn(dense_vg, args1, repeats=1, warmup=1, **tf), "single"))
    dense["value_and_grad"] = min((r for r in measured if "median_s" in r),
                                  key=lambda r: r["median_s"])
    dense["forward"] = add("dense", 1, "forward", None, None,
                           time_fn(dense_fwd, args1, repeats=opts.dense_fwd_repeats, warmup=1,
                                   **tf), "single")

    # Binned at the default tile and capacity: every batch; forward only at batch 1.
    st = render.RasterSettings(size, size, tile_size=DEFAULT_TILE, pairs_per_face=DEFAULT_PPF)
    b_fwd, b_vg = loss_fns(binned_silhouette(st))
    main_path = f"binned_t{DEFAULT_TILE}_ppf{DEFAULT_PPF}"
    for batch in batches:
        if batch == 1:
            for kind, fn in (("forward", b_fwd), ("value_and_grad", b_vg)):
                add(main_path, 1, kind, DEFAULT_TILE, DEFAULT_PPF,
                    time_fn(fn, args1, repeats=opts.repeats, **tf), "single")
            continue
        argsb = (verts[:batch], target[:batch], *consts)
        for how in ("vmap", "lax_map"):
            label = "vmap" if how == "vmap" else f"lax.map(batch_size={LAX_MAP_CHUNK})"
            add(main_path, batch, "value_and_grad", DEFAULT_TILE, DEFAULT_PPF,
                time_fn(batched(b_vg, how), argsb, repeats=opts.repeats,
                        budget_s=opts.batch_budget_s, min_repeats=3, **tf), label)

    # Tile sweep at batch 1, each tile with the capacity this scene needs (plus a margin).
    if opts.sweep:
        for tile in SWEEP_TILES:
            ppf = math.ceil(CAPACITY_MARGIN * info["pairs_needed"][tile]["max"] / F)
            s = render.RasterSettings(size, size, tile_size=tile, pairs_per_face=ppf)
            _, vg = loss_fns(binned_silhouette(s))
            add(f"binned_t{tile}_ppf{ppf}", 1, "value_and_grad", tile, ppf,
                time_fn(vg, args1, repeats=opts.repeats, **tf), "single")

    # Dense at larger batches: EXTRAPOLATED from the fastest measured batch-1 dense, never run.
    d1 = dense["value_and_grad"]
    for batch in batches:
        if batch > 1:
            add(f"{d1['path']}_extrapolated", batch, "value_and_grad", None, None,
                {"compile_s": d1["compile_s"], "median_s": batch * d1["median_s"],
                 "note": f"EXTRAPOLATED: {batch} x the measured batch-1 {d1['path']} time; "
                         "not run"}, "extrapolated", extrapolated=True)
    _mark_best(rows)
    return rows, info


def _mark_best(rows):
    """Mark the faster of vmap / lax.map per (resolution, batch, path, kind)."""
    groups = {}
    for r in rows:
        if r["path"].startswith("binned") and r["batch"] > 1 and "median_s" in r:
            groups.setdefault((r["resolution"], r["batch"], r["path"], r["kind"]), []).append(r)
    for g in groups.values():
        best = min(g, key=lambda r: r["median_s"])
        for r in g:
            r["fastest_batching"] = r is best


def _format_row(r: dict) -> str:
    head = (f"{r['resolution']:4d}² b{r['batch']:<3d} {r['path']:<28s} {r['kind']:<14s} "
            f"{(r['batching'] or ''):<21s}")
    if "median_s" not in r:
        return f"{head} SKIPPED: {r.get('skipped')} (compile {r['compile_s']:.2f} s)"
    s = (f"{head} call {r['median_s']:9.3f} s  frame {r['per_frame_s'] * 1e3:9.1f} ms"
         f"  compile {r['compile_s']:5.2f} s  work÷ {r['work_ratio_dense_over_this']:6.1f}")
    if "ratio_vs_dense_per_frame" in r:
        s += f"  dense/this {r['ratio_vs_dense_per_frame']:6.1f}x"
    if r["extrapolated"]:
        s += "  [EXTRAPOLATED, not run]"
    elif "repeats" in r:
        s += f"  (n={r['repeats']}, load {r['loadavg_1m']:.1f})"
    return s


def _summary(rows: list[dict], target_ratio: float) -> tuple[list[str], dict]:
    main = f"binned_t{DEFAULT_TILE}_ppf{DEFAULT_PPF}"
    lines = ["", f"Summary: value+grad per frame, binned = {main} (faster batching), dense = the "
             "faster measured dense at batch 1", f"{'res':>5s} {'batch':>5s} {'binned ms':>10s} "
             f"{'dense ms':>10s} {'dense/binned':>12s} {'work÷':>6s}  binned batching; dense path"]
    verdict = {}

    def pick(res, **kw):
        return [r for r in rows if r["resolution"] == res and "median_s" in r
                and all(r.get(k) == v for k, v in kw.items())]

    for res in sorted({r["resolution"] for r in rows}):
        for batch in sorted({r["batch"] for r in rows if r["resolution"] == res}):
            cand = pick(res, batch=batch, path=main, kind="value_and_grad")
            if not cand:
                continue
            best = min(cand, key=lambda r: r["per_frame_s"])
            dense = pick(res, batch=1, path=best["ratio_vs_dense_path"], kind="value_and_grad")[0]
            ratio = best["ratio_vs_dense_per_frame"]
            note = "" if batch == 1 else " x batch (EXTRAPOLATED)"
            lines.append(f"{res:4d}² {batch:5d} {best['per_frame_s'] * 1e3:10.1f} "
                         f"{dense['per_frame_s'] * 1e3:10.0f} {ratio:11.1f}x "
                         f"{best['work_ratio_dense_over_this']:6.1f}  {best['batching']}; "
                         f"{dense['path']}{note}")
            verdict[f"{res}x{res}_batch{batch}"] = ratio
    for res in sorted({r["resolution"] for r in rows}):
        fwd, vg = (pick(res, batch=1, path=main, kind=k) for k in ("forward", "value_and_grad"))
        dfwd = pick(res, batch=1, path="dense", kind="forward")
        dvg = [r for r in pick(res, batch=1, kind="value_and_grad")
               if r["path"].startswith("dense")]
        if fwd and vg and dfwd and dvg:
            bf, bg = fwd[0]["median_s"], vg[0]["median_s"]
            df, dg = dfwd[0]["median_s"], min(r["median_s"] for r in dvg)
            lines.append(
                f"{res:4d}² batch 1 forward -> value+grad: binned {bf * 1e3:.0f} -> "
                f"{bg * 1e3:.0f} ms ({bg / bf:.1f}x), dense {df:.1f} -> {dg:.1f} s "
                f"({dg / df:.1f}x); forward-only dense/binned {df / bf:.1f}x")
        ones = [r for r in pick(res, batch=1) if "loss" in r]
        ref = [r["loss"] for r in ones if r["path"].startswith("dense")]
        if ref:
            dev = max(abs(r["loss"] - ref[0]) / abs(ref[0]) for r in ones)
            lines.append(f"{res:4d}² batch 1 loss, every path: {ref[0]:.4f} (largest relative "
                         f"deviation from dense {dev:.1e})")
    at256 = {k: v for k, v in verdict.items() if k.startswith("256x256")}
    if at256:
        met = all(v >= target_ratio for v in at256.values())
        lines.append(f"Target >= {target_ratio:.0f}x faster than dense at 256² on the CPU "
                     f"(value+grad per frame): {'MET' if met else 'NOT MET'} (256² ratios: "
                     + ", ".join(f"{k.split('_')[1]} {v:.1f}x" for k, v in at256.items()) + ")")
    else:
        lines.append("Target (>= 100x at 256²): not evaluated (256² not run)")
    return lines, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeats", type=int, default=7,
                        help="binned timings (median; batch > 1 rows fit --batch-budget-s, >= 3)")
    parser.add_argument("--dense-repeats", type=int, default=3, help="dense value+grad (median)")
    parser.add_argument("--dense-fwd-repeats", type=int, default=1, help="dense forward")
    parser.add_argument("--dense-band-pixels", type=int, default=1024,
                        help="pixels per band of the banded dense value+grad")
    parser.add_argument("--no-plain-dense", dest="plain_dense", action="store_false",
                        help="skip value_and_grad of the whole-image soft_silhouette_dense")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false",
                        help="skip the tile-size sweep")
    parser.add_argument("--batch-budget-s", type=float, default=30.0,
                        help="time budget of the repeats of one batched binned row")
    parser.add_argument("--max-temp-gb", type=float, default=8.0,
                        help="skip a compiled program whose temporaries exceed this")
    parser.add_argument("--quick", action="store_true",
                        help="128² only, batches 1 and 8, 3 repeats, 1 dense repeat, banded "
                             "dense only, no sweep")
    parser.add_argument("--out", type=Path, default=None)
    opts = parser.parse_args()
    if opts.quick:
        opts.resolutions, opts.batches = [128], [1, 8]
        opts.repeats, opts.dense_repeats, opts.sweep, opts.plain_dense = 3, 1, False, False
    batches = sorted(set(opts.batches) | {1})  # dense and the ratios need batch 1

    backend = jax.default_backend()
    scene = build_scene()
    load_start = list(os.getloadavg())
    t_start = time.perf_counter()
    rows, infos = [], []
    for size in opts.resolutions:
        r, info = bench_resolution(size, batches, opts, scene, lambda s: print(s, flush=True))
        rows += r
        infos.append(info)
        print(f"  {size}²: hand covers {info['coverage_hand']:.1%}, object "
              f"{info['coverage_object']:.1%} of pixels; pairs needed (max over frames) "
              + ", ".join(f"tile {t}: {v['max']} ({v['per_face_max']:.2f}/face)"
                          for t, v in info["pairs_needed"].items()), flush=True)
    lines, verdict = _summary(rows, 100.0)
    print("\n".join(lines))
    print("Dense at batch > 1 is EXTRAPOLATED (batch × measured batch-1 time), never run.")

    meta = {
        "benchmark": "render_silhouette_value_and_grad",
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()),
        "jax_backend": backend,
        "devices": [str(d) for d in jax.devices()],
        "versions": package_versions("jax", "jaxlib", "numpy", "trimesh", "equinox"),
        "dtype": "float32",
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "load_average_at_start": load_start,
        "wall_s": time.perf_counter() - t_start,
        "scene": ("synthetic MANO right hand (778 v, 1538 f), rest pose, palm to the camera at "
                  f"z={HAND_DEPTH_M} m + capsule r=3.3 cm, 12.1 cm tall (1026 v, 2048 f) behind "
                  "it; per frame a random rigid jitter (4 deg, 5 mm) of each mesh"),
        "intrinsics": f"fx = fy = {FOCAL_PER_PX} * size, c = size/2 - 0.5",
        "loss": ("sum((rasterize(...).silhouette - target)**2) over both meshes' soft silhouettes "
                 "(sigma 1 px², eps 1e-4); target: silhouettes of a further-perturbed scene "
                 "(2 deg, 3 mm); value_and_grad wrt all scene vertices"),
        "binned": (f"render.rasterize, RasterSettings(tile_size={DEFAULT_TILE}, pairs_per_face="
                   f"{DEFAULT_PPF}); batch>1 as jit(vmap(value_and_grad)) and "
                   f"jit(lax.map(value_and_grad, batch_size={LAX_MAP_CHUNK})); overflow asserted "
                   "False for every frame"),
        "sweep": (f"batch 1, tile sizes {list(SWEEP_TILES)}, pairs_per_face = ceil("
                  f"{CAPACITY_MARGIN} * max pairs needed over frames / F)"),
        "dense": ("batch 1 measured. dense_banded<r>: value+grad of the dense loss accumulated "
                  "over bands of r rows (--dense-band-pixels per band) in a lax.scan, each band "
                  "rendered by render.soft_silhouette_dense with cy shifted; dense: "
                  "jax.value_and_grad of the whole-image soft_silhouette_dense (pixel_chunk "
                  "1024; skipped where its temporaries exceed --max-temp-gb) and its forward. "
                  "Ratios use the faster measured dense value+grad. Batch > 1: EXTRAPOLATED as "
                  "batch x that batch-1 time (not run: time and memory)"),
        "timing": ("after compiling, one checked call (overflow asserted), then warm-up (binned 2 "
                   "calls, dense 1) and the median of repeats (times_s: all samples); when the "
                   "checked call took > 1 s it is the first sample and there is no warm-up; "
                   "block_until_ready; batch > 1 binned rows take max(3, min(--repeats, "
                   "--batch-budget-s / call)) repeats; compile_s = "
                   "jax.jit(f).lower(*args).compile(), apart"),
        "work": ("pixel_face_evals: binned = pair capacity x tile² (computed, padded slots "
                 "included), dense = H*W*F; pixel_face_evals_needed = max pairs needed x tile²"),
        "noise": ("2-core shared machine; other jobs may run concurrently: timings as measured"),
        "scene_stats": infos,
        "ratio_target": "value+grad >= 100x faster than dense at 256² (per frame)",
        "ratios_dense_over_binned_per_frame": verdict,
    }
    out = opts.out or RESULTS / f"bench_render_{backend}{'_quick' if opts.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
