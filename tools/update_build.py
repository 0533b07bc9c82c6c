#!/usr/bin/env python3
"""Regenerate the root Bazel ``BUILD`` file from the source tree.

Usage (from anywhere)::

    python tools/update_build.py          # rewrite BUILD if it is out of date
    python tools/update_build.py --check  # exit 1 (and write nothing) if BUILD is out of date

The BUILD file is a pure function of the files on disk, written deterministically (sorted, explicit
``srcs`` lists, no globs):

* ``py_library(name = "hoijax")``: the modules directly in ``hoijax/`` (``hoijax/__init__.py``, ...);
* ``py_library(name = "hoijax_<sub>")`` for every subpackage ``hoijax/<sub>/__init__.py``, with all
  the ``.py`` files below that directory;
* ``kernels/`` is importable only as ``hoijax.kernels`` (setuptools ``package-dir``). Bazel gets the
  same layout from the ``hoijax_kernels_files`` genrule, which copies ``kernels/**.py`` to
  ``hoijax/kernels/**.py`` in the output tree, and ``py_library(name = "hoijax_kernels")`` over
  those copies;
* ``py_library(name = "tests_helpers")``: ``tests/conftest.py`` and the other non-test modules and
  data files under ``tests/``;
* one ``py_test`` per ``tests/**/test_*.py``, run by pytest through ``tools/bazel_pytest_main.py``.

Dependencies between those targets are derived with ``ast`` from ``import hoijax.X``,
``from hoijax.X import ...``, ``from hoijax import X`` and relative imports, anywhere in a module
(function-level imports included). Every hoijax subpackage library depends on ``:hoijax``; every
test depends on ``:tests_helpers`` when it exists. Bazel forbids dependency cycles, so an import
cycle between two hoijax subpackages (or ``hoijax/__init__.py`` importing a subpackage) is reported
as an error instead of being written out.

Third-party packages (jax, numpy, torch, ...) are not managed by Bazel: tests run with the
``python3`` found on PATH (the venv), see ``//:python_toolchain`` and ``.bazelrc``.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

REPO_ROOT = Path(__file__).resolve().parent.parent

PACKAGE = "hoijax"
KERNELS_DIR = "kernels"  # importable as hoijax.kernels only
TESTS_DIR = "tests"
TOP_LIBRARY = "hoijax"
KERNELS_LIBRARY = "hoijax_kernels"
KERNELS_GENRULE = "hoijax_kernels_files"
TESTS_LIBRARY = "tests_helpers"
PYTEST_MAIN = "tools/bazel_pytest_main.py"
PYTHON_WRAPPER = "tools/bazel_python3.sh"
SYNC_TEST = "tests/test_build_sync.py"
SYNC_TEST_EXTRA_DATA = ["BUILD", "tools/update_build.py"]
SMOKE_TEST = "tests/test_package_layout.py"
# Bazel's default test size is "medium" (300 s timeout); tests known to be quick are marked small.
SMALL_TESTS = {SYNC_TEST, SMOKE_TEST}

_SKIP_DIRS = {"__pycache__"}
_LABEL_SAFE = re.compile(r"^[A-Za-z0-9_./+=,@~-]+$")


class BuildGenerationError(Exception):
    """The tree cannot be expressed as a BUILD file (import cycle, bad file name, ...)."""


@dataclass
class Library:
    name: str
    srcs: list[str]
    module_package: dict[str, str] = field(default_factory=dict)  # src -> dotted package of the module
    deps: set[str] = field(default_factory=set)
    data: list[str] = field(default_factory=list)


def _rel(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    if not _LABEL_SAFE.match(rel):
        raise BuildGenerationError(f"{rel!r}: file name cannot be used as a Bazel label; rename it")
    return rel


def _walk_files(directory: Path, root: Path) -> list[str]:
    """All files below ``directory`` as sorted repo-relative posix paths (no caches, no hidden files)."""
    found: list[str] = []
    if not directory.is_dir():
        return found
    for path in directory.rglob("*"):
        parts = path.relative_to(directory).parts
        if any(p.startswith(".") or p in _SKIP_DIRS for p in parts):
            continue
        if path.is_file() and not path.name.endswith((".pyc", ".pyo")):
            found.append(_rel(path, root))
    return sorted(found)


def _dotted_package(src: str, import_root: str, import_name: str) -> str:
    """Dotted package containing the module ``src`` (a path under ``import_root``)."""
    rel = PurePosixPath(src).relative_to(import_root)
    parts = [import_name, *rel.parent.parts] if import_name else list(rel.parent.parts)
    return ".".join(parts)


def _imported_modules(path: Path, package: str) -> set[str]:
    """Dotted names imported by a module (``from a import b`` gives both ``a`` and ``a.b``)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise BuildGenerationError(f"{path}: cannot parse: {exc}") from exc
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not package:
                    continue  # relative import outside a package (tests): not a hoijax import
                base_parts = package.split(".")
                if node.level - 1 > len(base_parts) - 1:
                    continue
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base:
                continue
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


class Tree:
    def __init__(self, root: Path):
        self.root = root
        pkg_dir = root / PACKAGE
        if not (pkg_dir / "__init__.py").is_file():
            raise BuildGenerationError(f"{pkg_dir / '__init__.py'} not found: is {root} the repository root?")
        if (pkg_dir / KERNELS_DIR).exists() and any((pkg_dir / KERNELS_DIR).rglob("*.py")):
            # Under Bazel the genrule writes hoijax/kernels/; a source directory there would clash
            # (and setuptools would ignore it, since hoijax.kernels is mapped to kernels/).
            raise BuildGenerationError(
                f"{PACKAGE}/{KERNELS_DIR}/ must not exist: the kernels live in {KERNELS_DIR}/ "
                f"and are importable as {PACKAGE}.{KERNELS_DIR}"
            )
        self.top_modules = sorted(
            _rel(p, root) for p in pkg_dir.glob("*.py") if p.is_file() and not p.name.startswith(".")
        )
        self.subpackages: dict[str, list[str]] = {}
        for sub in sorted(pkg_dir.iterdir()):
            if not sub.is_dir() or sub.name.startswith(".") or sub.name in _SKIP_DIRS:
                continue
            py_files = [f for f in _walk_files(sub, root) if f.endswith(".py")]
            if not py_files:
                continue
            if not (sub / "__init__.py").is_file():
                raise BuildGenerationError(
                    f"{_rel(sub, root)}/ holds Python files but no __init__.py: "
                    "make it a subpackage (and list it in pyproject.toml) or move the files"
                )
            if not sub.name.isidentifier():
                raise BuildGenerationError(f"{_rel(sub, root)}/ is not a valid Python package name")
            self.subpackages[sub.name] = py_files
        self.kernels = [f for f in _walk_files(root / KERNELS_DIR, root) if f.endswith(".py")]
        tests_files = _walk_files(root / TESTS_DIR, root)
        self.tests = [f for f in tests_files if f.endswith(".py") and PurePosixPath(f).name.startswith("test_")]
        self.test_helpers = [f for f in tests_files if f.endswith(".py") and f not in self.tests]
        self.test_data = [f for f in tests_files if not f.endswith(".py")]

    # ---------------------------------------------------------------- packages (for pyproject)
    def python_packages(self) -> list[str]:
        """Dotted packages setuptools must install: every directory with an ``__init__.py``."""
        pkgs = {PACKAGE}
        for files in self.subpackages.values():
            for f in files:
                p = PurePosixPath(f)
                if p.name == "__init__.py":
                    pkgs.add(".".join(p.parent.parts))
        for f in self.kernels:
            p = PurePosixPath(f)
            if p.name == "__init__.py":
                pkgs.add(".".join([PACKAGE, *p.parent.parts]))
        return sorted(pkgs)

    # ---------------------------------------------------------------- dependency resolution
    def library_for_module(self, dotted: str) -> str | None:
        parts = dotted.split(".")
        if parts[0] != PACKAGE:
            return None
        if len(parts) == 1:
            return TOP_LIBRARY
        if parts[1] == KERNELS_DIR:
            return KERNELS_LIBRARY if self.kernels else None
        if parts[1] in self.subpackages:
            return f"{PACKAGE}_{parts[1]}"
        return TOP_LIBRARY  # a top-level module (hoijax/foo.py) or an attribute of hoijax

    def _deps_of(self, srcs_with_packages: list[tuple[str, str]]) -> set[str]:
        deps: set[str] = set()
        for src, package in srcs_with_packages:
            for name in _imported_modules(self.root / src, package):
                lib = self.library_for_module(name)
                if lib:
                    deps.add(lib)
        return deps

    def libraries(self) -> list[Library]:
        libs: list[Library] = []
        top = Library(TOP_LIBRARY, self.top_modules)
        top.deps = self._deps_of([(s, PACKAGE) for s in self.top_modules])
        libs.append(top)
        for sub, files in self.subpackages.items():
            lib = Library(f"{PACKAGE}_{sub}", files)
            lib.deps = self._deps_of([(f, _dotted_package(f, PACKAGE, PACKAGE)) for f in files])
            lib.deps.add(TOP_LIBRARY)
            libs.append(lib)
        if self.kernels:
            outs = [f"{PACKAGE}/{f}" for f in self.kernels]
            lib = Library(KERNELS_LIBRARY, outs)
            lib.deps = self._deps_of([(f, _dotted_package(f, KERNELS_DIR, f"{PACKAGE}.{KERNELS_DIR}")) for f in self.kernels])
            lib.deps.add(TOP_LIBRARY)
            libs.append(lib)
        if self.test_helpers or self.test_data:
            lib = Library(TESTS_LIBRARY, self.test_helpers, data=self.test_data)
            lib.deps = self._deps_of([(f, "") for f in self.test_helpers])
            libs.append(lib)
        for lib in libs:
            lib.deps.discard(lib.name)
        self._check_acyclic(libs)
        return libs

    @staticmethod
    def _check_acyclic(libs: list[Library]) -> None:
        graph = {lib.name: sorted(lib.deps) for lib in libs}
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(node: str) -> None:
            state[node] = 1
            stack.append(node)
            for dep in graph.get(node, []):
                if state.get(dep) == 1:
                    cycle = stack[stack.index(dep):] + [dep]
                    raise BuildGenerationError(
                        "import cycle between Bazel libraries: "
                        + " -> ".join(cycle)
                        + ". Bazel cannot express it: move the shared code or the import so that "
                        "the subpackages import each other in one direction only (hoijax/__init__.py "
                        "must not import its subpackages)."
                    )
                if dep not in state:
                    visit(dep)
            stack.pop()
            state[node] = 2

        for name in sorted(graph):
            if name not in state:
                visit(name)

    def test_deps(self, test: str) -> set[str]:
        deps = self._deps_of([(test, "")])
        if self.test_helpers or self.test_data:
            deps.add(TESTS_LIBRARY)
        return deps

    def all_sources(self) -> list[str]:
        files = set(self.top_modules) | set(self.kernels) | set(self.tests) | set(self.test_helpers)
        files |= set(self.test_data)
        for sub in self.subpackages.values():
            files |= set(sub)
        return sorted(files)


# -------------------------------------------------------------------- rendering
def _label(name: str) -> str:
    return f":{name}"


def _render_list(key: str, items: list[str], indent: str = "    ") -> str:
    if not items:
        return f"{indent}{key} = [],\n"
    if len(items) == 1:
        return f'{indent}{key} = ["{items[0]}"],\n'
    body = "".join(f'{indent}    "{item}",\n' for item in items)
    return f"{indent}{key} = [\n{body}{indent}],\n"


def _render_rule(kind: str, fields: list[tuple[str, object]]) -> str:
    out = f"{kind}(\n"
    for key, value in fields:
        if isinstance(value, list):
            out += _render_list(key, value)
        elif isinstance(value, bool):
            out += f"    {key} = {value},\n"
        else:
            out += f'    {key} = "{value}",\n'
    return out + ")\n"


def _test_name(test: str) -> str:
    rel = PurePosixPath(test).relative_to(TESTS_DIR).with_suffix("")
    return "_".join(rel.parts)


HEADER = '''\
# GENERATED by tools/update_build.py from the files under hoijax/, kernels/ and tests/. DO NOT EDIT:
# after adding, moving or removing a module or a test (or changing hoijax imports) run
#
#     python tools/update_build.py
#
# tests/test_build_sync.py fails while this file is out of date.
#
# Third-party packages (jax, numpy, torch, ...) are not managed by Bazel: the tests run with the
# `python3` found on PATH (activate the venv first); .bazelrc passes PATH to the tests.

load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

package(default_visibility = ["//visibility:public"])

# Python toolchain (registered in WORKSPACE): the interpreter is whatever `python3` is first on
# PATH when the test runs, i.e. the activated venv.
py_runtime(
    name = "python3_runtime",
    interpreter = "{wrapper}",
    python_version = "PY3",
    stub_shebang = "#!/usr/bin/env python3",
)

py_runtime_pair(
    name = "python_runtime_pair",
    py3_runtime = ":python3_runtime",
)

toolchain(
    name = "python_toolchain",
    toolchain = ":python_runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
'''


def generate(root: Path = REPO_ROOT) -> str:
    """The BUILD text for the tree at ``root``."""
    tree = Tree(root)
    libs = tree.libraries()
    chunks = [HEADER.replace("{wrapper}", PYTHON_WRAPPER)]

    chunks.append("# ---- hoijax libraries: one per subpackage of hoijax/ -------------------------------------\n")
    for lib in libs:
        if lib.name in (KERNELS_LIBRARY, TESTS_LIBRARY):
            continue
        chunks.append(
            _render_rule(
                "py_library",
                [
                    ("name", lib.name),
                    ("srcs", lib.srcs),
                    ("srcs_version", "PY3"),
                    ("deps", sorted(_label(d) for d in lib.deps)),
                ],
            )
        )

    if tree.kernels:
        chunks.append(
            "# ---- hoijax.kernels: kernels/ is importable only as hoijax.kernels --------------------------\n"
            "# (setuptools: package-dir in pyproject.toml). The genrule copies kernels/**.py to\n"
            "# hoijax/kernels/**.py in the output tree; no top-level `kernels` module exists in Bazel.\n"
        )
        outs = [f"{PACKAGE}/{f}" for f in tree.kernels]
        cmd = " && ".join(f"cp $(location {src}) $(location {out})" for src, out in zip(tree.kernels, outs))
        chunks.append(
            _render_rule(
                "genrule",
                [("name", KERNELS_GENRULE), ("srcs", tree.kernels), ("outs", outs), ("cmd", cmd)],
            )
        )
        kernels_lib = next(lib for lib in libs if lib.name == KERNELS_LIBRARY)
        chunks.append(
            _render_rule(
                "py_library",
                [
                    ("name", KERNELS_LIBRARY),
                    ("srcs", [_label(o) for o in outs]),
                    ("srcs_version", "PY3"),
                    ("deps", sorted(_label(d) for d in kernels_lib.deps)),
                ],
            )
        )

    chunks.append("# ---- tests: one py_test per tests/**/test_*.py, run by pytest ------------------------------\n")
    tests_lib = next((lib for lib in libs if lib.name == TESTS_LIBRARY), None)
    if tests_lib:
        chunks.append(
            _render_rule(
                "py_library",
                [
                    ("name", TESTS_LIBRARY),
                    ("srcs", tests_lib.srcs),
                    ("srcs_version", "PY3"),
                    *([("data", tests_lib.data)] if tests_lib.data else []),
                    ("deps", sorted(_label(d) for d in tests_lib.deps)),
                ],
            )
        )
    if SYNC_TEST in tree.tests:
        chunks.append(
            "# Everything tools/update_build.py reads, for tests/test_build_sync.py under Bazel.\n"
            + _render_rule("filegroup", [("name", "build_inputs"), ("srcs", tree.all_sources())])
        )
    for test in tree.tests:
        data = ["pyproject.toml"]
        if test == SYNC_TEST:
            data = sorted(data + SYNC_TEST_EXTRA_DATA + [":build_inputs"])
        chunks.append(
            _render_rule(
                "py_test",
                [
                    ("name", _test_name(test)),
                    *([("size", "small")] if test in SMALL_TESTS else []),
                    ("srcs", sorted([test, PYTEST_MAIN])),
                    ("args", [f"$(rootpath {test})"]),
                    ("data", data),
                    ("legacy_create_init", False),
                    ("main", PYTEST_MAIN),
                    ("python_version", "PY3"),
                    ("srcs_version", "PY3"),
                    ("deps", sorted(_label(d) for d in tree.test_deps(test))),
                ],
            )
        )
    names = [_test_name(t) for t in tree.tests]
    if len(set(names)) != len(names):
        raise BuildGenerationError(f"two test files map to the same Bazel target name: {sorted(names)}")
    return "\n".join(chunks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if BUILD is out of date; write nothing")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        text = generate(args.root)
    except BuildGenerationError as exc:
        print(f"update_build.py: error: {exc}", file=sys.stderr)
        return 2
    build = args.root / "BUILD"
    current = build.read_text(encoding="utf-8") if build.exists() else None
    if current == text:
        print(f"{build} is up to date")
        return 0
    if args.check:
        print(f"{build} is out of date: run `python tools/update_build.py`", file=sys.stderr)
        return 1
    build.write_text(text, encoding="utf-8")
    print(f"wrote {build}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
