"""XLA:CPU settings that hoijax needs before JAX starts its CPU backend.

jaxlib 0.10 turns on XLA:CPU's experimental YNNPACK fusions by default. Two of their defects
break hoijax on the CPU:

* min/max reductions drop NaNs: ``jnp.max`` over an array holding a NaN returns the largest
  finite value, so a diverged sequence reads as finite and its failure is silent;
* with NaNs in the inputs a fused program can abort with ``INTERNAL: YNNPACK operation failed``
  (seen when a batch held one sequence with a NaN hand estimate: the whole batch was lost).

:func:`configure_xla_cpu` therefore adds ``--xla_cpu_experimental_ynn_fusion_type=`` (an empty
list: no YNNPACK fusions) to ``XLA_FLAGS`` when ``hoijax`` is imported, only on the jaxlib
releases where that flag was checked to exist, and only if the user set nothing for it. It must
run before the first JAX computation; if the backend already exists it warns instead. Set
``HOIJAX_KEEP_XLA_FLAGS=1`` to leave ``XLA_FLAGS`` untouched.
"""

from __future__ import annotations

import os
import sys
import warnings

_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# jaxlib (major, minor) releases whose XLA has the flag and fuses by default (checked by hand;
# an unknown flag in XLA_FLAGS aborts the process, so newer releases are not guessed at).
_CHECKED = {(0, 10)}


def _jaxlib_release() -> tuple[int, int] | None:
    from importlib import metadata

    try:
        major, minor = metadata.version("jaxlib").split(".")[:2]
        return int(major), int(minor)
    except (metadata.PackageNotFoundError, ValueError):
        return None


def configure_xla_cpu() -> bool:
    """Disable XLA:CPU's YNNPACK fusions (see the module docstring). Returns whether
    ``XLA_FLAGS`` was changed."""
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("HOIJAX_KEEP_XLA_FLAGS") or _FLAG in flags:
        return False
    if _jaxlib_release() not in _CHECKED:
        return False
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is not None and bridge.backends_are_initialized():
        warnings.warn(
            "hoijax was imported after JAX started its backend, so XLA:CPU's YNNPACK fusions stay "
            "on: NaNs may vanish from min/max reductions. Import hoijax first, or set "
            f"XLA_FLAGS='{_FLAG}=' yourself.", RuntimeWarning, stacklevel=3)
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}=".strip()
    return True


# Memory mappings. Every CPU executable XLA loads keeps about seven memory mappings until it is
# freed, and a tracker program holds thousands of executables (about 5 000 mappings): a process
# that compiles many programs (sequences of many padded shapes, re-runs at doubled rasterizer
# capacity, a test worker) passes Linux's default ``vm.max_map_count`` (65530), and XLA's next
# compile then aborts the process ("LLVM ERROR: Unable to allocate section memory").

_MAPS = "/proc/self/maps"

RELEASE_ABOVE = 45_000
"""Mappings above which :func:`release_if_many` drops the compiled programs by default: room
for about four more tracker programs below the kernel's default limit."""


def mappings() -> int:
    """The process's memory mappings (0 where ``/proc`` is not there)."""
    try:
        with open(_MAPS, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


_RELEASE_HOOKS: list = []


def on_release(fn) -> None:
    """Have :func:`release_compiled_programs` call ``fn()`` too (a module that keeps compiled
    programs of its own drops them there)."""
    _RELEASE_HOOKS.append(fn)


def release_compiled_programs() -> None:
    """Drop JAX's compiled programs and the memory mappings they hold (the jitted functions
    stay usable: they compile again on their next call)."""
    import gc

    import jax

    for fn in _RELEASE_HOOKS:
        fn()
    jax.clear_caches()
    gc.collect()


def release_if_many(limit: int = RELEASE_ABOVE) -> bool:
    """:func:`release_compiled_programs` when the process holds more than ``limit`` mappings
    (recompiling costs time, so only then); whether it released."""
    if mappings() <= limit:
        return False
    release_compiled_programs()
    return True
