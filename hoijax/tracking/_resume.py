"""Finished chunks of a tracking run, checkpointed with orbax so a killed run can resume.

Each finished chunk of sequences is one orbax checkpoint step: the chunk's results (one array
tree per sequence, a list of them for an ablation grid) and their names. Orbax writes a step
to a temporary folder and renames it when complete, so a run killed mid-save leaves nothing
that a resumed run counts as done; the resumed run re-tracks what is missing, and its final
results equal an uninterrupted run's (each sequence's random key follows its name).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from hoijax.tracking._track import TrackResult


def _tree(result: TrackResult) -> dict[str, np.ndarray]:
    return {f.name: np.asarray(getattr(result, f.name)) for f in dataclasses.fields(result)
            if getattr(result, f.name) is not None}


def _result(tree: dict) -> TrackResult:
    return TrackResult(**{f.name: None if f.name not in tree else jnp.asarray(tree[f.name])
                          for f in dataclasses.fields(TrackResult)})


class ChunkStore:
    """The finished chunks of one run under ``directory`` (one process's: each process of a
    distributed run keeps its own)."""

    def __init__(self, directory: str | Path, *, resume: bool):
        directory = Path(directory).absolute()
        if not resume and directory.exists():
            shutil.rmtree(directory)  # a fresh run: earlier chunks are not this run's
        # Each process of a distributed run keeps its own chunks: orbax is told this manager
        # spans this process alone (by default it would let process 0 write for everyone and
        # sync every save across processes, which track different chunks).
        me = jax.process_index()
        directory.mkdir(parents=True, exist_ok=True)
        self._mgr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
            create=False, enable_async_checkpointing=False, cleanup_tmp_directories=True,
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                primary_host=me, active_processes={me},
                barrier_sync_key_prefix=f"hoijax_chunks_{me}")))

    def done(self) -> tuple[dict[str, TrackResult | list[TrackResult]], dict]:
        """Every sequence of every complete chunk, by name, and the run's ``info`` as of the
        last complete chunk (``capacity``: sequences re-run with a larger capacity;
        ``overflow``: sequences that still overflowed)."""
        out: dict = {}
        info = {"capacity": {}, "overflow": []}
        for step in self._mgr.all_steps():
            got = self._mgr.restore(step, args=ocp.args.Composite(
                results=ocp.args.StandardRestore(), names=ocp.args.JsonRestore()))
            for i, name in enumerate(got["names"]["names"]):
                tree = got["results"][str(i)]
                out[name] = ([_result(tree[str(g)]) for g in range(len(tree))]
                             if "0" in tree else _result(tree))
            info = {k: got["names"][k] for k in info}
        return out, info

    def save(self, results: dict[str, TrackResult | list[TrackResult]], info: dict) -> None:
        """One finished chunk (written completely, or not at all) and the run's ``info``."""
        if not results:
            return
        names = list(results)
        trees = {str(i): ({str(g): _tree(r) for g, r in enumerate(results[n])}
                          if isinstance(results[n], list) else _tree(results[n]))
                 for i, n in enumerate(names)}
        step = max(self._mgr.all_steps(), default=-1) + 1
        self._mgr.save(step, args=ocp.args.Composite(results=ocp.args.StandardSave(trees),
                                                     names=ocp.args.JsonSave({"names": names, **info})))
        self._mgr.wait_until_finished()
