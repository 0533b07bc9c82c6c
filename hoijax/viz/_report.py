"""report.html: one self-contained page per run (pictures embedded as data URIs), with the
metrics table and what its columns mean, the plots, each sequence's overlays and loss curves,
the settings and versions, and the skipped sequences with their causes."""

from __future__ import annotations

import base64
import html
import importlib.metadata as md
import json
import platform
from pathlib import Path

METRIC_DEFINITIONS = {
    "rot °": "Object rotation error: geodesic angle between the tracked and the true rotation, "
             "degrees.",
    "trans mm": "Object translation error: distance between the tracked and the true object "
                "origin, millimetres.",
    "ADD-S mm": "Mean distance from each of 1 000 surface points of the tracked object to the "
                "nearest point of the true one (symmetric objects score fairly), millimetres.",
    "MPJPE mm": "Hand: mean distance of the 21 keypoints to the true ones after aligning the "
                "wrists (articulation error), millimetres.",
    "hand cam mm": "Hand: mean distance of the 21 keypoints to the true ones in the camera "
                   "frame (articulation and placement), millimetres.",
    "scale err %": "Largest relative error of the object's three scale factors, percent.",
    "failed": "Tracking failed: ADD-S above 10 % of the object diameter on too many frames.",
}
"""The metrics table's columns, as the report explains them."""

_GIF_LIMIT_BYTES = 8 * 2**20
_CSS = """
body{font-family:system-ui,-apple-system,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:4px 0}
.seq{border-top:2px solid #888;margin-top:2em}.note{color:#555;font-size:.9em}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
dt{font-weight:600}dd{margin:0 0 .4em 1.5em}
"""


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _img(path: Path, alt: str) -> str:
    if not path.exists():
        return ""
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    if path.suffix == ".gif" and path.stat().st_size > _GIF_LIMIT_BYTES:
        return f'<p class="note">{html.escape(path.name)} is too large to embed: ' \
               f'<a href="{html.escape(path.parent.name)}/{path.name}">open it</a>.</p>'
    return f'<img src="{_data_uri(path, mime)}" alt="{html.escape(alt)}">'


def _markdown_table(md_text: str) -> str:
    """The pipe tables of metrics.md as HTML; other lines as paragraphs."""
    out, rows = [], []

    def flush():
        if rows:
            head, body = rows[0], [r for r in rows[2:]]
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                       + "</tr>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>"
                                                             for c in r) + "</tr>"
                                           for r in body) + "</table>")
            rows.clear()

    for line in md_text.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        else:
            flush()
            if line.strip():
                out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(out)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("hoijax", "jax", "jaxlib", "equinox", "numpy", "viser", "tyro"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def write_report(out: str | Path, title: str = "hoijax run") -> Path:
    """Write ``out/report.html`` from what the run left in ``out`` (summary.json, metrics.md,
    metrics.png, and per sequence result.json, overlay.png/gif, loss_curves.png)."""
    from hoijax.viz._track import LEGEND

    out = Path(out)
    summary = json.loads((out / "summary.json").read_text()) if (
        out / "summary.json").exists() else {}
    seq_dirs = sorted(p for p in out.iterdir() if (p / "result.json").exists())
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">{html.escape(str(out.resolve()))} · '
             f"{len(seq_dirs)} sequence(s) tracked"
             + (f", {len(summary.get('skipped', {}))} skipped" if summary else "") + "</p>"]
    parts.append("<h2>Metrics</h2>")
    if (out / "metrics.md").exists():
        parts.append(_markdown_table((out / "metrics.md").read_text()))
    parts.append("<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                                  for k, v in METRIC_DEFINITIONS.items()) + "</dl>")
    parts.append(_img(out / "metrics.png", "per-frame errors of every sequence"))
    skipped = summary.get("skipped", {})
    parts.append("<h2>Skipped sequences</h2>")
    parts.append("<p>none</p>" if not skipped else "<ul>" + "".join(
        f"<li><b>{html.escape(n)}</b>: {html.escape(str(c))}</li>" for n, c in skipped.items())
        + "</ul>")
    if summary.get("overflow"):
        parts.append("<p>Rasterizer still overflowing at the largest capacity: "
                     + html.escape(", ".join(summary["overflow"])) + "</p>")
    parts.append("<h2>Sequences</h2>")
    parts.append(f'<p class="note">{html.escape(LEGEND)}</p>')
    meta = {}
    for d in seq_dirs:
        meta = json.loads((d / "result.json").read_text()).get("meta", {}) or meta
        parts.append(f'<div class="seq"><h3>{html.escape(d.name)}</h3>')
        parts.append(_img(d / "overlay.png", f"{d.name}: overlays"))
        parts.append(_img(d / "overlay.gif", f"{d.name}: every frame"))
        parts.append(_img(d / "loss_curves.png", f"{d.name}: loss curves"))
        parts.append("</div>")
    parts.append("<h2>Settings and versions</h2>")
    settings = {k: meta[k] for k in ("config", "hyper", "mano", "hand_model") if k in meta}
    if summary.get("timing"):
        settings["timing"] = summary["timing"]
    parts.append(f"<pre>{html.escape(json.dumps(settings, indent=1))}</pre>")
    parts.append(f"<pre>{html.escape(json.dumps(_versions(), indent=1))}</pre>")
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>"
            f"{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(p for p in parts if p) + "</body></html>\n")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
