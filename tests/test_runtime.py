"""hoijax's XLA:CPU settings: NaNs must survive min/max reductions (they flag failed sequences)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hoijax import _runtime

PROBE = """
import {first}
import jax, jax.numpy as jnp
a = jnp.ones((64, 64)).at[3, 3].set(jnp.nan)
row_max = jax.jit(lambda a: jnp.max(a, axis=1))(a)
print(bool(jnp.isnan(row_max[3])), bool(jnp.isnan(jnp.max(a))), bool(jnp.isnan(jnp.min(a))))
"""


def _run(first: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "HOIJAX_KEEP_XLA_FLAGS")}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", PROBE.format(first=first)], env=environ,
                          capture_output=True, text=True, timeout=120, check=True)


def test_nan_survives_reductions_after_importing_hoijax():
    out = _run("hoijax")
    assert out.stdout.split() == ["True", "True", "True"], out.stdout + out.stderr


@pytest.mark.skipif(_runtime._jaxlib_release() not in _runtime._CHECKED,
                    reason="the flag is set only on the jaxlib releases it was checked on")
def test_flag_is_set_once_and_respects_the_user():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = ("import os, hoijax; from hoijax import _runtime; "
            "print(os.environ['XLA_FLAGS']); print(_runtime.configure_xla_cpu())")
    out = subprocess.run([sys.executable, "-c", code], env={**env, "XLA_FLAGS": "--xla_dump_hlo_as_text"},
                         capture_output=True, text=True, timeout=120, check=True).stdout.split("\n")
    assert out[0] == "--xla_dump_hlo_as_text --xla_cpu_experimental_ynn_fusion_type="
    assert out[1] == "False"   # a second call adds nothing
    kept = _run("hoijax", HOIJAX_KEEP_XLA_FLAGS="1", XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=")
    assert kept.stdout.split() == ["True", "True", "True"]


@pytest.mark.skipif(_runtime._jaxlib_release() not in _runtime._CHECKED,
                    reason="the flag is set only on the jaxlib releases it was checked on")
def test_importing_hoijax_after_the_backend_started_warns():
    code = ("import warnings, jax.numpy as jnp; jnp.ones(1).block_until_ready()\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always'); import hoijax\n"
            "print(any('YNNPACK' in str(x.message) for x in w))")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "True", out.stderr
