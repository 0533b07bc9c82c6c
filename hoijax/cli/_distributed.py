"""``--distributed.*``: a run across processes with JAX's own runtime.

``jax.distributed.initialize`` must run before anything starts JAX's backend, and building a
command's flags does (their defaults are arrays), so :func:`main` calls :func:`start_early`
on the raw arguments before it loads the command; the command's :func:`start` then returns
the same ``(process index, process count)``.
"""

from __future__ import annotations

import argparse
import dataclasses


@dataclasses.dataclass
class Distributed:
    """A run across processes (hosts) with JAX's own runtime: every process tracks every n-th
    sequence and writes its own results; process 0 writes the summary."""

    enabled: bool = False
    """Initialize jax.distributed (cluster auto-detection: SLURM, Open MPI, Kubernetes; or the
    flags below)."""
    coordinator: str | None = None
    """host:port of process 0 (default: auto-detected)."""
    num_processes: int | None = None
    """Processes in the run (default: auto-detected)."""
    process_id: int | None = None
    """This process's index (default: auto-detected)."""


_started: tuple[int, int] | None = None


def start(opts: Distributed) -> tuple[int, int]:
    """``(process index, process count)``, after ``jax.distributed.initialize`` when asked
    (once per process)."""
    global _started
    if not opts.enabled:
        return 0, 1
    if _started is None:
        import jax

        # Cross-process collectives (the final barrier) when the backend is the CPU; set
        # before the backend starts (other backends ignore it).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=opts.coordinator,
                                   num_processes=opts.num_processes, process_id=opts.process_id)
        _started = jax.process_index(), jax.process_count()
    return _started


def start_early(args: list[str]) -> None:
    """:func:`start` from a command's raw arguments, when they enable the distributed mode
    (the command's parser checks the flags again and rejects bad ones)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--distributed.enabled", dest="enabled", action="store_true")
    p.add_argument("--distributed.no-enabled", dest="enabled", action="store_false")
    p.add_argument("--distributed.coordinator", dest="coordinator", default=None)
    p.add_argument("--distributed.num-processes", dest="num_processes", type=int, default=None)
    p.add_argument("--distributed.process-id", dest="process_id", type=int, default=None)
    try:
        known, _ = p.parse_known_args(args)
    except SystemExit:
        return  # malformed: the command's own parser reports it
    if known.enabled:
        start(Distributed(**vars(known)))
