"""Tracker programs kept on disk as traced modules (``jax.export``), so that a later process
skips tracing and, with JAX's persistent compilation cache, compilation too.

The single-program tracker reports progress through a host callback, and JAX does not write a
program with host callbacks to its persistent cache, so the commands compiled it again in
every run; without the callback a warm start still traced and lowered the Python code (about
10 s of a 12 s start on two CPU cores), as the persistent cache is keyed by the lowered module.
An exported module needs no tracing, but it cannot hold a host callback. So with a program folder
set (:func:`use_program_cache`; the commands set it next to their compilation cache),
:func:`~hoijax.tracking.track_batch` runs the tracker as three programs, each over the whole
batch, and counts progress in Python between them:

1. ``begin``: initialization and the anchor frame's stages (``vmap`` over sequences);
2. ``step``: one step of the schedule after the anchor, called once per step;
3. ``finish``: the per-step values assembled into the :class:`TrackResult`.

The arithmetic is the single program's, cut at the scan's steps (the same functions; XLA may
round differently across the cut, which hundreds of Adam steps can amplify: equal on the
tests' two-sequence batch, 1.8e-3 at most in 2 % of the pose entries of a weight grid). A folder entry is keyed by the program's
name, the hoijax source, the JAX version and backend, the static settings and the arguments'
structure, shapes and dtypes; a stale or unreadable entry is rebuilt. :func:`ablate_batch` is
staged the same way (a ``vmap`` over the settings in each program). Not staged (they keep the
single program): ``TrackConfig.batching="map"`` and device meshes.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import pickle
import tempfile
import threading
import warnings
from pathlib import Path

import jax
import numpy as np

from hoijax import _runtime

_SOURCE_HASH: str | None = None
_FOLDER: Path | None = None
_LOADED: dict[str, Program] = {}
_LOCK = threading.Lock()
_FAILED: set[str] = set()
_JITTED: dict[str, object] = {}
_LOCKS: dict[str, threading.Lock] = {}


def _forget() -> None:
    """Drop the compiled programs held here (``hoijax._runtime.release_compiled_programs``);
    they load again from the folder, without tracing, on their next call."""
    with _LOCK:
        _LOADED.clear()
        _JITTED.clear()


_runtime.on_release(_forget)


def use_program_cache(folder: str | Path | None) -> None:
    """Keep exported tracker programs in ``folder`` (None: off, the single traced program)."""
    global _FOLDER
    _FOLDER = None if folder is None else Path(folder)


def program_cache() -> Path | None:
    """The folder set by :func:`use_program_cache`, or None."""
    return _FOLDER


def _source_hash() -> str:
    """Hash of hoijax's Python source: a changed package never loads an old program."""
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        root = Path(__file__).resolve().parent.parent
        h = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
        _SOURCE_HASH = h.hexdigest()
    return _SOURCE_HASH


def _key(name: str, static, treedef, leaves) -> str:
    shapes = [(tuple(getattr(x, "shape", np.shape(x))),
               str(getattr(x, "dtype", type(x).__name__))) for x in leaves]
    h = hashlib.sha256()
    for part in (name, _source_hash(), jax.__version__, jax.default_backend(),
                 str(jax.config.jax_enable_x64), repr(static), str(treedef), repr(shapes)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:40]


class _TreePickler(pickle.Pickler):
    """Pickles a tree structure, keeping equinox's sentinel a singleton: its generated
    ``unflatten`` tests ``is MISSING``, which a copy fails."""

    def persistent_id(self, obj):
        t = type(obj)
        if t.__module__.startswith("equinox") and t.__name__ == "_Missing":
            return (t.__module__, "MISSING")
        return None


class _TreeUnpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        module, name = pid
        return getattr(importlib.import_module(module), name)


def _dump_tree(tree) -> bytes:
    buf = io.BytesIO()
    _TreePickler(buf).dump(tree)
    blob = buf.getvalue()
    back = _load_tree(blob)  # refuse a structure that does not read back as itself
    leaves = list(range(tree.num_leaves))
    if jax.tree.structure(jax.tree.unflatten(back, leaves)) != tree:
        raise ValueError("the output structure does not survive pickling")
    return blob


def _load_tree(blob: bytes):
    return _TreeUnpickler(io.BytesIO(blob)).load()


def _write(path: Path, blob: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one


def _export(fn, treedef, leaves):
    from jax import export

    box = []

    def flat(*flat_args):
        out = fn(*jax.tree.unflatten(treedef, flat_args))
        out_leaves, out_tree = jax.tree.flatten(out)
        box.append(out_tree)
        return out_leaves

    exported = export.export(jax.jit(flat))(*leaves)
    return exported, box[0]


class Program:
    """One program of the folder, loaded or exported: :meth:`compile` ahead of the call (from
    another thread, say) and call it on arguments of the shapes it was loaded for."""

    def __init__(self, exported, out_tree, leaves):
        self._exported, self.out_tree = exported, out_tree
        self._leaves = leaves  # arrays or ShapeDtypeStructs: what a call will pass
        self._jitted = jax.jit(exported.call)
        self._compiled = None
        self._lock = threading.Lock()

    @property
    def out_shapes(self):
        """The outputs' structure with ``jax.ShapeDtypeStruct`` leaves."""
        return jax.tree.unflatten(self.out_tree, [jax.ShapeDtypeStruct(a.shape, a.dtype)
                                                  for a in self._exported.out_avals])

    def compile(self) -> None:
        """Compile now (XLA, or a load from the persistent cache); XLA releases Python's
        lock while it compiles, so programs compile in parallel threads."""
        with self._lock:
            if self._compiled is None:
                self._compiled = self._jitted.lower(*self._leaves).compile()

    def __call__(self, leaves):
        if self._compiled is not None:
            try:
                return self._compiled(*leaves)
            except (TypeError, ValueError):  # other weak types or layouts than compiled for: jit's path
                self._compiled = None
        return self._jitted(*leaves)


def _lock_for(key: str) -> threading.Lock:
    with _LOCK:
        return _LOCKS.setdefault(key, threading.Lock())


def load(name: str, fn, static, *args) -> Program | None:
    """The program ``name`` for arguments like ``args`` (arrays, or ``jax.ShapeDtypeStruct``
    where only shapes are known yet), loaded from the folder or traced, exported and saved;
    one per process. None without a folder or when exporting fails (reported once)."""
    leaves, treedef = jax.tree.flatten(args)
    folder = _FOLDER
    if folder is None or name in _FAILED:
        return None
    key = _key(name, static, treedef, leaves)
    with _lock_for(key):
        if key not in _LOADED:
            try:
                exported, out_tree = _load_or_export(folder, name, key, fn, treedef, leaves)
            except Exception as e:  # noqa: BLE001 - any failure falls back to tracing
                _FAILED.add(name)
                warnings.warn(f"hoijax: the tracker program {name!r} could not be exported "
                              f"to {folder} ({type(e).__name__}: {e}); it is traced instead",
                              stacklevel=2)
                return None
            _LOADED[key] = Program(exported, out_tree, leaves)
        return _LOADED[key]


def call(name: str, fn, static, *args):
    """``fn(*args)`` through the exported program ``name`` (``static``: whatever ``fn`` closes
    over that changes the program, hashed into the key): :func:`load`, then call. Without a
    folder, or when exporting fails, ``jax.jit(fn)(*args)`` (one ``jit`` per key)."""
    program = load(name, fn, static, *args)
    if program is None:
        leaves, treedef = jax.tree.flatten(args)
        return _traced(_key(name, static, treedef, leaves), fn)(*args)
    return jax.tree.unflatten(program.out_tree, program(jax.tree.leaves(args)))


def _traced(key: str, fn):
    """One ``jax.jit`` per key: ``fn`` is a fresh closure per call, which ``jit`` would trace
    again every time."""
    if key not in _JITTED:
        _JITTED[key] = jax.jit(fn)
    return _JITTED[key]


def _load_or_export(folder: Path, name: str, key: str, fn, treedef, leaves):
    from jax import export

    module, tree = folder / f"{name}-{key}.jaxexport", folder / f"{name}-{key}.tree"
    exported = out_tree = None
    if module.exists() and tree.exists():
        try:
            exported = export.deserialize(bytearray(module.read_bytes()))
            out_tree = _load_tree(tree.read_bytes())
        except Exception as e:  # noqa: BLE001 - a damaged entry is rebuilt
            warnings.warn(f"hoijax: {module} could not be read ({type(e).__name__}: {e}); "
                          "tracing the program again", stacklevel=4)
            exported = None
    if exported is None:
        fresh, out_tree = _export(fn, treedef, leaves)
        blob = fresh.serialize()
        folder.mkdir(parents=True, exist_ok=True)
        _write(module, bytes(blob))
        _write(tree, _dump_tree(out_tree))
        # Compile the module as it reads back, so that a later process's compilation of the
        # loaded module is a hit in the persistent cache.
        exported = export.deserialize(bytearray(blob))
    return exported, out_tree


__all__ = ["Program", "call", "load", "program_cache", "use_program_cache"]
