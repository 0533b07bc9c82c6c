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
