"""Reading PyTorch ``.pth`` / ``.pt`` state dicts without importing torch.

``torch.save`` (zip format, torch >= 1.6) writes a zip archive holding ``<name>/data.pkl`` (a
pickle of the state dict), ``<name>/data/<key>`` (one raw little-endian buffer per storage) and
``<name>/byteorder``. In the pickle, each tensor is a call to
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` whose ``storage`` comes
through ``persistent_load`` as ``('storage', torch.FloatStorage, key, location, numel)``.

A restricted unpickler maps exactly those globals to NumPy stand-ins (storage type -> dtype,
storage -> buffer read from the archive, rebuild -> strided view copied into an array) and
refuses every other global, so loading a checkpoint cannot run code. Everything comes back as
NumPy arrays (bfloat16 as float32).
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A weight file is missing, corrupt or unsafe, or lacks a key / has a key of the wrong shape."""


class _StorageType:
    """Stand-in for ``torch.<Dtype>Storage`` classes: only carries the element dtype."""

    def __init__(self, name: str, dtype: Any):
        self.name = name
        self.dtype = np.dtype(dtype)


# torch's legacy typed-storage class names, as pickled by torch.save.
_STORAGE_DTYPES: dict[str, Any] = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """NumPy counterpart of ``torch._utils._rebuild_tensor_v2``: a copied strided view."""
    buf: np.ndarray = storage
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    offset = int(storage_offset)
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError(f"tensor with invalid size {size} / stride {stride}")
    if 0 in size:
        return np.zeros(size, buf.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or last >= buf.size:
        raise pickle.UnpicklingError(
            f"tensor (offset {offset}, size {size}, stride {stride}) reads past its storage of "
            f"{buf.size} elements"
        )
    itemsize = buf.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        buf[offset:], shape=size, strides=tuple(s * itemsize for s in stride), writeable=False
    )
    return np.array(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _TorchUnpickler(pickle.Unpickler):
    """Admits only what a plain state dict needs; storages are served from the zip archive."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._byteorder = byteorder
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load global '{module}.{name}'")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r:.80}")
        key = str(key)
        if key not in self._storages:
            name = f"{self._prefix}data/{key}"
            try:
                raw = self._archive.read(name)
            except KeyError as e:
                raise pickle.UnpicklingError(f"storage '{name}' is missing from the archive") from e
            dtype = storage_type.dtype.newbyteorder("<" if self._byteorder == "little" else ">")
            if len(raw) != int(numel) * dtype.itemsize:
                raise pickle.UnpicklingError(
                    f"storage '{name}' has {len(raw)} bytes, expected {int(numel)} x "
                    f"{dtype.itemsize} ({storage_type.name})"
                )
            self._storages[key] = np.frombuffer(raw, dtype=dtype).astype(storage_type.dtype)
        return self._storages[key]


def _unpickle_zip(path: Path, archive: zipfile.ZipFile) -> Any:
    pkls = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if len(pkls) != 1:
        raise CheckpointError(f"{path}: not a torch.save archive (found {len(pkls)} data.pkl entries)")
    prefix = pkls[0][: -len("data.pkl")]
    names = set(archive.namelist())
    byteorder = "little"
    if f"{prefix}byteorder" in names:
        byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"{path}: unknown byteorder '{byteorder}'")
    with archive.open(pkls[0]) as f:
        return _TorchUnpickler(f, archive, prefix, byteorder).load()


def _to_numpy(value: np.ndarray) -> np.ndarray:
    return value.astype(np.float32) if value.dtype == ml_dtypes.bfloat16 else value


def read_torch_state_dict(path: PathLike) -> dict[str, np.ndarray]:
    """Read a ``torch.save`` state dict (zip format) into NumPy arrays without importing torch.

    Accepts a flat ``{name: tensor}`` dict, or a checkpoint dict that nests it under ``model``,
    ``teacher``, ``state_dict`` or ``module`` (the first of those present). bfloat16 tensors are
    returned as float32.

    Raises:
      CheckpointError: naming the file when it is missing, not a zip-format torch file,
        truncated or corrupt, refers to a global other than tensor rebuilding (``os.system``,
        arbitrary classes), or holds something other than a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            obj = _unpickle_zip(path, archive)
    except CheckpointError:
        raise
    except zipfile.BadZipFile as e:
        raise CheckpointError(
            f"{path}: corrupt or not a zip-format torch checkpoint ({e}); files written by "
            "torch < 1.6 (legacy format) must be re-saved with a recent torch"
        ) from e
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: corrupt or unsafe torch pickle: {e}") from e
    except Exception as e:  # truncated/garbled archives raise many types (EOFError, zlib, ...)
        raise CheckpointError(f"{path}: corrupt torch checkpoint ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict):
        for nest in ("model", "teacher", "state_dict", "module"):
            if isinstance(obj.get(nest), dict):
                obj = obj[nest]
                break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    out: dict[str, np.ndarray] = {}
    for k, v in obj.items():
        if not isinstance(v, np.ndarray):
            raise CheckpointError(
                f"{path}: key '{k}' is a {type(v).__name__}, not a tensor (nested checkpoints "
                "are read from 'model', 'teacher', 'state_dict' or 'module')"
            )
        out[str(k)] = _to_numpy(v)
    return out
