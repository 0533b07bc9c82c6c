"""Shared fixtures. Tests run on the CPU; float64 is enabled per test with ``jax.enable_x64``."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The commands' persistent compilation cache stays off in tests (nothing written to the
# user's home); tests that need it point HOIJAX_COMPILE_CACHE at a temporary folder.
os.environ.setdefault("HOIJAX_COMPILE_CACHE", "0")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from hoijax._runtime import release_if_many  # noqa: E402

# A finished module's programs are released above this many memory mappings: well under
# Linux's default ``vm.max_map_count`` (65530) even after the largest test module (about 15 000
# more), and high enough that most modules keep the programs they share (kept to the end, a
# worker's mappings reached 61 000 in a 2-worker run).
RELEASE_ABOVE = 25_000


@pytest.fixture(scope="session")
def synthetic_mano_dir(tmp_path_factory):
    """``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` of the synthetic hand, in the official layout."""
    from hoijax.mano import write_synthetic_mano

    directory = tmp_path_factory.mktemp("mano")
    write_synthetic_mano(directory)
    return directory


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs_after_each_module():
    """After each module, drop JAX's compiled programs if the process holds many memory
    mappings (``hoijax._runtime``: a worker that passes ``vm.max_map_count`` aborts in XLA)."""
    yield
    release_if_many(RELEASE_ABOVE)


# The test files that take longest on 2 cores (compiling the tracker, training), longest first
# (the sums of their tests' times in a `pytest -n 2 --durations=0` run: 313 s down to 62 s).
# Under ``-n 2 --dist loadfile`` a file runs on one worker; started first, the long files
# overlap instead of one of them running alone at the end (xdist would otherwise queue files
# by their number of tests, which put the tracker's few, long tests last).
# ``--no-loadscope-reorder`` (pyproject.toml) keeps this order.
LONGEST_FIRST = (
    "test_tracking_track.py",
    "test_tracking_driver.py",
    "test_icl_train.py",
    "test_tracking_hand_fit.py",
    "test_cli.py",
    "test_tracking_steps.py",
    "test_tracking_batching.py",
    "test_tracking_init.py",
    "test_pipeline_ho3d.py",
    "test_mano_forward.py",
    "test_tracking_core.py",
    "test_losses_tracking.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: others keep order
