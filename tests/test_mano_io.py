"""MANO file loading: official chumpy-layout pickles without chumpy, npz round trips, bad files."""

from __future__ import annotations

import contextlib
import importlib.util
import pickle
import sys
import types

import numpy as np
import pytest

from hoijax import mano


class _FakeCh:
    """Pickles exactly like ``chumpy.ch.Ch``: its ``__getstate__`` is the instance dict."""

    def __init__(self, x):
        self.x = np.asarray(x, np.float64)
        self._dirty_vars = set()
        self._itr = None
        self._depends_on_deps = {}
        self._make_dense = False
        self._make_sparse = False

    def __getstate__(self):
        return dict(self.__dict__)


class _FakeChExpr(_FakeCh):
    """Stands for a derived chumpy expression (e.g. ``chumpy.ch_ops.add``) with no ``x``."""

    def __getstate__(self):
        return {"a": np.ones(3), "b": np.ones(3)}


class _FakeOldCsc:
    """Pickles like a ``scipy.sparse.csc.csc_matrix`` from the era of the official files."""

    def __init__(self, dense):
        cols = [np.nonzero(dense[:, j])[0] for j in range(dense.shape[1])]
        self.indices = np.concatenate(cols).astype(np.int32)
        self.indptr = np.concatenate([[0], np.cumsum([len(c) for c in cols])]).astype(np.int32)
        self.data = np.concatenate([dense[c, j] for j, c in enumerate(cols)])
        self._shape = dense.shape
        self.maxprint = 50
        self.format = "csc"


@contextlib.contextmanager
def _fake_modules(**classes_by_module):
    """Register throwaway modules so pickle can name the fake classes like the real ones."""
    saved = {}

    def install(name, mod):
        saved.setdefault(name, sys.modules.get(name))
        sys.modules[name] = mod

    made = {}
    for module_name, classes in classes_by_module.items():
        parent = module_name.split(".")[0]
        if parent not in sys.modules:  # pickle imports the parent package first
            install(parent, types.ModuleType(parent))
        mod = types.ModuleType(module_name)
        for cls_name, cls in classes.items():
            cls = type(cls_name, (cls,), {"__module__": module_name, "__qualname__": cls_name})
            setattr(mod, cls_name, cls)
        install(module_name, mod)
        made[module_name] = mod
    try:
        yield made
    finally:
        for name, previous in saved.items():
            if previous is None:
                del sys.modules[name]
            else:
                sys.modules[name] = previous


def _official_layout_pickle(path, sparse: str = "old"):
    """Write the synthetic right hand the way ``MANO_RIGHT.pkl`` v1.2 stores its fields."""
    arrays = mano.synthetic_mano_arrays("right")
    data = dict(arrays)
    fakes = {"chumpy.ch": {"Ch": _FakeCh}}
    if sparse == "old":
        fakes["scipy.sparse.csc"] = {"csc_matrix": _FakeOldCsc}
    else:
        scipy_sparse = pytest.importorskip("scipy.sparse")
        data["J_regressor"] = scipy_sparse.csc_matrix(arrays["J_regressor"])
    with _fake_modules(**fakes) as mods:
        data["shapedirs"] = mods["chumpy.ch"].Ch(arrays["shapedirs"])
        if sparse == "old":
            data["J_regressor"] = mods["scipy.sparse.csc"].csc_matrix(arrays["J_regressor"])
        with open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=2)
    return arrays


@pytest.mark.parametrize("sparse", ["old", "current_scipy"])
def test_official_chumpy_layout_loads_without_chumpy(tmp_path, sparse):
    assert importlib.util.find_spec("chumpy") is None, "this test must run without chumpy"
    path = tmp_path / "MANO_RIGHT.pkl"
    arrays = _official_layout_pickle(path, sparse)
    raw = path.read_bytes()
    assert b"chumpy.ch" in raw  # the file really references chumpy ...
    with pytest.raises(ModuleNotFoundError, match="chumpy"):
        pickle.loads(raw, encoding="latin1")  # ... so a plain unpickler cannot read it

    model = mano.load_mano(path)
    assert model.side == "right"
    np.testing.assert_allclose(np.asarray(model.shapedirs), arrays["shapedirs"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(model.J_regressor), arrays["J_regressor"], atol=1e-7)
    np.testing.assert_allclose(np.asarray(model.v_template), arrays["v_template"], atol=1e-7)
    assert model.parents == (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
    assert np.array_equal(np.asarray(model.faces), arrays["f"].astype(np.int32))


def test_chumpy_expression_is_named(tmp_path):
    path = tmp_path / "MANO_RIGHT.pkl"
    data = dict(mano.synthetic_mano_arrays("right"))
    with _fake_modules(**{"chumpy.ch_ops": {"add": _FakeChExpr}}) as mods:
        data["v_template"] = mods["chumpy.ch_ops"].add(np.zeros(3))
        path.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(mano.ManoFileError, match=r"MANO_RIGHT\.pkl.*'v_template'.*chumpy"):
        mano.load_mano(path)


def test_refuses_arbitrary_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))

    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    with pytest.raises(mano.ManoFileError, match=r"MANO_RIGHT\.pkl.*refusing to load global"):
        mano.load_mano(path)


def test_npz_round_trip(tmp_path):
    left = mano.synthetic_mano("left")
    path = mano.save_mano_npz(left, tmp_path / "hand.npz")
    back = mano.load_mano(path)
    assert back.side == "left"  # taken from the file, not the name
    for name in ("v_template", "shapedirs", "posedirs", "J_regressor", "lbs_weights",
                 "hands_components", "hands_mean", "faces"):
        np.testing.assert_array_equal(np.asarray(getattr(back, name)),
                                      np.asarray(getattr(left, name)), err_msg=name)
    assert back.parents == left.parents


def test_synthetic_pickle_loads_with_plain_pickle(synthetic_mano_dir):
    """What smplx does: ``pickle.load(f, encoding='latin1')`` with no extra modules."""
    with open(synthetic_mano_dir / "MANO_LEFT.pkl", "rb") as fh:
        data = pickle.load(fh, encoding="latin1")
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table",
                "f", "hands_components", "hands_mean", "J", "bs_style", "bs_type"):
        assert key in data, key
    assert data["kintree_table"][0, 0] == 2**32 - 1
    model = mano.load_mano(synthetic_mano_dir / "MANO_LEFT.pkl")
    assert model.side == "left"


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path


def test_missing_key_named(tmp_path):
    data = dict(mano.synthetic_mano_arrays("right"))
    del data["posedirs"]
    path = _write(tmp_path, "MANO_RIGHT.pkl", data)
    with pytest.raises(mano.ManoFileError, match=r"MANO_RIGHT\.pkl.*missing.*posedirs"):
        mano.load_mano(path)


@pytest.mark.parametrize("key, value, pattern", [
    ("shapedirs", np.zeros((778, 10)), "shapedirs"),
    ("weights", np.zeros((778, 15)), "weights"),
    ("f", np.full((10, 3), 999, np.int64), "'f' indexes vertices outside"),
    ("hands_mean", np.full(45, np.nan), "'hands_mean' contains non-numeric or non-finite"),
    ("kintree_table", np.zeros((2, 16), np.int64) + np.arange(16), "kintree_table"),
])
def test_bad_field_named(tmp_path, key, value, pattern):
    data = dict(mano.synthetic_mano_arrays("right"))
    data[key] = value
    path = _write(tmp_path, "MANO_RIGHT.pkl", data)
    with pytest.raises(mano.ManoFileError, match=rf"MANO_RIGHT\.pkl.*{pattern}"):
        mano.load_mano(path)


def test_corrupt_and_missing_files(tmp_path, synthetic_mano_dir):
    good = (synthetic_mano_dir / "MANO_RIGHT.pkl").read_bytes()
    truncated = tmp_path / "MANO_RIGHT.pkl"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(mano.ManoFileError, match=r"MANO_RIGHT\.pkl.*corrupt"):
        mano.load_mano(truncated)
    not_a_dict = _write(tmp_path, "list.pkl", [1, 2, 3])
    with pytest.raises(mano.ManoFileError, match=r"list\.pkl.*expected a dict"):
        mano.load_mano(not_a_dict)
    with pytest.raises(mano.ManoFileError, match=r"nope\.pkl.*does not exist"):
        mano.load_mano(tmp_path / "nope.pkl")
    bad_npz = tmp_path / "hand.npz"
    bad_npz.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(mano.ManoFileError, match=r"hand\.npz.*corrupt"):
        mano.load_mano(bad_npz)


def test_directory_resolves_like_smplx(synthetic_mano_dir):
    assert mano.load_mano(synthetic_mano_dir, side="left").side == "left"
    right = mano.load_mano(synthetic_mano_dir)
    np.testing.assert_array_equal(np.asarray(right.v_template),
                                  np.asarray(mano.synthetic_mano("right").v_template))
