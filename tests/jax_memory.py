"""Releasing JAX's compiled programs between test modules (used by ``conftest.py``)."""

from __future__ import annotations

import gc
from pathlib import Path

import jax

MAPS = Path("/proc/self/maps")

RELEASE_ABOVE = 25_000
"""Memory mappings of the test process above which a finished module's programs are
released: well under Linux's default ``vm.max_map_count`` (65530) even after the largest test
module (about 15 000 more), and high enough that most modules keep the programs they share."""


def mappings() -> int:
    """The process's memory mappings (0 where ``/proc`` is not there)."""
    try:
        return len(MAPS.read_text().splitlines())
    except OSError:
        return 0


def release_compiled_programs() -> None:
    """Drop JAX's compiled programs and the memory mappings they hold.

    Every CPU executable XLA loads keeps about seven memory mappings until it is freed, and a
    test worker compiles thousands of programs: kept to the end, a worker's mappings reached
    61 000 in a 2-worker run, and a worker that passes ``vm.max_map_count`` segfaults in XLA's
    next compile. ``test_conftest_mappings.py`` checks the release.
    """
    jax.clear_caches()
    gc.collect()


def release_if_many(limit: int = RELEASE_ABOVE) -> bool:
    """:func:`release_compiled_programs` when the process holds more than ``limit`` mappings
    (recompiling costs time, so only then); whether it released."""
    if mappings() <= limit:
        return False
    release_compiled_programs()
    return True
