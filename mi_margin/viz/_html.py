"""HTML building blocks for offline pages: inlined script bundles, figure divs, boxes, tables.

A report must render from a ``file://`` URL with no network: plotly.js and the
circuitsvis bundle are inlined once per page, and every figure or attention view is a fragment
that only references them. ``circuitsvis``'s own ``str(html)`` loads its bundle from a CDN, so we
never use it.

:func:`packed_page` keeps such a page small: the bundles and the body are gzip-compressed into
one inline element as 7 bits per character (:func:`pack7`, 8/7 of the compressed size where
base64 takes 4/3), and a few lines of script unpack them in the browser with
``DecompressionStream("gzip")``, run the bundles, insert the body and run its scripts in order.
The file still opens offline, from disk; :func:`unpacked` gives the page as it was.
"""

from __future__ import annotations

import gzip
import html
import json
import re
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

_SOURCE_MAP = re.compile(r"//# sourceMappingURL=\S*")
FIGURE_CLASS = 'class="mm-figure"'
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


#: significant digits of the numbers a page's figures draw (for the eye; keeps files small): of
#: curves and bars, and of heatmaps (whose colour scales resolve far less)
DIGITS, HEATMAP_DIGITS = 4, 3


def rounded(values: Any, digits: int = DIGITS) -> list[Any]:
    """Numbers (nested lists or arrays) to ``digits`` significant digits, NaN and inf as None,
    as nested lists (plotly writes them as short JSON numbers).

    Example:
        >>> rounded([[3.14159265, float("nan")], [-0.000123456, 0.0]])
        [[3.142, None], [-0.0001235, 0.0]]
    """
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    safe = np.where(finite & (x != 0), np.abs(x), 1.0)
    exponent = digits - 1 - np.floor(np.log10(safe))
    up = exponent >= 0
    scale = 10.0 ** np.abs(exponent)
    out = np.where(up, np.round(x * scale) / scale, np.round(x / scale) * scale)
    result = out.astype(object)
    result[~finite] = None
    return result.tolist()


def _numeric(value: Any) -> bool:
    if value is None or isinstance(value, str | dict):
        return False
    try:
        array = np.asarray(value)
    except ValueError:                          # ragged
        return False
    return array.size > 0 and array.dtype.kind == "f"


def _lighter(fig: go.Figure) -> go.Figure:
    """A copy of ``fig`` whose traces' float x and y are :func:`rounded` to :data:`DIGITS`
    and z (heatmaps) to :data:`HEATMAP_DIGITS` significant digits."""
    out = go.Figure(fig)
    for trace in out.data:
        for name, digits in (("x", DIGITS), ("y", DIGITS), ("z", HEATMAP_DIGITS)):
            value = getattr(trace, name, None)
            if _numeric(value):
                setattr(trace, name, rounded(value, digits))
    return out


def figure_div(fig: go.Figure, div_id: str | None = None) -> str:
    """A plotly figure as a ``<div class="mm-figure">`` fragment that expects plotly.js on the page
    (its float data rounded for the eye, see :func:`_lighter`)."""
    inner = pio.to_html(_lighter(fig), include_plotlyjs=False, full_html=False, div_id=div_id,
                        config={"displaylogo": False, "responsive": True})
    return f'<div {FIGURE_CLASS}>{inner}</div>'


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


#: the 7-bit values that must not appear raw in a page's script element (NUL, CR: rewritten by
#: the HTML parser; '<': could close the element); each is written as U+00A0 + its index
ESCAPED = (0x00, 0x0D, 0x3C)
PACKED_ID, ROOT_ID, LOADING_ID = "mm-packed", "mm-root", "mm-loading"
_UNPACK = """
(async () => {
  const el = document.getElementById("%(packed)s"), s = el.textContent;
  const n = Number(el.dataset.bytes), esc = [%(escaped)s], bytes = new Uint8Array(n);
  let acc = 0, bits = 0, j = 0;
  for (let i = 0; i < s.length && j < n; i++) {
    let v = s.charCodeAt(i);
    if (v >= 0xA0) v = esc[v - 0xA0];
    acc = ((acc << 7) | v) & 0x3FFF; bits += 7;
    if (bits >= 8) { bits -= 8; bytes[j++] = (acc >> bits) & 255; }
  }
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  const root = document.getElementById("%(root)s");
  root.innerHTML = await new Response(stream).text();
  for (const old of root.querySelectorAll("script")) {       // in document order: bundles first
    if (old.type && !old.type.includes("javascript")) continue;
    const fresh = document.createElement("script");
    fresh.text = old.textContent;
    old.replaceWith(fresh);
  }
  el.remove();
  document.getElementById("%(loading)s").remove();
})();
"""


def pack7(data: bytes) -> str:
    """``data`` as text of 7 bits per character, big-endian bit order, zero-padded; the values of
    :data:`ESCAPED` become U+00A0, U+00A1, U+00A2 (what the page's unpacking script undoes).

    Example:
        >>> pack7(b"\\xff\\x00")
        '\\x7f@\\xa0'
        >>> data = b"any bytes <\\r\\x00"
        >>> unpack7(pack7(data), len(data)) == data
        True
    """
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    bits = np.concatenate([bits, np.zeros(-len(bits) % 7, dtype=np.uint8)])
    values = bits.reshape(-1, 7) @ (1 << np.arange(6, -1, -1))
    code = np.arange(128, dtype="<u4")
    code[list(ESCAPED)] = 0xA0 + np.arange(len(ESCAPED))
    return code[values].tobytes().decode("utf-32-le")


def unpack7(text: str, n_bytes: int) -> bytes:
    """Inverse of :func:`pack7` (its first ``n_bytes``)."""
    code = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)
    escaped = code >= 0xA0
    code[escaped] = np.asarray(ESCAPED)[code[escaped] - 0xA0]
    bits = ((code[:, None] >> np.arange(6, -1, -1)) & 1).astype(np.uint8).flatten()
    return np.packbits(bits[: 8 * n_bytes]).tobytes()


def packed_page(title: str, top: str, body: str, scripts: list[str]) -> str:
    """A complete HTML document whose ``top`` (title, summary) is plain HTML and whose script
    bundles and ``body`` are packed (module docstring); the page shows "unpacking" until they
    are in place."""
    data = gzip.compress("\n".join([*scripts, body]).encode("utf-8"), mtime=0)
    loader = _UNPACK % {"packed": PACKED_ID, "root": ROOT_ID, "loading": LOADING_ID,
                        "escaped": ", ".join(map(str, ESCAPED))}
    packed = (f'<p id="{LOADING_ID}">Unpacking the report…</p>\n<div id="{ROOT_ID}"></div>\n'
              f'<script type="application/octet-stream" id="{PACKED_ID}" '
              f'data-bytes="{len(data)}" data-figures="{body.count(FIGURE_CLASS)}">'
              f"{pack7(data)}</script>\n<script>{loader}</script>")
    return page(title, f"{top}\n{packed}", [])


def unpacked(page_html: str) -> str:
    """The page as it was before :func:`packed_page` packed it (bundles and body inline), for
    tools and tests that read its HTML."""
    match = re.search(rf'<script type="application/octet-stream" id="{PACKED_ID}" '
                      rf'data-bytes="(\d+)"[^>]*>(.*?)</script>', page_html, flags=re.DOTALL)
    if match is None:
        return page_html
    inner = gzip.decompress(unpack7(match.group(2), int(match.group(1)))).decode("utf-8")
    return page_html[:match.start()] + inner + page_html[match.end():]
