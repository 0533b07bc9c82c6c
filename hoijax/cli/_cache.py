"""JAX's persistent compilation cache for the commands: the second run of a command loads the
compiled tracker instead of compiling it again.

On by default, under ``$XDG_CACHE_HOME/hoijax/jax`` (``~/.cache/hoijax/jax``). The environment
variable ``HOIJAX_COMPILE_CACHE`` names another folder, or turns the cache off with ``0``.

The same switch keeps the tracker's traced programs in ``programs/`` inside that folder
(:func:`hoijax.tracking.use_program_cache`): JAX's cache is keyed by the traced module, so
without them a later run would still trace the tracker (about 10 s), and JAX does not cache a
program that reports progress through a host callback at all (the single-program tracker's
progress bar), so the commands' tracker was compiled again in every run.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path | None:
    """The cache folder in use, or None when turned off."""
    value = os.environ.get("HOIJAX_COMPILE_CACHE", "")
    if value.lower() in ("0", "off", "false", "no"):
        return None
    if value:
        return Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hoijax" / "jax"


def enable_compile_cache() -> Path | None:
    """Point JAX's persistent compilation cache at :func:`cache_dir` (before the first
    compilation); returns the folder, or None when turned off."""
    import jax

    path = cache_dir()
    if path is None:
        return None
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Cache every program that took a while to compile, on every backend (CPU included).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    from hoijax import tracking

    tracking.use_program_cache(path / "programs")
    return path
