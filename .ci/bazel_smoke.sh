#!/usr/bin/env bash
# Bazel smoke check, fully offline: run one small test under Bazel and build every target.
#
#   bash .ci/bazel_smoke.sh
#
# Expects the hoijax venv to be active (Bazel runs tests with the `python3` first on PATH; see
# .bazelrc). Installs Debian's bazel-bootstrap (Bazel 4.2.3) when `bazel` is missing (needs root).
# The repositories Bazel 4 would download are stubbed in WORKSPACE / third_party/bazel/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SMOKE_TARGET="//:test_package_layout"
QUIET=(--noshow_progress --color=no --curses=no --show_result=0 --ui_event_filters=-info)

if ! command -v bazel >/dev/null 2>&1; then
    echo "bazel_smoke: bazel not found, installing bazel-bootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq bazel-bootstrap >/dev/null
fi

if ! python3 -c "import pytest, hoijax" >/dev/null 2>&1; then
    echo "bazel_smoke: python3 on PATH ($(command -v python3 || echo none)) lacks pytest/hoijax;" \
        "activate the venv first" >&2
    exit 1
fi

bazel_version="$(dpkg-query -W -f='${Version}' bazel-bootstrap 2>/dev/null || bazel --version 2>/dev/null || true)"
echo "bazel_smoke: bazel ${bazel_version:-?}, python3 = $(command -v python3)"
start=$SECONDS

status=0
bazel test "${QUIET[@]}" --test_output=summary "$SMOKE_TARGET" || status=$?
if [[ $status -ne 0 ]]; then
    echo "bazel_smoke: bazel test $SMOKE_TARGET failed (exit $status)" >&2
    log="$(bazel info "${QUIET[@]}" bazel-testlogs 2>/dev/null || echo bazel-testlogs)/${SMOKE_TARGET#//:}/test.log"
    if [[ -f $log ]]; then
        echo "----- $log -----" >&2
        cat "$log" >&2
        echo "----- end of test log -----" >&2
    fi
    exit "$status"
fi

bazel build "${QUIET[@]}" --keep_going //... || {
    status=$?
    echo "bazel_smoke: bazel build //... failed (exit $status)" >&2
    exit "$status"
}

echo "bazel_smoke: OK ($SMOKE_TARGET passed, //... built) in $((SECONDS - start))s"
