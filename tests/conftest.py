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
from jax_memory import release_if_many  # noqa: E402


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
    mappings (``jax_memory``: a worker that passes ``vm.max_map_count`` segfaults in XLA)."""
    yield
    release_if_many()
