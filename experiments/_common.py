"""Shared bits of the benchmark scripts (run them as ``python experiments/bench_*.py``)."""

from __future__ import annotations

import importlib.metadata as md


def package_versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` (missing ones are left out), for results files."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
