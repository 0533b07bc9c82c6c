"""Packaging layout: ``kernels/`` is importable only as ``hoijax.kernels``; the version is single-sourced.

This is also the Bazel smoke test (``bazel test //:test_package_layout``, see .ci/bazel_smoke.sh):
under Bazel ``hoijax/kernels/__init__.py`` is the copy made by the ``hoijax_kernels_files`` genrule,
under pytest it is ``kernels/__init__.py`` mapped by setuptools' ``package-dir``. The assertions
hold in both settings.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

_UNDER_BAZEL = "TEST_SRCDIR" in os.environ and "TEST_WORKSPACE" in os.environ


def _repo_root() -> Path:
    if _UNDER_BAZEL:  # runfiles tree of this test (holds pyproject.toml as data)
        return Path(os.environ["TEST_SRCDIR"]) / os.environ["TEST_WORKSPACE"]
    return Path(__file__).resolve().parent.parent


def _probe(tmp_path: Path) -> dict:
    """Import facts from a fresh interpreter whose cwd is not the repository root.

    A fresh process is needed because ``python -m pytest`` run from the repository root puts the
    root on ``sys.path``, which would expose ``kernels/`` as a top-level package regardless of how
    hoijax is installed; that is not what users of the installed package see.
    """
    code = (
        "import importlib, importlib.util, json, sys\n"
        "sys.path[:] = [p for p in sys.path if p not in ('', '.')]\n"
        "k = importlib.import_module('hoijax.kernels')\n"
        "spec = importlib.util.find_spec('kernels')\n"
        "top = None if spec is None else (spec.origin or list(spec.submodule_search_locations or []))\n"
        "print(json.dumps({'kernels_file': k.__file__, 'kernels_name': k.__name__,\n"
        "                  'top_level_kernels': top}))\n"
    )
    env = dict(os.environ)
    # Under pytest, make sure the repository root does not leak in through PYTHONPATH either.
    root = str(_repo_root())
    if not _UNDER_BAZEL and env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in env["PYTHONPATH"].split(os.pathsep) if p and Path(p).resolve() != Path(root).resolve()
        )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _assert_kernels_file(path: str) -> None:
    p = Path(path)
    assert p.name == "__init__.py", path
    assert p.parent.name == "kernels", f"hoijax.kernels should be a `kernels` package directory, got {path}"


def test_hoijax_kernels_is_a_package_from_a_kernels_directory() -> None:
    kernels = importlib.import_module("hoijax.kernels")
    assert kernels.__name__ == "hoijax.kernels"
    assert kernels.__spec__ is not None and kernels.__spec__.submodule_search_locations is not None
    _assert_kernels_file(kernels.__file__)


def test_no_top_level_kernels_module(tmp_path: Path) -> None:
    facts = _probe(tmp_path)
    assert facts["kernels_name"] == "hoijax.kernels"
    _assert_kernels_file(facts["kernels_file"])
    # A top-level `kernels` may exist from another distribution (transformers >= 5.25 installs Hugging
    # Face's `kernels` package); what must not happen is that it resolves to this repository's folder.
    top = facts["top_level_kernels"]
    if top is not None:
        ours = (_repo_root() / "kernels").resolve()
        paths = [top] if isinstance(top, str) else top
        for path in paths:
            assert ours not in [Path(path).resolve(), *Path(path).resolve().parents], (
                f"`kernels` must not be importable as a top-level name from this repository: {path}"
            )


@pytest.mark.skipif(not _UNDER_BAZEL, reason="Bazel-only: modules must come from the runfiles")
def test_under_bazel_hoijax_comes_from_runfiles() -> None:
    import hoijax
    import hoijax.kernels

    runfiles = Path(os.environ["TEST_SRCDIR"]).absolute()
    for module, rel in ((hoijax, "hoijax/__init__.py"), (hoijax.kernels, "hoijax/kernels/__init__.py")):
        path = Path(module.__file__).absolute()
        assert path.is_relative_to(runfiles), f"{module.__name__} imported from {path}, outside {runfiles}"
        assert path.as_posix().endswith(rel), path


def test_version_matches_pyproject() -> None:
    import hoijax

    pyproject = tomllib.loads((_repo_root() / "pyproject.toml").read_text(encoding="utf-8"))
    assert hoijax.__version__ == pyproject["project"]["version"]
