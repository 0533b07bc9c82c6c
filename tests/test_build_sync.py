"""The Bazel BUILD file and pyproject.toml's package list stay in step with the source tree.

Does not run Bazel (CI runs it separately, see .ci/bazel_smoke.sh). Under Bazel this test reads its
runfiles tree, which holds every file the generator reads (``//:build_inputs``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

_UNDER_BAZEL = "TEST_SRCDIR" in os.environ and "TEST_WORKSPACE" in os.environ
ROOT = (
    Path(os.environ["TEST_SRCDIR"]) / os.environ["TEST_WORKSPACE"]
    if _UNDER_BAZEL
    else Path(__file__).resolve().parent.parent
)
FIX = "run `python tools/update_build.py` and commit the updated BUILD"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_hoijax_update_build", ROOT / "tools" / "update_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up in sys.modules
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _build_strings() -> set[str]:
    return set(re.findall(r'"([^"\n]*)"', (ROOT / "BUILD").read_text(encoding="utf-8")))


def _py_files(directory: Path) -> list[str]:
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in directory.rglob("*.py")
        if not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(ROOT).parts)
    )


def test_build_file_is_up_to_date() -> None:
    gen = _generator()
    expected = gen.generate(ROOT)
    actual = (ROOT / "BUILD").read_text(encoding="utf-8")
    if actual != expected:
        import difflib

        diff = "".join(
            difflib.unified_diff(
                actual.splitlines(keepends=True), expected.splitlines(keepends=True), "BUILD", "regenerated", n=1
            )
        )
        raise AssertionError(f"BUILD is out of date with the source tree: {FIX}.\n{diff[:4000]}")


def test_every_source_and_test_file_is_in_build() -> None:
    strings = _build_strings()
    hoijax_files = [f for f in _py_files(ROOT / "hoijax") if not f.startswith("hoijax/kernels/")]
    kernel_files = _py_files(ROOT / "kernels")
    test_files = [f for f in _py_files(ROOT / "tests") if Path(f).name.startswith("test_")]
    assert (ROOT / "hoijax" / "__init__.py").is_file()
    assert kernel_files, "kernels/__init__.py is missing"
    missing = [f for f in hoijax_files + kernel_files + test_files if f not in strings]
    assert not missing, f"not in BUILD: {missing}; {FIX}"
    # Each kernel module is also published under hoijax/kernels/ by the genrule.
    missing_copies = [f for f in kernel_files if f"hoijax/{f}" not in strings]
    assert not missing_copies, f"no hoijax/kernels copy in BUILD for {missing_copies}; {FIX}"


def _tree_packages() -> set[str]:
    packages = {"hoijax"}
    for init in (ROOT / "hoijax").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if "__pycache__" in rel.parts or rel.parts[:2] == ("hoijax", "kernels"):
            continue  # hoijax/kernels only exists in Bazel's runfiles (genrule copy of kernels/)
        packages.add(".".join(rel.parts))
    for init in (ROOT / "kernels").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT / "kernels")
        packages.add(".".join(("hoijax", "kernels", *rel.parts)))
    return packages


def test_pyproject_packages_match_tree() -> None:
    setuptools_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert setuptools_cfg["package-dir"].get("hoijax.kernels") == "kernels", setuptools_cfg["package-dir"]
    listed = setuptools_cfg["packages"]
    assert len(listed) == len(set(listed)), f"duplicate entries in [tool.setuptools] packages: {listed}"
    found = _tree_packages()
    assert set(listed) == found, (
        "pyproject.toml [tool.setuptools] packages does not match the packages in the tree:\n"
        f"  missing from pyproject: {sorted(found - set(listed))}\n"
        f"  listed but not in the tree: {sorted(set(listed) - found)}"
    )
    assert found == set(_generator().Tree(ROOT).python_packages())


@pytest.mark.skipif(_UNDER_BAZEL, reason="the runfiles hold the genrule's hoijax/kernels copy by design")
def test_no_source_hoijax_kernels_directory() -> None:
    assert not (ROOT / "hoijax" / "kernels").exists(), (
        "hoijax/kernels/ must not exist in the source tree: kernels live in kernels/ and are "
        "importable as hoijax.kernels through [tool.setuptools] package-dir"
    )
