"""The command line as people read it: `hoijax --help` lists every command without importing
JAX, each line matches its command's docstring, flag help is plain text, and metrics.md says
what its columns are, adds the medians and carries the summary line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hoijax.cli import main as cli


def test_top_level_help_does_not_import_jax():
    code = ("import sys; from hoijax.cli.main import main; main(['--help']); "
            "print('JAX_LOADED' if 'jax' in sys.modules else 'NO_JAX')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().endswith("NO_JAX")
    for name in cli._COMMANDS:
        assert f"  {name} " in out


# init-demo's settings class describes itself as settings; its line says what the command does
@pytest.mark.parametrize("name", [n for n in cli._COMMANDS if n != "init-demo"])
def test_command_line_matches_its_class(name):
    cls_spec, run_spec, line = cli._COMMANDS[name]
    cls = cli._load(cls_spec)
    assert callable(cli._load(run_spec))
    doc = " ".join((cls.__doc__ or "").split())
    assert doc.startswith(line), (line, doc)


@pytest.mark.parametrize("name", ["demo", "track", "ablate", "eval", "view"])
def test_flag_help_is_plain_text(name, capsys):
    with pytest.raises(SystemExit):
        cli.main([name, "--help"])
    text = capsys.readouterr().out
    for bad in ("``", ":class:", ":func:", "(default: )", "0000000"):
        assert bad not in text, (name, bad)


def test_metrics_md_has_definitions_medians_and_the_summary_line():
    from hoijax.cli._track import _KEYS, _metrics_md

    row = {k: 1.0 for _, k in _KEYS} | {"failed": False}
    summary = {f"{k}_median": 2.0 for _, k in _KEYS} | {"success_rate": 1.0}
    text = _metrics_md({"per_sequence": {"a": row, "b": row}, "summary": summary})
    assert "means over its processed frames" in text
    assert "| median over all processed frames | 2.00 |" in text
    lines = text.strip().splitlines()
    assert any(line.startswith("median rotation 2.00°") for line in lines)
    # Then the AGILE Table 1 layout: a row per sequence and the mean row (SR 100 % here; the
    # metrics this summary lacks are dashes, never invented numbers).
    assert lines[-1] == "| **mean** | — | — | — | — | — | — | — | 100.0 |"
    assert lines[-3].startswith("| a | ") and lines[-2].startswith("| b | ")
