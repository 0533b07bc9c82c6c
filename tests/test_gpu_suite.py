"""``experiments/gpu_suite.py`` (issue 18): the ``--smoke`` run end to end on the CPU, and the
refusal to run the GPU-sized suite without a GPU.

The smoke run goes through every step of the GPU run (kernel parity, MANO, rasterizer,
tracking) at tiny sizes; its tracking step traces and lowers ``track_batch`` without compiling
it (see the suite's docstring). Under Bazel ``experiments/`` is not in the test's runfiles and
the tests are skipped.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "experiments" / "gpu_suite.py"
FILES = ("kernel_parity", "bench_mano", "bench_kernels", "bench_tracking", "suite")

pytestmark = pytest.mark.skipif(not SUITE.is_file(),
                                reason="experiments/ is not in this tree (Bazel runfiles)")


def _suite(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, str(SUITE), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


# Several child processes, each compiling its step (about 90 s): kept out of the default run,
# which must stay under 30 minutes on 2 cores (`pytest -m slow tests/test_gpu_suite.py`).
@pytest.mark.slow
def test_smoke_run_writes_every_results_file(tmp_path):
    out = tmp_path / "smoke"
    p = _suite("--smoke", "--out", str(out), timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    data = {name: json.loads((out / f"{name}_smoke.json").read_text()) for name in FILES}
    assert sorted(f.name for f in out.iterdir()) == sorted(f"{n}_smoke.json" for n in FILES)

    for name, d in data.items():
        assert d["run"]["jax_backend"] == "cpu", name
        assert d["run"]["devices"] and d["run"]["jax_version"], name
        if name != "suite":
            assert d["suite"]["status"] == "ok", (name, d["suite"])
            assert all(c["argv"] for c in d["suite"]["children"]), name
    assert data["suite"]["suite"]["failed"] == []
    assert [s["step"] for s in data["suite"]["suite"]["steps"]] == [
        "parity", "mano", "raster", "tracking"]

    # Kernel parity: the interpreted Pallas kernels against the pure-JAX path.
    parity = data["kernel_parity"]
    assert parity["all_pass"] and parity["checks"]
    assert parity["kernel_backend"]["pallas_lowering"] == "interpret"
    for check in parity["checks"]:
        assert check["pass"] and check["failures"] == [], check
        for key in check["tolerances"]:
            assert math.isfinite(check[key]) and check[key] <= check["tolerances"][key], key
        assert _positive(check["wall_s"])

    # Rasterizer: both backends, the batch asked for, every timing positive and finite.
    rows = data["bench_kernels"]["rows"]
    assert {(r["backend"], r["batch"]) for r in rows} == {("pallas", 2), ("jax", 2)}
    for r in rows:
        assert "error" not in r and "skipped" not in r, r
        for key in ("compile_s", "first_call_s", "median_s", "per_frame_s"):
            assert _positive(r[key]), (key, r)

    # MANO: both paths, forward and forward+backward.
    rows = data["bench_mano"]["rows"]
    assert [r["batch"] for r in rows] == [2]
    for r in rows:
        for path in ("hoijax", "hoijax_vmap"):
            for kind in ("forward", "forward_backward"):
                t = r[path][kind]
                assert _positive(t["compile_s"]) and _positive(t["median_s"]), (path, kind)
                assert _positive(t["hands_per_s"])

    # Tracking: the batch sizes asked for were the ones run.
    tr = data["bench_tracking"]
    assert tr["batches_requested"] == tr["batches_run"] == [2]
    assert tr["batches_skipped"] == []
    assert sorted(r["batch"] for r in tr["rows"]) == [2]
    for r in tr["rows"]:
        assert _positive(r["prepare_s"]) and _positive(r["lower_s"]), r


def test_gpu_run_refuses_a_cpu_backend(tmp_path):
    out = tmp_path / "results"
    p = _suite("--out", str(out), timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "'cpu'" in p.stderr and "not 'gpu'" in p.stderr
    assert not out.exists()  # nothing written (and nothing compiled: only a probe ran)
