"""Cold compile time of the tracker program, apart from running it.

Each repeat runs in a fresh process (JAX caches compiled programs per process; the persistent
cache is off here), builds one synthetic sequence (11 frames, 128²) and times, for
``tracking.track_batch``'s program at the default ``TrackConfig`` (batch 1):

- ``lower_s``: tracing the Python code and lowering it to StableHLO;
- ``compile_s``: XLA's compilation of that module;
- ``hlo_instructions``: the size of the module XLA is given (instructions in its HLO text).

``--reference DIR`` times another checkout of hoijax (a directory holding its ``hoijax``
package, e.g. ``git worktree add /tmp/ref HEAD~1``) in the same run, interleaved with this one,
and reports the ratios of the medians: the VM is shared and noisy, so only same-run ratios are
worth quoting. ``--variant FLAGS`` times this revision with extra ``XLA_FLAGS`` the same way,
``--config FIELD=VALUE`` with one ``TrackConfig`` field changed (e.g. ``batching=map``), and
``--run`` also times one execution of the compiled program (``run_s``, after a warm-up), for
flags that trade compile time against run time. ``--warm`` gives each cold run a fresh
persistent compilation cache (as the CLI keeps one, ``hoijax.cli._cache``) and then times a
second process on that cache (``warm``): tracing and lowering still run there, and the
compilation becomes a load from the cache.

    python experiments/bench_compile.py [--repeats 3] [--reference DIR] [--variant FLAGS]
        [--config FIELD=VALUE] [--run] [--warm] [--out FILE]

Writes ``experiments/results/bench_compile_<backend>.json``.
"""

from __future__ import annotations

import argparse
import ast
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
import jax, jax.numpy as jnp
import hoijax
if CACHE:
    from hoijax.cli._cache import enable_compile_cache
    enable_compile_cache()
from hoijax import data, mano, tracking as tr
from hoijax.tracking._track import _keys, _track_batch

cfg = tr.TrackConfig(**CONFIG)
seq = data.generate_sequence(data.SyntheticConfig(seed=0, num_frames=11,
                                                  image_size=(128, 128)))
prep = tr.stack_prepared([tr.prepare(seq, cfg, sdf_resolution=32)])
batch = data.stack_sequences([seq])
args = (batch, prep, mano.synthetic_mano("right"), tr.TrackHyper(), cfg,
        _keys(jax.random.PRNGKey(0), batch), jnp.ones(1, jnp.int32), None, None)
t0 = time.perf_counter()
lowered = _track_batch.lower(*args)
t1 = time.perf_counter()
compiled = lowered.compile()
t2 = time.perf_counter()
run_s = None
if RUN:  # one execution to warm up, then the timed one
    jax.block_until_ready(compiled(*args))
    t3 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    run_s = time.perf_counter() - t3
hlo = lowered.lowered.as_text(dialect="hlo")  # equinox's Lowered wraps jax's
n = sum(1 for line in hlo.splitlines() if " = " in line and not line.lstrip().startswith("//"))
print("RESULT " + json.dumps({"lower_s": t1 - t0, "compile_s": t2 - t1,
                              "hlo_instructions": n, "run_s": run_s, "hoijax": hoijax.__file__,
                              "backend": jax.default_backend()}))
"""


def _one(tree: Path, xla_flags: str = "", run: bool = False, cache: Path | None = None,
         config: dict | None = None) -> dict:
    env = dict(os.environ, HOIJAX_COMPILE_CACHE=str(cache) if cache else "0",
               PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if xla_flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla_flags).strip()
    head = f"RUN = {run}\nCACHE = {cache is not None}\nCONFIG = {config or {}!r}\n"
    out = subprocess.run([sys.executable, "-c", head + _CHILD], env=env, capture_output=True,
                         text=True, cwd="/")
    if out.returncode:
        raise SystemExit(f"the timed process failed ({tree}):\n{out.stderr[-3000:]}")
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT "):])
    if not res["hoijax"].startswith(str(tree)):
        raise SystemExit(f"{tree}: the timed process imported {res['hoijax']} instead")
    return res


def _config_field(text: str) -> dict:
    """``FIELD=VALUE`` (a Python literal) as ``{FIELD: VALUE}``."""
    field, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--config {text!r}: expected FIELD=VALUE")
    try:
        return {field: ast.literal_eval(value)}
    except (ValueError, SyntaxError):
        return {field: value}  # a bare word: a string


def _medians(runs: list[dict]) -> dict:
    keys = ("lower_s", "compile_s", "hlo_instructions") + (("run_s",) if runs[0]["run_s"]
                                                           is not None else ())
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference", type=Path, default=None,
                    help="a directory holding another revision's hoijax package")
    ap.add_argument("--variant", action="append", default=[], metavar="XLA_FLAGS",
                    help="also time this revision with these flags added to XLA_FLAGS "
                    "(repeatable), e.g. --variant=--xla_backend_optimization_level=0")
    ap.add_argument("--config", action="append", default=[], metavar="FIELD=VALUE",
                    help="also time this revision with a TrackConfig field changed "
                    "(repeatable; the value is a Python literal), e.g. --config batching=map")
    ap.add_argument("--run", action="store_true",
                    help="also time one execution of the compiled program (after a warm-up)")
    ap.add_argument("--warm", action="store_true",
                    help="cold runs with a fresh persistent cache, then a warm run on it")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    ref = args.reference.resolve() if args.reference else None
    trees = {"this": (REPO, "", None)} | ({"reference": (ref, "", None)} if ref is not None
                                          else {})
    trees |= {f"this {flags}": (REPO, flags, None) for flags in args.variant}
    configs = {c: _config_field(c) for c in args.config}
    trees |= {f"this config {c}": (REPO, "", configs[c]) for c in args.config}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    warm: dict[str, list[dict]] = {name: [] for name in trees}
    for i in range(args.repeats):
        for name, (tree, flags, config) in trees.items():
            with tempfile.TemporaryDirectory() as tmp:
                cache = Path(tmp) if args.warm else None
                r = _one(tree, flags, args.run, cache, config)
                runs[name].append(r)
                ran = f", run {r['run_s']:.1f} s" if r["run_s"] is not None else ""
                print(f"repeat {i} {name}: lower {r['lower_s']:.1f} s, compile "
                      f"{r['compile_s']:.1f} s{ran}, {r['hlo_instructions']} HLO instructions",
                      flush=True)
                if cache is not None:
                    w = _one(tree, flags, False, cache, config)
                    warm[name].append(w)
                    print(f"repeat {i} {name}, warm cache: lower {w['lower_s']:.1f} s, "
                          f"compile (load) {w['compile_s']:.1f} s", flush=True)
    report = {
        "command": " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "versions": package_versions("jax", "jaxlib", "equinox"),
        "program": "track_batch, default TrackConfig, batch 1, 11 frames, 128x128",
        "repeats": args.repeats,
        "this": {"median": _medians(runs["this"]), "runs": runs["this"]},
    }
    if args.warm:
        report["warm_cache"] = {name: {"median": _medians(w), "runs": w}
                                for name, w in warm.items()}
    if ref is not None:
        report["reference"] = {"tree": str(ref), "median": _medians(runs["reference"]),
                               "runs": runs["reference"]}
        report["ratio_this_over_reference"] = {
            k: report["this"]["median"][k] / report["reference"]["median"][k]
            for k in report["this"]["median"]}
    def against_this(name: str) -> dict:
        med = _medians(runs[name])
        return {"median": med, "runs": runs[name],
                "ratio_over_this": {k: med[k] / report["this"]["median"][k]
                                    for k in report["this"]["median"]}}

    for flags in args.variant:
        report.setdefault("variants", {})[flags] = against_this(f"this {flags}")
    for c in args.config:
        report.setdefault("config_variants", {})[c] = against_this(f"this config {c}")
    backend = runs["this"][0]["backend"]
    out = args.out or RESULTS / f"bench_compile_{backend}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in report if k in ("ratio_this_over_reference",)}
                     | {"this": report["this"]["median"]}
                     | {f"variant {f}": v["ratio_over_this"]
                        for f, v in report.get("variants", {}).items()}
                     | {f"config {c}": v["ratio_over_this"]
                        for c, v in report.get("config_variants", {}).items()}
                     | {f"warm cache, {n}": w["median"]
                        for n, w in report.get("warm_cache", {}).items()}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
