"""GPU readiness suite (issue 18): one command, under 8 minutes on one H200, ``*_gpu.json`` out.

    bash experiments/gpu_suite.sh                          # on a CUDA machine
    bash experiments/gpu_suite.sh --smoke --out /tmp/smoke # anywhere: CPU, tiny sizes (CI)
    bash experiments/gpu_suite.sh --steps raster tracking  # rerun some steps only

Each step runs an existing benchmark script in its own process (``python experiments/
bench_*.py ...`` with GPU-sized arguments), so a crash, an out-of-memory error or a hung
compilation ends that step only; its results file gets a ``suite`` block (the exact command
lines, exit codes, wall times, status, the end of the output when it failed) and every file has
a ``run`` block (``jax.devices()``, the jax version, the backend and which rasterizer kernels
ran: see ``_common.run_info``). Steps and files (``<suffix>`` is ``gpu``, or ``smoke``):

* ``parity``: ``bench_kernels.py --parity-only``: the Pallas kernels against the pure-JAX path
  on the same frames (the first 4 of a batch, under ``vmap``), 128², 256², 512², tile 4 (the
  library default): forward fields and gradients, each difference against a float32 tolerance
  (``bench_kernels.PARITY_TOL``), pass/fail -> ``kernel_parity_<suffix>.json``. A failed check
  fails the suite.
* ``mano``: ``bench_mano.py --no-smplx``: ``forward_batch`` and ``vmap(forward)`` throughput,
  forward and forward+backward, batches 1, 256, 4096, 16384 -> ``bench_mano_<suffix>.json``.
* ``raster``: ``bench_kernels.py --no-parity``: ``value_and_grad`` of an L2 silhouette loss
  through ``render.rasterize`` with ``backend="pallas"`` and ``"jax"``, 128², 256², 512² at
  batch 1, 64, 256 (``jit(vmap(...))``) -> ``bench_kernels_<suffix>.json``.
* ``tracking``: ``bench_tracking.py``, one process per batch of 1, 16, 64, 256 sequences (11
  frames at 128², AGILE's iteration caps), rows merged -> ``bench_tracking_<suffix>.json``.

plus ``suite_<suffix>.json``: every step's status and wall time. The benchmark scripts follow
the project's rules (compile timed apart, a warm-up, ``block_until_ready``, the median of
repeats); this script only picks their arguments and bounds their time.

How the 8 minutes are bounded (the whole suite, counted from its start, stops at
``--time-limit-s``, 460 s, which leaves 20 s for starting Python and the last file): the steps
run cheapest first and each gets a hard wall-clock cap, shortened to the time left; a step
past its cap is killed and what it had written is kept. ``parity``: 90 s (6 compilations per
resolution, one call each). ``mano``: 60 s (16 compilations, 3 warm-up calls and 20 repeats of
calls of milliseconds each). ``raster``: 170 s for 18 rows (one compilation each), each row's
repeats shrunk to fit ``--budget-s 1`` (at least 3), a program
whose temporaries exceed 80 GB compiled but not run (``skipped``), the file rewritten after each
resolution. ``tracking``: the time that is left (at least 140 s); the batches run smallest
first, each process capped at the time left, and a batch is skipped (``partial``, listed in
``batches_skipped``) when less time is left than the previous, smaller batch took. Running past
a cap or skipping for time is ``partial``, not a failure (but ``parity`` must finish). No
compilation cache is used (``JAX_ENABLE_COMPILATION_CACHE=false``), so compile times are real.
None of these bounds has been checked on a GPU yet: the first GPU run sets them.

Exit status: 0 when every step finished or was cut short by its time bound after writing
results, 1 when a step failed (an error, a parity failure, nothing written), 2 when JAX's default backend is not ``gpu`` (checked in a
child process before anything compiles; ``--allow-cpu`` runs anyway, and then the files are
named ``*_<backend>_suite.json`` so the committed CPU results are not overwritten).

``--smoke`` runs the same steps through the same code, on the CPU (``JAX_PLATFORMS=cpu`` unless
set), at tiny sizes: 16² images, batches of 2 (vmapped like the GPU batches; parity on 2
frames; tracking: 2 sequences of 6 frames at 32², 3 iterations per stage), 3 repeats, the
Pallas kernels in Pallas' interpreter. It writes ``*_smoke.json`` to ``--out`` (default: a new
temporary folder). Its tracking step traces and lowers ``tracking.track_batch`` at the batch
sizes, on the data ``bench_tracking.py`` makes (``--tracking-mode lower``: nothing compiled or
run), because compiling the tracker takes 50-80 s on one CPU core by itself; ``--smoke
--tracking-mode run`` runs ``bench_tracking.py`` instead (about 2 minutes more). On one core
the smoke run takes about 85 s: parity 19 s, MANO 9 s, rasterizer 18 s, tracking 35-40 s (data
and preparation 15 s, tracing 15-18 s), each step paying ~4 s to import JAX and hoijax.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
STEPS = ("parity", "mano", "raster", "tracking")

# --------------------------------------------------------------------------- plans

GPU_PLAN = {
    "parity": ["--parity-only", "--resolutions", "128", "256", "512", "--tile-sizes", "4",
               "--parity-frames", "4"],
    "mano": ["--batches", "1", "256", "4096", "16384", "--repeats", "20", "--warmup", "3",
             "--no-smplx"],
    "raster": ["--no-parity", "--resolutions", "128", "256", "512", "--batches", "1", "64",
               "256", "--tile-sizes", "4", "--kinds", "value_and_grad", "--repeats", "10",
               "--warmup", "2", "--budget-s", "1.0", "--max-temp-gb", "80"],
    "tracking_batches": [1, 16, 64, 256],
    "tracking": ["--frames", "11", "--image-size", "128", "--repeats", "2", "--distinct", "2"],
    "caps_s": {"parity": 90.0, "mano": 60.0, "raster": 170.0, "tracking": None},
    "time_limit_s": 460.0,
    "tracking_mode": "run",
}
SMOKE_PLAN = {
    "parity": ["--parity-only", "--resolutions", "16", "--tile-sizes", "4", "--parity-frames",
               "2"],
    "mano": ["--batches", "2", "--repeats", "3", "--warmup", "1", "--no-smplx"],
    "raster": ["--no-parity", "--resolutions", "16", "--batches", "2", "--tile-sizes", "4",
               "--kinds", "value_and_grad", "--repeats", "3", "--warmup", "1", "--budget-s",
               "0.5"],
    "tracking_batches": [2],
    "tracking": ["--frames", "6", "--image-size", "32", "--repeats", "1", "--distinct", "1",
                 "--object-iters", "3", "--hand-iters", "3", "--iof-iters", "3"],
    "caps_s": {"parity": 180.0, "mano": 120.0, "raster": 180.0, "tracking": None},
    "time_limit_s": 900.0,
    "tracking_mode": "lower",
}
NOT_MEASURED = [
    "bench_render.py (binned vs dense O(H*W*F) silhouettes): a CPU comparison, not run here",
    "the rasterizer's forward-only rows and tile sizes other than 4 (bench_kernels --kinds "
    "forward --tile-sizes 8 16)",
    "smplx (PyTorch) MANO reference on the GPU",
    "multi-GPU tracking (tracking.sequence_mesh)",
]

# --------------------------------------------------------------------------- helpers


def _write(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _child_env(smoke: bool) -> dict:
    env = dict(os.environ)
    if smoke:
        env.setdefault("JAX_PLATFORMS", "cpu")
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"  # compile times are measured
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_child(name: str, argv: list[str], timeout_s: float, env: dict) -> dict:
    """Run ``argv`` from the repository root, its output streamed with a ``[name]`` prefix;
    killed (its whole process group) after ``timeout_s``."""
    t0 = time.perf_counter()
    tail: deque[str] = deque(maxlen=40)
    rec = {"argv": argv, "timeout_s": round(timeout_s, 1)}
    if timeout_s <= 0:
        return {**rec, "returncode": None, "timed_out": True, "wall_s": 0.0,
                "output_tail": ["not started: no time left"]}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True)

    def pump():
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            print(f"[{name}] {line}", end="", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this Popen started
        except ProcessLookupError:
            pass
        rc = proc.wait()
        print(f"[{name}] KILLED after {timeout_s:.0f} s (its time bound)", flush=True)
    reader.join(timeout=10)
    return {**rec, "returncode": rc, "timed_out": timed_out,
            "wall_s": time.perf_counter() - t0, "output_tail": list(tail)}


def _probe(env: dict) -> dict:
    """JAX's backend, devices and versions, from a child process (this process never starts a
    backend: on a GPU it would hold memory the steps need). Compiles nothing."""
    code = ("import json, sys; sys.path.insert(0, {!r}); import _common; "
            "print('PROBE ' + json.dumps(_common.run_info()))").format(str(HERE))
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    for line in p.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[6:])
    raise RuntimeError(f"could not start JAX (exit {p.returncode}): {p.stderr[-2000:]}")


def _run_from_child(d: dict | None) -> dict | None:
    """The ``run`` block of a benchmark's results file (bench_tracking writes no such block:
    rebuilt from its ``machine`` and ``versions``)."""
    if not isinstance(d, dict):
        return None
    for where in (d, d.get("meta", {})):
        if isinstance(where.get("run"), dict):
            return where["run"]
    m = d.get("machine")
    if isinstance(m, dict) and "backend" in m:
        return {"jax_backend": m["backend"], "devices": m.get("devices"),
                "jax_version": d.get("versions", {}).get("jax"), "versions": d.get("versions")}
    return None


def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


# --------------------------------------------------------------------------- steps


class Suite:
    def __init__(self, opts, plan: dict, env: dict, probe: dict | None, t0: float):
        self.opts, self.plan, self.env, self.probe = opts, plan, env, probe
        self.t0 = t0
        self.deadline = self.t0 + opts.time_limit_s
        self.suffix = opts.suffix
        self.records: list[dict] = []

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def cap(self, step: str) -> float:
        c = self.plan["caps_s"][step]
        return self.left() if c is None else min(c, self.left())

    def path(self, stem: str) -> Path:
        return self.opts.out / f"{stem}_{self.suffix}.json"

    def script(self, name: str) -> list[str]:
        return [sys.executable, str(HERE / name)]

    def finish(self, step: str, path: Path, data: dict | None, children: list[dict],
               status: str, error: str | None, extra: dict | None = None) -> dict:
        """Add the ``suite`` (and, if missing, ``run``) block to the step's file."""
        data = data if isinstance(data, dict) else {}
        for c in children:
            if status == "ok":
                c.pop("output_tail", None)
        data["suite"] = {"step": step, "status": status, "error": error,
                         "mode": "smoke" if self.opts.smoke else "gpu",
                         "suite_argv": sys.argv, "children": children,
                         "wall_s": sum(c["wall_s"] for c in children), **(extra or {})}
        run = _run_from_child(data) or self.probe
        if run is not None:
            data["run"] = run
        _write(path, data)
        rec = {"step": step, "status": status, "error": error, "file": str(path),
               "wall_s": data["suite"]["wall_s"]}
        self.records.append(rec)
        print(f"== {step}: {status.upper()} in {rec['wall_s']:.1f} s -> {path}"
              + (f" ({error})" if error else ""), flush=True)
        return rec

    def simple(self, step: str, script: str, stem: str) -> dict:
        """One benchmark process writing one file."""
        path = self.path(stem)
        path.unlink(missing_ok=True)
        argv = [*self.script(script), *self.plan[step], "--out", str(path)]
        child = run_child(step, argv, self.cap(step), self.env)
        data = _read(path)
        status, error = "ok", None
        if child["timed_out"] and child["returncode"] is None:
            status, error = "failed", "not started: the suite's time limit was reached"
        elif child["timed_out"]:
            status, error = "partial", f"killed at its time bound ({child['timeout_s']} s)"
        elif child["returncode"] != 0:
            status, error = "failed", f"exit {child['returncode']}"
        if data is None and status != "failed":
            status, error = "failed", "; ".join(filter(None, [error, "no results file written"]))
        return self.finish(step, path, data, [child], status, error)

    def parity(self) -> dict:
        rec = self.simple("parity", "bench_kernels.py", "kernel_parity")
        data = _read(Path(rec["file"]))
        checks = []
        for info in data.get("meta", {}).get("scene_stats", []):
            p = info.get("parity", info.get("parity_first_frame"))
            if p is not None:
                checks.append({"resolution": info["resolution"], "tile_size": info["tile_size"],
                               **p})
        want = len(self._flag_values("parity", "--resolutions")) * len(
            self._flag_values("parity", "--tile-sizes"))
        all_pass = bool(checks) and len(checks) == want and all(c["pass"] for c in checks)
        data["checks"] = checks
        data["all_pass"] = all_pass
        data["kernel_backend"] = (data.get("run") or {}).get("kernel_backend")
        if not all_pass and rec["status"] != "failed":  # parity must finish and pass
            rec["status"] = data["suite"]["status"] = "failed"
            rec["error"] = data["suite"]["error"] = (
                f"{sum(not c['pass'] for c in checks)} failed, "
                f"{want - len(checks)} missing of {want} parity checks")
            print(f"== parity: FAILED ({rec['error']})", flush=True)
        _write(Path(rec["file"]), data)
        return rec

    def _flag_values(self, step: str, flag: str) -> list[str]:
        args = self.plan[step]
        i = args.index(flag) + 1
        out = []
        while i < len(args) and not args[i].startswith("--"):
            out.append(args[i])
            i += 1
        return out

    def tracking(self) -> dict:
        """One process per batch size, smallest first; rows merged into one file."""
        mode = self.opts.tracking_mode or self.plan["tracking_mode"]
        path = self.path("bench_tracking")
        path.unlink(missing_ok=True)
        batches = sorted(self.plan["tracking_batches"])
        rows, children, skipped, settings, run = [], [], [], [], None
        status, errors = "ok", []
        last_wall = 0.0
        with tempfile.TemporaryDirectory(prefix="hoijax_gpu_suite_") as tmp:
            for B in batches:
                left = self.cap("tracking")
                if left <= 1.0 or left < last_wall:
                    skipped.append({"batch": B, "reason": (
                        f"{max(left, 0):.0f} s left of the suite's time limit"
                        + (f", the previous (smaller) batch took {last_wall:.0f} s"
                           if last_wall else ""))})
                    status = "partial" if status == "ok" else status
                    continue
                part = Path(tmp) / f"tracking_b{B}.json"
                if mode == "run":
                    argv = [*self.script("bench_tracking.py"), "--batches", str(B)]
                else:
                    argv = [*self.script("gpu_suite.py"), "_trace-tracking", "--batches", str(B)]
                argv += [*self.plan["tracking"], "--out", str(part)]
                child = run_child(f"tracking b{B}", argv, left, self.env)
                child["batch"] = B
                children.append(child)
                last_wall = child["wall_s"]
                d = _read(part)
                if child["timed_out"]:
                    skipped.append({"batch": B, "reason": f"killed at the time left "
                                                          f"({child['timeout_s']} s)"})
                    status = "partial" if status == "ok" else status
                    continue
                if child["returncode"] != 0 or d is None:
                    errors.append(f"batch {B}: exit {child['returncode']}"
                                  + ("" if d is not None else ", no results file"))
                    status = "failed"
                    continue
                rows += d.get("rows", [])
                settings.append(d.get("settings"))
                run = run or _run_from_child(d)
        data = {
            "benchmark": "tracking_batches",
            "mode": mode,
            "mode_note": ("run: bench_tracking.py (compiled and run; rows as that script's)"
                          if mode == "run" else
                          "lower: tracking.track_batch traced and lowered at each batch size, "
                          "nothing compiled or run (lower_s, prepare_s)"),
            "run": self.probe or run,  # the probe's block names the kernels as well
            "batches_requested": batches,
            "batches_run": sorted({r["batch"] for r in rows}),
            "batches_skipped": skipped,
            "settings": settings[0] if settings else None,
            "rows": rows,
        }
        return self.finish("tracking", path, data, children, status,
                           "; ".join(errors + [f"batch {s['batch']} skipped" for s in skipped])
                           or None)

    def summary(self) -> int:
        failed = [r["step"] for r in self.records if r["status"] == "failed"]
        partial = [r["step"] for r in self.records if r["status"] == "partial"]
        total = time.perf_counter() - self.t0
        _write(self.path("suite"), {
            "suite": {"mode": "smoke" if self.opts.smoke else "gpu", "argv": sys.argv,
                      "out": str(self.opts.out), "suffix": self.suffix,
                      "time_limit_s": self.opts.time_limit_s, "wall_s": total,
                      "steps": self.records, "failed": failed, "partial": partial,
                      "not_measured": NOT_MEASURED},
            "run": self.probe or next((_run_from_child(_read(Path(r["file"])))
                                      for r in self.records), None),
        })
        print(f"\ngpu_suite: {total:.0f} s; " + ", ".join(
            f"{r['step']} {r['status']}" for r in self.records)
            + f"; results in {self.opts.out}", flush=True)
        if failed:
            print(f"gpu_suite: FAILED steps: {failed}", flush=True)
        return 1 if failed else 0


# --------------------------------------------------------------------------- worker


def trace_tracking(argv: list[str]) -> int:
    """``gpu_suite.py _trace-tracking``: trace and lower ``tracking.track_batch`` at each
    batch size, as ``bench_tracking.py`` would call it (same data, configuration and stacking),
    without compiling or running it; rows with ``prepare_s`` and ``lower_s``."""
    ap = argparse.ArgumentParser(prog="gpu_suite.py _trace-tracking")
    ap.add_argument("--batches", type=int, nargs="+", required=True)
    ap.add_argument("--frames", type=int, nargs="+", default=[16])
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2, help="accepted; nothing is run")
    ap.add_argument("--object-iters", type=int, default=400)
    ap.add_argument("--hand-iters", type=int, default=200)
    ap.add_argument("--iof-iters", type=int, default=300)
    ap.add_argument("--stride", type=int, default=5)
    ap.add_argument("--distinct", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(HERE))
    import equinox as eqx
    import jax
    from _common import package_versions, run_info

    from hoijax import data, mano, tracking

    config = tracking.TrackConfig(stride=args.stride, hand_iters=args.hand_iters,
                                  object_iters=args.object_iters, iof_iters=args.iof_iters)
    model, hyper = mano.synthetic_mano("right"), tracking.TrackHyper()
    fn = eqx.filter_jit(lambda b, p, m, h, k: tracking.track_batch(b, p, m, h, config, k))
    rows = []
    for frames in args.frames:
        t0 = time.perf_counter()
        base = [data.generate_sequence(c)
                for c in data.tracking_benchmark_configs(args.distinct, frames, args.image_size)]
        preps = [tracking.prepare(s, config) for s in base]
        prepare_s = time.perf_counter() - t0
        for B in args.batches:
            idx = [i % len(base) for i in range(B)]
            batch = data.stack_sequences([base[i] for i in idx])
            prep = tracking.stack_prepared([preps[i] for i in idx])
            t0 = time.perf_counter()
            fn.lower(batch, prep, model, hyper, jax.random.PRNGKey(0))
            lower_s = time.perf_counter() - t0
            rows.append({"batch": B, "frames_per_sequence": frames, "prepare_s": prepare_s,
                         "lower_s": lower_s, "compiled": False, "ran": False})
            print(f"B={B}, {frames} frames: data and prepare {prepare_s:.1f} s, trace and "
                  f"lower track_batch {lower_s:.1f} s (not compiled)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write(args.out, {"run": run_info(), "versions": package_versions("jax", "jaxlib", "equinox"),
                      "settings": {**vars(args), "out": str(args.out)}, "rows": rows})
    print(f"wrote {args.out}")
    return 0


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_trace-tracking"]:
        return trace_tracking(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true",
                    help="the same steps on the CPU at tiny sizes (CI); see the module docstring")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default experiments/results; --smoke: a new "
                         "temporary folder)")
    ap.add_argument("--suffix", default=None,
                    help="file name suffix: <name>_<suffix>.json (default gpu; --smoke: smoke)")
    ap.add_argument("--allow-cpu", action="store_true",
                    help="run the GPU-sized suite even where JAX's backend is not gpu")
    ap.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS),
                    help="run only these steps (in the suite's order)")
    ap.add_argument("--time-limit-s", type=float, default=None,
                    help="the suite's time bound, from its start (default 460; --smoke 900)")
    ap.add_argument("--tracking-mode", choices=("run", "lower"), default=None,
                    help="run: bench_tracking.py; lower: trace and lower track_batch only "
                         "(default: run; --smoke: lower)")
    opts = ap.parse_args(argv)
    plan = SMOKE_PLAN if opts.smoke else GPU_PLAN
    env = _child_env(opts.smoke)

    probe = None
    if not opts.smoke:
        try:
            probe = _probe(env)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"gpu_suite: {e}", file=sys.stderr)
            return 1
        backend = probe["jax_backend"]
        if backend != "gpu":
            if not opts.allow_cpu:
                print(f"gpu_suite: JAX's default backend is {backend!r} (devices "
                      f"{probe['devices']}), not 'gpu': refusing to run the GPU suite. Install "
                      "jax with CUDA (pip install -e '.[cuda]'), or use --smoke for the tiny "
                      "CPU run, or --allow-cpu to run the GPU sizes here anyway.",
                      file=sys.stderr)
                return 2
            opts.suffix = opts.suffix or f"{backend}_suite"
        print(f"gpu_suite: {probe['devices']} ({backend}), jax {probe['jax_version']}, kernels "
              f"{probe.get('kernel_backend')}", flush=True)
    opts.suffix = opts.suffix or ("smoke" if opts.smoke else "gpu")
    if opts.out is None:
        opts.out = (Path(tempfile.mkdtemp(prefix="hoijax_gpu_smoke_")) if opts.smoke
                    else RESULTS)
    opts.out = opts.out.resolve()
    opts.out.mkdir(parents=True, exist_ok=True)
    opts.time_limit_s = opts.time_limit_s or plan["time_limit_s"]
    print(f"gpu_suite: {'smoke' if opts.smoke else 'GPU'} run, steps {opts.steps}, limit "
          f"{opts.time_limit_s:.0f} s, writing {opts.out}/*_{opts.suffix}.json", flush=True)

    suite = Suite(opts, plan, env, probe, t0)
    for step in STEPS:
        if step not in opts.steps:
            continue
        if step == "parity":
            suite.parity()
        elif step == "mano":
            suite.simple("mano", "bench_mano.py", "bench_mano")
        elif step == "raster":
            suite.simple("raster", "bench_kernels.py", "bench_kernels")
        else:
            suite.tracking()
    return suite.summary()


if __name__ == "__main__":
    raise SystemExit(main())
