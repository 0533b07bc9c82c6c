"""Reading and writing MANO model files without chumpy.

The official ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (v1.2) are Python-2 pickles in which some
arrays are chumpy ``Ch`` objects and ``J_regressor`` is a ``scipy.sparse.csc_matrix``. Unpickling
them normally needs chumpy (unmaintained, broken on recent NumPy) and runs arbitrary code. Here a
restricted unpickler admits only the NumPy array machinery and maps chumpy and scipy-sparse
classes to inert stand-ins that are turned into dense NumPy arrays afterwards.
"""

from __future__ import annotations

import codecs
import copyreg
import importlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from hoijax.mano._model import NUM_JOINTS, ManoModel, Side, model_from_arrays

PathLike = str | os.PathLike


class ManoFileError(ValueError):
    """A MANO model file is missing, corrupt, or has a missing or malformed field."""


# ---------------------------------------------------------------------------------------------
# Restricted unpickling


class _StandIn:
    """Records the pickled state of an object whose class is not imported.

    Unpickling creates it with ``__new__`` (no ``__init__``) and then calls ``__setstate__``.
    """

    origin = "?"  # the pickled class, ``module.name``
    state: dict = {}  # replaced per instance by __setstate__

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"__state__": state}


class _ChumpyStandIn(_StandIn):
    """A chumpy object: plain ``Ch`` arrays keep their value in ``state['x']``."""


class _SparseStandIn(_StandIn):
    """A scipy.sparse matrix: ``fmt`` is ``csc``, ``csr`` or ``coo``."""

    fmt = "csc"


def _standin(base: type, module: str, name: str, **attrs) -> type:
    return type(name, (base,), {"origin": f"{module}.{name}", **attrs})


# Inert containers that chumpy's pickled state uses (``_dirty_vars`` is a set).
_SAFE_BUILTINS = {t.__name__: t for t in (object, set, frozenset, list, dict, tuple, slice,
                                          complex, bytearray)}


class _RestrictedUnpickler(pickle.Unpickler):
    """Allows NumPy arrays and maps chumpy / scipy.sparse to stand-ins; refuses everything else."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("chumpy"):
            return _standin(_ChumpyStandIn, module, name)
        if module.startswith("scipy.sparse") and name.endswith("_matrix"):
            return _standin(_SparseStandIn, module, name, fmt=name[:3])
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
            "_reconstruct", "scalar"
        ):
            return getattr(_numpy_core("multiarray"), name)
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return _numpy_core("numeric")._frombuffer
        if (module, name) in (("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")):
            return copyreg._reconstructor
        if module in ("__builtin__", "builtins") and name in _SAFE_BUILTINS:
            return _SAFE_BUILTINS[name]
        if (module, name) == ("_codecs", "encode"):
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load global '{module}.{name}'")


def _numpy_core(name: str):
    """``numpy._core.<name>`` on NumPy 2, ``numpy.core.<name>`` on NumPy 1."""
    try:
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:  # pragma: no cover - NumPy 1.x
        return importlib.import_module(f"numpy.core.{name}")


def _to_dense(value: Any, path: Path, key: str) -> Any:
    """Turn stand-ins into NumPy arrays; plain values pass through."""
    if isinstance(value, _ChumpyStandIn):
        if "x" in value.state:
            return np.asarray(value.state["x"], dtype=np.float64)
        raise ManoFileError(
            f"{path}: field '{key}' is a chumpy expression ({value.origin}) rather than a plain "
            "chumpy array; re-save the model with its evaluated arrays (`.r`)."
        )
    if isinstance(value, _SparseStandIn):
        return _sparse_to_dense(value, path, key)
    return value


def _sparse_to_dense(m: _SparseStandIn, path: Path, key: str) -> np.ndarray:
    st = m.state
    shape = st.get("_shape", st.get("shape"))
    try:
        rows, cols = (int(s) for s in shape)
        data = np.asarray(st["data"], np.float64)
        if m.fmt in ("csc", "csr"):
            indices = np.asarray(st["indices"], np.int64)
            indptr = np.asarray(st["indptr"], np.int64)
            major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            r, c = (indices, major) if m.fmt == "csc" else (major, indices)
        elif m.fmt == "coo":
            r = np.asarray(st.get("row", st.get("coords", [None])[0]), np.int64)
            c = np.asarray(st.get("col", st.get("coords", [None, None])[1]), np.int64)
        else:
            raise KeyError(m.fmt)
        dense = np.zeros((rows, cols), np.float64)
        np.add.at(dense, (r, c), data)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ManoFileError(
            f"{path}: field '{key}' is a scipy.sparse {m.fmt} matrix with unreadable state ({e!r})"
        ) from e
    return dense


def read_official_pickle(path: PathLike) -> dict[str, Any]:
    """Read an official-layout MANO pickle into a dict of NumPy arrays, chumpy not needed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ManoFileError(f"{path}: cannot read MANO model file ({e.strerror})") from e
    try:
        data = _RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise ManoFileError(f"{path}: corrupt or unsafe MANO pickle: {e}") from e
    except Exception as e:  # truncated or garbled streams raise many types
        raise ManoFileError(f"{path}: corrupt MANO pickle ({type(e).__name__}: {e})") from e
    if not isinstance(data, dict):
        raise ManoFileError(f"{path}: expected a dict of model fields, found {type(data).__name__}")
    return {k: _to_dense(v, path, k) for k, v in data.items()}


# ---------------------------------------------------------------------------------------------
# Validation

_REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table",
             "f", "hands_components", "hands_mean")


def validate_arrays(arrays: dict[str, Any], path: PathLike) -> dict[str, np.ndarray]:
    """Check presence, shapes and finiteness of the official fields; return them as arrays."""
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise ManoFileError(f"{path}: missing MANO field(s) {missing}")
    out: dict[str, np.ndarray] = {}
    for k in _REQUIRED:
        try:
            out[k] = np.asarray(arrays[k])
        except Exception as e:
            raise ManoFileError(f"{path}: field '{k}' is not an array ({e})") from e

    def bad(key: str, why: str) -> ManoFileError:
        return ManoFileError(f"{path}: field '{key}' {why} (shape {out[key].shape})")

    v = out["v_template"]
    if v.ndim != 2 or v.shape[1] != 3:
        raise bad("v_template", "must have shape (V, 3)")
    nv = v.shape[0]
    if out["shapedirs"].ndim != 3 or out["shapedirs"].shape[:2] != (nv, 3):
        raise bad("shapedirs", f"must have shape ({nv}, 3, S)")
    nj = NUM_JOINTS
    if out["posedirs"].shape != (nv, 3, 9 * (nj - 1)):
        raise bad("posedirs", f"must have shape ({nv}, 3, {9 * (nj - 1)})")
    if out["J_regressor"].shape != (nj, nv):
        raise bad("J_regressor", f"must have shape ({nj}, {nv})")
    if out["weights"].shape != (nv, nj):
        raise bad("weights", f"must have shape ({nv}, {nj})")
    if out["kintree_table"].shape != (2, nj):
        raise bad("kintree_table", f"must have shape (2, {nj})")
    f = out["f"]
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise bad("f", "must be integer faces of shape (F, 3)")
    if f.size and (f.min() < 0 or f.max() >= nv):
        raise bad("f", f"indexes vertices outside [0, {nv})")
    hc = out["hands_components"]
    if hc.ndim != 2 or hc.shape[1] != 45 or hc.shape[0] < 1:
        raise bad("hands_components", "must have shape (C, 45)")
    if out["hands_mean"].shape != (45,):
        raise bad("hands_mean", "must have shape (45,)")
    parents = out["kintree_table"][0].astype(np.int64)
    parents[0] = -1
    if np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, nj)):
        raise bad("kintree_table", "must list each joint's parent before the joint")
    for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights",
              "hands_components", "hands_mean"):
        if not np.issubdtype(out[k].dtype, np.number) or not np.all(np.isfinite(out[k])):
            raise bad(k, "contains non-numeric or non-finite values")
    return out


def _side_from(path: Path, arrays: dict[str, Any], side: Side | None) -> Side:
    if side is not None:
        if side not in ("right", "left"):
            raise ValueError(f"side must be 'right' or 'left', got {side!r}")
        return side
    if "side" in arrays:
        return str(np.asarray(arrays["side"]))  # type: ignore[return-value]
    name = path.name.upper()
    return "left" if "LEFT" in name else "right"


# ---------------------------------------------------------------------------------------------
# Public API


def load_mano(path: PathLike, *, side: Side | None = None) -> ManoModel:
    """Load a MANO model from the official ``.pkl`` (chumpy not needed) or a hoijax ``.npz``.

    Args:
      path: ``MANO_RIGHT.pkl``, ``MANO_LEFT.pkl``, a synthetic model in the same layout, or an
        ``.npz`` written by :func:`save_mano_npz`. A directory is resolved to
        ``MANO_{RIGHT,LEFT}.pkl`` inside it, following smplx.
      side: ``"right"`` or ``"left"``. By default taken from the ``.npz`` or, like smplx, from
        ``LEFT`` in the file name (right otherwise).

    Raises:
      ManoFileError: naming the file and the field that is missing or malformed.
    """
    path = Path(path)
    if path.is_dir():
        path = path / f"MANO_{'LEFT' if side == 'left' else 'RIGHT'}.pkl"
    if not path.exists():
        raise ManoFileError(f"{path}: MANO model file does not exist")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        except Exception as e:
            raise ManoFileError(f"{path}: corrupt .npz ({type(e).__name__}: {e})") from e
    else:
        raw = read_official_pickle(path)
    arrays = validate_arrays(raw, path)
    return model_from_arrays(arrays, _side_from(path, raw, side))


def model_to_arrays(model: ManoModel) -> dict[str, np.ndarray]:
    """The official-layout arrays of a model (``kintree_table`` row 0 holds uint32-max root)."""
    parents = np.asarray(model.parents, np.int64)
    kintree = np.stack([np.where(parents < 0, 2**32 - 1, parents), np.arange(len(parents))])
    v = np.asarray(model.v_template, np.float64)
    jr = np.asarray(model.J_regressor, np.float64)
    return {
        "v_template": v,
        "shapedirs": np.asarray(model.shapedirs, np.float64),
        "posedirs": np.asarray(model.posedirs, np.float64),
        "J_regressor": jr,
        "J": jr @ v,
        "weights": np.asarray(model.lbs_weights, np.float64),
        "kintree_table": kintree.astype(np.int64),
        "f": np.asarray(model.faces, np.uint32),
        "hands_components": np.asarray(model.hands_components, np.float64),
        "hands_mean": np.asarray(model.hands_mean, np.float64),
    }


def save_mano_npz(model: ManoModel, path: PathLike) -> Path:
    """Write a model as a plain ``.npz`` (official key names plus ``side``); no pickle inside."""
    path = Path(path)
    arrays = model_to_arrays(model)
    np.savez(path, side=np.asarray(model.side), **arrays)
    return path
