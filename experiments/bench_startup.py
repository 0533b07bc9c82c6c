"""The tracker's start-up as the commands pay it: cold (empty caches) and warm (a second
process on the caches the first one filled).

Each measurement is a fresh process that builds one synthetic sequence (11 frames, 128², as
``bench_compile.py``), sets up the caches the way ``hoijax.cli._cache.enable_compile_cache``
does, and calls ``tracking.track_batch`` twice with a progress receiver, as the commands do:

- ``first_s``: the first call (tracing or loading, compiling or loading, and one run);
- ``run_s``: the second call in the same process (the run alone);
- ``startup_s = first_s - run_s``: what the start-up costs.

Two paths, interleaved in each repeat (the VM is shared, so only same-run ratios mean
anything):

- ``staged``: this revision's commands: the program folder on (``tracking.use_program_cache``),
  three exported programs, progress counted in Python;
- ``single``: the single traced program whose progress goes through a host callback (what the
  commands ran before; JAX does not write a program with host callbacks to its persistent
  cache, so its warm start compiles again).

``--parts`` breaks the staged cold start down instead: per program, tracing and exporting
(``export_s``), XLA's compilation alone and one program at a time (``compile_s``, and the CPU
time of all its threads, ``compile_cpu_s``), and the size
of the module XLA is given (``stablehlo_ops``); then one run of the three (``run_s``, after a
warm-up). Each repeat is a fresh process with an empty program folder and no compilation cache.

    python experiments/bench_startup.py [--repeats 2] [--parts] [--out FILE]

Writes ``experiments/results/bench_startup_<backend>.json`` (``bench_startup_parts_<backend>.json``
with ``--parts``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import package_versions

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, time
import jax
import hoijax
from hoijax import data, mano, tracking as tr
from hoijax.cli._cache import enable_compile_cache

enable_compile_cache()  # HOIJAX_COMPILE_CACHE names the folder
if not STAGED:
    tr.use_program_cache(None)
cfg = tr.TrackConfig()
seq = data.generate_sequence(data.SyntheticConfig(seed=0, num_frames=11,
                                                  image_size=(128, 128)))
prep = tr.stack_prepared([tr.prepare(seq, cfg, sdf_resolution=32)])
batch = data.stack_sequences([seq])
model = mano.synthetic_mano("right")
frames = []
progress = tr.Progress(fn=lambda: frames.append(time.perf_counter()))
times = []
for _ in range(2):
    t0 = time.perf_counter()
    jax.block_until_ready(tr.track_batch(batch, prep, model, tr.TrackHyper(), cfg,
                                         jax.random.PRNGKey(0), progress))
    times.append(time.perf_counter() - t0)
print("RESULT " + json.dumps({"first_s": times[0], "run_s": times[1],
                              "startup_s": times[0] - times[1], "frames": len(frames) // 2,
                              "hoijax": hoijax.__file__, "backend": jax.default_backend()}))
"""


_PARTS = r"""
import json, re, tempfile, time
import jax, jax.numpy as jnp
from hoijax import data, mano, tracking as tr
from hoijax.tracking import _programs
from hoijax.tracking._track import _STAGES, _keys

tr.use_program_cache(tempfile.mkdtemp())
cfg, hyper = tr.TrackConfig(), tr.TrackHyper()
seq = data.generate_sequence(data.SyntheticConfig(seed=0, num_frames=11,
                                                  image_size=(128, 128)))
prep = tr.stack_prepared([tr.prepare(seq, cfg, sdf_resolution=32)])
batch = data.stack_sequences([seq])
model = mano.synthetic_mano("right")
keys = _keys(jax.random.PRNGKey(0), batch)
name, begin_fn, step_fn, finish_fn = _STAGES[False]
parts, programs = {}, {}

def load(part, fn, *args):
    t0 = time.perf_counter()
    programs[part] = _programs.load(f"{name}_{part}", lambda *a: fn(cfg, *a), cfg, *args)
    parts[part] = {"export_s": time.perf_counter() - t0}
    return programs[part]

b, carry = load("begin", begin_fn, batch, prep, model, hyper, keys).out_shapes
out = load("step", step_fn, hyper, b, carry, jax.ShapeDtypeStruct((), jnp.int32)).out_shapes[1]
load("finish", finish_fn, batch, b, (out,) * b.steps.active.shape[-1])
for part, p in programs.items():
    lowered = p._jitted.lower(*p._leaves)
    text = lowered.as_text()
    parts[part]["stablehlo_ops"] = len(re.findall(r"= (?:stablehlo|chlo)[.]", text))
    t0, c0 = time.perf_counter(), time.process_time()
    p._compiled = lowered.compile()  # what Program.compile keeps, so run() compiles nothing
    parts[part]["compile_s"] = time.perf_counter() - t0
    parts[part]["compile_cpu_s"] = time.process_time() - c0  # all threads: XLA's parallelism

def run():  # track_batch's staged path, on the programs loaded and compiled above
    jax.block_until_ready(tr.track_batch(batch, prep, model, hyper, cfg, keys))

run()
t0 = time.perf_counter()
run()
print("RESULT " + json.dumps({"parts": parts, "run_s": time.perf_counter() - t0,
                              "backend": jax.default_backend()}))
"""


def _parts(args) -> None:
    env = dict(os.environ, HOIJAX_COMPILE_CACHE="0",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    runs = []
    for i in range(args.repeats):
        out = subprocess.run([sys.executable, "-c", _PARTS], env=env, capture_output=True,
                             text=True, cwd="/")
        if out.returncode:
            raise SystemExit(f"the timed process failed:\n{out.stderr[-3000:]}")
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
        runs.append(json.loads(line[len("RESULT "):]))
        print(f"repeat {i}: {json.dumps(runs[-1])}", flush=True)
    med = {part: {k: statistics.median(r["parts"][part][k] for r in runs)
                  for k in runs[0]["parts"][part]} for part in runs[0]["parts"]}
    report = {"command": " ".join(sys.argv), "machine": _machine(),
              "versions": package_versions("jax", "jaxlib", "equinox"),
              "program": "the staged tracker (track_batch with a program folder), default "
                         "TrackConfig, batch 1, 11 frames, 128x128",
              "repeats": args.repeats, "median": med,
              "run_s_median": statistics.median(r["run_s"] for r in runs), "runs": runs}
    out = args.out or RESULTS / f"bench_startup_parts_{runs[0]['backend']}.json"
    _write(out, report)


def _machine() -> dict:
    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)),
            "load_average_at_end": list(os.getloadavg())}


def _write(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["median"], indent=2))
    print(f"wrote {out}")


def _one(staged: bool, cache: Path) -> dict:
    env = dict(os.environ, HOIJAX_COMPILE_CACHE=str(cache),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", f"STAGED = {staged}\n" + _CHILD], env=env,
                         capture_output=True, text=True, cwd="/")
    if out.returncode:
        raise SystemExit(f"the timed process failed:\n{out.stderr[-3000:]}")
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--parts", action="store_true",
                    help="time each staged program's export and compilation apart")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.parts:
        return _parts(args)
    runs: dict[str, list[dict]] = {}
    for i in range(args.repeats):
        for path in ("staged", "single"):
            with tempfile.TemporaryDirectory() as tmp:
                for state in ("cold", "warm"):
                    r = _one(path == "staged", Path(tmp))
                    runs.setdefault(f"{path}/{state}", []).append(r)
                    print(f"repeat {i} {path} {state}: first call {r['first_s']:.1f} s, run "
                          f"{r['run_s']:.1f} s, start-up {r['startup_s']:.1f} s", flush=True)
    med = {name: {k: statistics.median(r[k] for r in rs)
                  for k in ("first_s", "run_s", "startup_s")} for name, rs in runs.items()}
    ratios = {state: med[f"staged/{state}"]["startup_s"] / med[f"single/{state}"]["startup_s"]
              for state in ("cold", "warm")}
    report = {
        "command": " ".join(sys.argv),
        "machine": _machine(),
        "versions": package_versions("jax", "jaxlib", "equinox"),
        "program": "track_batch with a progress receiver, default TrackConfig, batch 1, "
                   "11 frames, 128x128",
        "repeats": args.repeats, "median": med,
        "startup_ratio_staged_over_single": ratios, "runs": runs,
    }
    backend = runs["staged/cold"][0]["backend"]
    _write(args.out or RESULTS / f"bench_startup_{backend}.json", report)


if __name__ == "__main__":
    main()
