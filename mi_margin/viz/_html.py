"""HTML building blocks for offline pages: inlined script bundles, figure divs, boxes, tables.

A report must render from a ``file://`` URL with no network: plotly.js and the
circuitsvis bundle are inlined once per page, and every figure or attention view is a fragment
that only references them. ``circuitsvis``'s own ``str(html)`` loads its bundle from a CDN, so we
never use it.
"""

from __future__ import annotations

import html
import json
import re
import traceback
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

_SOURCE_MAP = re.compile(r"//# sourceMappingURL=\S*")
STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1150px; padding: 1em 2em; color: #222; }
h1 { border-bottom: 2px solid #ccc; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table.mm { border-collapse: collapse; font-size: 90%; margin: .5em 0; }
table.mm td, table.mm th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
table.mm th { background: #f4f4f4; }
.mm-error { border: 1px solid #d33; background: #fdecec; padding: .6em 1em; border-radius: 4px; }
.mm-error pre { white-space: pre-wrap; font-size: 80%; }
.mm-figure { margin: 1em 0; }
.mm-row { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }
nav.mm-toc a { margin-right: 1em; }
"""


def plotly_script() -> str:
    """plotly.js (the version plotly.py ships) as one inline ``<script>``."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def circuitsvis_bundle() -> str:
    """The circuitsvis browser bundle (defines the global ``CircuitsVis``), as JavaScript text.

    ``</script>`` and the source-map comment are removed so the text can be inlined (circuitsvis's
    own ``render_local`` does the former; the latter would make browsers fetch a missing file).
    """
    import circuitsvis

    path = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    text = path.read_text(encoding="utf-8").replace("</script>", "")
    return _SOURCE_MAP.sub("", text)


def circuitsvis_script() -> str:
    """The circuitsvis bundle as one classic inline ``<script>`` (so ``CircuitsVis`` is global)."""
    return f'<script type="text/javascript">{circuitsvis_bundle()}</script>'


def circuitsvis_call(div_id: str, element: str, props: dict[str, Any]) -> str:
    """A div and the script that renders circuitsvis ``element`` into it (bundle loaded earlier)."""
    from circuitsvis.utils.convert_props import convert_props

    return (f'<div id="{div_id}" style="margin: 15px 0;"></div>\n'
            f'<script type="text/javascript">CircuitsVis.render("{div_id}", '
            f"CircuitsVis.{element}, {convert_props(props)});</script>")


def json_data(element_id: str, payload: Any) -> str:
    """A ``<script type="application/json">`` element holding ``payload`` (compact, and safe inside
    the page: ``</`` is escaped) for a page script to read by ``element_id``."""
    text = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def figure_div(fig: go.Figure, div_id: str | None = None) -> str:
    """A plotly figure as a ``<div class="mm-figure">`` fragment that expects plotly.js on the page."""
    inner = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                        config={"displaylogo": False, "responsive": True})
    return f'<div class="mm-figure">{inner}</div>'


def escape(text: Any) -> str:
    """HTML-escaped ``str(text)``."""
    return html.escape(str(text))


def anchor(title: str) -> str:
    """A stable id for a section title (lowercase, dashes)."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def paragraph(text: str) -> str:
    """An escaped ``<p>``."""
    return f"<p>{escape(text)}</p>"


def note_box(text: str) -> str:
    """A yellow box: something left out on purpose (an analysis that does not apply), or a
    warning the reader must see first (NaN losses, no checkpoints)."""
    return f'<div class="mm-note">{escape(text)}</div>'


def error_box(title: str, err: BaseException) -> str:
    """A red box with the error and its traceback (a failed section must not kill the report)."""
    trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return (f'<div class="mm-error"><b>{escape(title)} failed:</b> {escape(type(err).__name__)}: '
            f"{escape(err)}<details><summary>traceback</summary><pre>{escape(trace)}</pre>"
            f"</details></div>")


def table(data: pd.DataFrame | dict[str, Any], float_format: str = "{:.6g}") -> str:
    """A DataFrame, or a dict as two columns, as an HTML table (floats shortened)."""
    frame = (pd.DataFrame({"name": list(data), "value": [_cell(v) for v in data.values()]})
             if isinstance(data, dict) else data)
    formatters = {c: float_format.format for c in frame.columns
                  if pd.api.types.is_float_dtype(frame[c])}
    return frame.to_html(classes="mm", index=False, border=0, formatters=formatters,
                         escape=True, na_rep="—")


def _cell(value: Any) -> str:
    """A table cell for nested config values (dicts and lists as compact JSON)."""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def row(parts: list[str]) -> str:
    """Fragments side by side (wrapping on narrow screens)."""
    cells = "".join(f"<div>{p}</div>" for p in parts)
    return f'<div class="mm-row">{cells}</div>'


def section(title: str, body: str) -> str:
    """A ``<section>`` with an ``<h2>`` heading and an id derived from the title."""
    return f'<section id="{anchor(title)}"><h2>{escape(title)}</h2>\n{body}\n</section>'


def page(title: str, body: str, scripts: list[str]) -> str:
    """A complete HTML document: style, the given inline scripts in ``<head>``, then the body."""
    head = "\n".join(scripts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{STYLE}</style>\n{head}\n</head>\n"
            f"<body>\n<h1>{escape(title)}</h1>\n{body}\n</body></html>\n")
