"""Entry point of every Bazel `py_test` in //:BUILD: runs pytest on the test files given as arguments.

Bazel runs this file with the interpreter of //:python_toolchain (the `python3` on PATH, i.e. the
venv) from the runfiles tree of the test. Before pytest starts, this script

* removes the setuptools *editable* finder of hoijax from ``sys.meta_path``, so that ``hoijax`` and
  ``hoijax.kernels`` can only come from the runfiles (the declared ``deps``; ``hoijax/kernels`` is the
  copy made by the ``hoijax_kernels_files`` genrule) and a missing dependency fails instead of
  silently importing the source checkout;
* keeps pytest and Hypothesis from writing into the read-only runfiles (cache in $TEST_TMPDIR);
* writes a JUnit report to $XML_OUTPUT_FILE when Bazel asks for one.
"""

from __future__ import annotations

import os
import sys


def _drop_editable_hoijax_finder() -> None:
    def is_editable_hoijax(finder: object) -> bool:
        module = getattr(finder, "__module__", "") or ""
        return module.startswith("__editable__") and "hoijax" in module

    sys.meta_path[:] = [f for f in sys.meta_path if not is_editable_hoijax(f)]


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: bazel_pytest_main.py TEST_FILE [TEST_FILE ...] [-- PYTEST_ARGS]", file=sys.stderr)
        return 2
    _drop_editable_hoijax_finder()
    # sys.path[0] is this script's directory (tools/): nothing there is meant to be imported by tests.
    script_dir = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != script_dir]

    tmp = os.environ.get("TEST_TMPDIR")
    if tmp:
        os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tmp, ".hypothesis"))
    args = ["-p", "no:cacheprovider"]
    xml = os.environ.get("XML_OUTPUT_FILE")
    if xml:
        args.append(f"--junitxml={xml}")

    try:
        import pytest
    except ImportError:
        print(
            f"bazel_pytest_main.py: {sys.executable} has no pytest: Bazel runs tests with the python3 "
            "first on PATH; activate the hoijax venv before running bazel",
            file=sys.stderr,
        )
        return 2

    return int(pytest.main(args + argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
