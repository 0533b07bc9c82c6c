#!/bin/sh
# Interpreter of //:python3_runtime (see BUILD): the `python3` found on PATH, normally the
# activated venv that holds hoijax's third-party dependencies (jax, numpy, torch, ...). Bazel does
# not manage those; .bazelrc forwards the caller's PATH to tests (--test_env=PATH).
if ! command -v python3 >/dev/null 2>&1; then
    echo "bazel_python3.sh: no python3 on PATH ($PATH); activate the venv before running bazel" >&2
    exit 127
fi
exec python3 "$@"
