"""The README's two commands stay true: CI runs the README's test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fenced_bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = _fenced_bash_blocks(readme)
    test_cmd = next(b for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci, f"README test command {test_cmd!r} is not what .ci/run runs"


def test_readme_main_job_runs_the_demo():
    blocks = _fenced_bash_blocks((ROOT / "README.md").read_text())
    setup = blocks[0]
    assert "pip install -e ." in setup and "hoijax demo" in setup
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["hoijax"] == "hoijax.cli.main:main"
