"""Programs kept on disk by ``jax.export`` (hoijax.tracking._programs): loaded back without
tracing, keyed by what changes the program, rebuilt when damaged, traced when not exportable."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hoijax.tracking import _programs


class _Out(eqx.Module):
    value: jax.Array
    total: jax.Array
    tag: str = eqx.field(static=True)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(_programs, "_LOADED", {})
    monkeypatch.setattr(_programs, "_FAILED", set())
    monkeypatch.setattr(_programs, "_JITTED", {})
    monkeypatch.setattr(_programs, "_FOLDER", None)
    _programs.use_program_cache(tmp_path)
    return tmp_path


def _toy(traces):
    def fn(x, y):
        traces.append(1)
        return _Out(x * 2.0 + y, jnp.sum(x), "toy")
    return fn


def test_a_saved_program_loads_in_a_new_process_without_tracing(folder, monkeypatch):
    traces = []
    x, y = jnp.arange(6.0).reshape(2, 3), jnp.ones(3)
    first = _programs.call("toy", _toy(traces), "s", x, y)
    assert len(traces) == 1 and len(list(folder.glob("toy-*.jaxexport"))) == 1
    # A new process: nothing loaded in memory; the module and the output structure (an
    # equinox module, whose sentinel must survive pickling) come from the folder.
    monkeypatch.setattr(_programs, "_LOADED", {})
    again = _programs.call("toy", _toy(traces), "s", x, y)
    assert len(traces) == 1  # not traced again
    assert isinstance(again, _Out) and again.tag == "toy"
    np.testing.assert_array_equal(np.asarray(again.value), np.asarray(x * 2 + y))
    np.testing.assert_array_equal(np.asarray(again.total), np.asarray(first.total))
    # Another static setting or another shape is another program.
    _programs.call("toy", _toy(traces), "other", x, y)
    _programs.call("toy", _toy(traces), "s", x[:1], y)
    assert len(traces) == 3 and len(list(folder.glob("toy-*.jaxexport"))) == 3


def test_a_damaged_entry_is_rebuilt_with_a_warning(folder, monkeypatch):
    traces = []
    x, y = jnp.arange(3.0), jnp.ones(3)
    _programs.call("toy", _toy(traces), "s", x, y)
    (entry,) = folder.glob("toy-*.jaxexport")
    entry.write_bytes(b"not a module")
    monkeypatch.setattr(_programs, "_LOADED", {})
    with pytest.warns(UserWarning, match="could not be read"):
        out = _programs.call("toy", _toy(traces), "s", x, y)
    assert len(traces) == 2
    np.testing.assert_array_equal(np.asarray(out.value), np.asarray(x * 2 + y))
    assert entry.read_bytes() != b"not a module"


def test_a_program_that_cannot_be_exported_is_traced_instead(folder):
    seen = []

    def with_callback(x):
        jax.debug.callback(lambda v: seen.append(float(v)), jnp.sum(x))
        return x + 1.0

    with pytest.warns(UserWarning, match="could not be exported"):
        out = _programs.call("cb", with_callback, None, jnp.ones(2))
    np.testing.assert_array_equal(np.asarray(out), [2.0, 2.0])
    out = _programs.call("cb", with_callback, None, jnp.ones(2))  # no second warning
    jax.effects_barrier()
    assert seen == [2.0, 2.0] and not list(folder.glob("cb-*"))


def test_without_a_folder_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(_programs, "_FOLDER", None)
    monkeypatch.setattr(_programs, "_JITTED", {})
    traces = []
    out = _programs.call("toy", _toy(traces), "s", jnp.ones(2), jnp.ones(2))
    _programs.call("toy", _toy(traces), "s", jnp.ones(2), jnp.ones(2))
    assert len(traces) == 1 and out.tag == "toy" and not list(tmp_path.iterdir())


def test_releasing_compiled_programs_drops_the_loaded_ones_too(folder):
    # The driver drops compiled programs near the kernel's limit on memory mappings
    # (hoijax._runtime); programs held here must go too, and load back without tracing.
    from hoijax import _runtime

    traces = []
    x, y = jnp.arange(3.0), jnp.ones(3)
    _programs.call("toy", _toy(traces), "s", x, y)
    assert _programs._LOADED
    _runtime.release_compiled_programs()
    assert not _programs._LOADED
    out = _programs.call("toy", _toy(traces), "s", x, y)
    assert len(traces) == 1
    np.testing.assert_array_equal(np.asarray(out.value), np.asarray(x * 2 + y))


def test_a_program_loaded_from_shapes_compiles_ahead_and_runs_on_arrays(folder):
    traces = []
    x, y = jnp.arange(3.0), jnp.ones(3)
    shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (x, y)]
    program = _programs.load("toy", _toy(traces), "s", *shapes)
    out_shapes = program.out_shapes
    assert isinstance(out_shapes, _Out) and out_shapes.value.shape == (3,)
    program.compile()
    assert program._compiled is not None
    out = _programs.call("toy", _toy(traces), "s", x, y)  # the same entry, compiled
    assert len(traces) == 1 and program._compiled is not None
    np.testing.assert_array_equal(np.asarray(out.value), np.asarray(x * 2 + y))
