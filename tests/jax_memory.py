"""Releasing JAX's compiled programs between test modules (used by ``conftest.py``)."""

from __future__ import annotations

import gc

import jax


def release_compiled_programs() -> None:
    """Drop JAX's compiled programs and the memory mappings they hold.

    Every CPU executable XLA loads keeps about seven memory mappings until it is freed, and a
    test worker compiles thousands of programs: without this a worker passes Linux's
    ``vm.max_map_count`` (65530) about 20 minutes into the suite, and the next compile
    segfaults inside XLA. ``test_conftest_mappings.py`` checks the release.
    """
    jax.clear_caches()
    gc.collect()
