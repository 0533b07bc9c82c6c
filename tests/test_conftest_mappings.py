"""The guard against running out of memory mappings (``hoijax._runtime``; the suite's
``conftest.py`` and the tracking driver use it)."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import pytest

from hoijax._runtime import mappings, release_compiled_programs, release_if_many

MAPS = pathlib.Path("/proc/self/maps")


@pytest.mark.skipif(not MAPS.exists(), reason="needs Linux's /proc/self/maps")
def test_releasing_compiled_programs_returns_their_memory_mappings():
    release_compiled_programs()
    before = mappings()
    fns = [jax.jit(lambda x, k=k: jnp.sin(x * k) @ x.T + k) for k in range(40)]
    for f in fns:
        f(jnp.ones((4, 4))).block_until_ready()
    grown = mappings()
    # Each loaded executable holds its own mappings while it is cached.
    assert grown - before >= 40, (before, grown)
    release_compiled_programs()
    # Released even though the jitted functions themselves are still alive.
    assert mappings() - before < 0.25 * (grown - before), (before, grown, mappings())
    # The conditional release acts only above its limit.
    for f in fns:
        f(jnp.ones((4, 4))).block_until_ready()
    assert not release_if_many(limit=10**9) and mappings() >= grown - 5
    assert release_if_many(limit=before) and mappings() - before < 0.25 * (grown - before)
    del fns
