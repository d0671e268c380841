"""HTML for report pages: escaping, tables, figure embedding and the page shell (offline, CSP-locked).

Every data-derived string goes through `esc` (html.escape with quotes). Figures travel as plotly JSON inside
`<script type="application/json">` blocks whose `<`, `>`, `&`, U+2028 and U+2029 are \\u-escaped, so no token or
model name can close the script element or open a comment. Each page carries a Content-Security-Policy that only
lets scripts with the page's nonce (a hash of its content) run (plotly.js and the tiny plotting loop) and forbids
every network fetch: an injected `<script>` or `onerror=` that slipped past escaping still would not run, and
nothing is loaded from a CDN.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Iterable, Sequence
from typing import Any

PLOTLY_JS = "plotly.min.js"
INDEX_LINK = "index.html"
GENERATOR = "interp report"  # marks pages the builder may replace or remove on a rebuild

_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:14px 28px}header a{color:#9cc4ff}
header h1{margin:4px 0 0;font-size:1.35em}main{padding:18px 28px;max-width:1280px}
section{background:#fff;border:1px solid #dfe3ea;border-radius:6px;padding:12px 18px;margin:0 0 18px}
h2{font-size:1.1em;margin:4px 0 10px}h3{font-size:1em;margin:8px 0}
table{border-collapse:collapse;font-size:.92em}td,th{border-bottom:1px solid #e6e9ef;padding:4px 10px;
text-align:left;vertical-align:top}th{background:#f0f2f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.val{max-width:900px;overflow-wrap:anywhere}
.caption{color:#3d4454;font-style:italic;margin:.2em 0}ul.findings li{margin:.3em 0}
td code{white-space:nowrap}.muted{color:#6b7385;font-size:.9em}
.error{background:#fff1f0;border:1px solid #e8a09a;color:#7a1c14;border-radius:6px;padding:10px 14px;margin:0 0 18px}
.error pre{white-space:pre-wrap;margin:6px 0 0;font-size:.85em}.figure{margin:0 0 14px}
.plot{width:100%;min-height:420px}pre.json{max-height:420px;overflow:auto;background:#f6f7f9;padding:8px;
font-size:.82em}.badge{display:inline-block;border-radius:3px;padding:1px 6px;font-size:.8em}
.ok{background:#e3f4e6;color:#1e6b2e}.bad{background:#fde5e3;color:#8a1f14}
img.shot{max-width:100%;border:1px solid #dfe3ea}
"""

# Renders every figure block of the page; kept tiny, carries the page nonce.
_PLOT_LOOP = """
(function(){
  var blocks=document.querySelectorAll('script[type="application/json"][data-figure]');
  for(var i=0;i<blocks.length;i++){
    var b=blocks[i],target=document.getElementById(b.getAttribute('data-figure'));
    try{var fig=JSON.parse(b.textContent);
      Plotly.newPlot(target,fig.data||[],fig.layout||{},{responsive:true,displaylogo:false});
    }catch(e){target.className+=' plot-error';target.textContent='figure failed to render: '+e;}
  }
})();
"""


def esc(value: Any) -> str:
    """HTML-escape any value's text, quotes included (safe in element bodies and attribute values)."""
    return html.escape(str(value), quote=True)


def script_json(text: str) -> str:
    """Make JSON text safe inside a <script> element: \\u-escape <, >, & and the JS line separators."""
    for ch, rep in _JSON_ESCAPES.items():
        text = text.replace(ch, rep)
    return text


def figure_json(fig: Any) -> str:
    """A plotly figure (or figure dict) as script-safe JSON."""
    if hasattr(fig, "to_json"):
        text = fig.to_json()
    else:
        import plotly.io as pio

        text = pio.to_json(fig)
    return script_json(text)


def table(rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None, numeric_cols: Sequence[int] = (),
          cls: str = "") -> str:
    """An HTML table with every cell escaped (`numeric_cols` are right-aligned)."""
    head = "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>" if header else ""
    body = []
    for row in rows:
        cells = "".join(f"<td class='{'num' if i in numeric_cols else 'val'}'>{esc(c)}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    attr = f" class='{esc(cls)}'" if cls else ""
    return f"<table{attr}>{head}<tbody>{''.join(body)}</tbody></table>"


def error_box(title: str, message: str) -> str:
    """A visible error panel (escaped) used when a figure or an analysis package fails."""
    return f"<div class='error' role='alert'><b>{esc(title)}</b><pre>{esc(message)}</pre></div>"


def figure_block(fig_id: str, name: str, fig: Any, caption: str = "") -> str:
    """A titled plot div, its one-line caption (what to look at) and its JSON data block."""
    cap = f"<p class='caption'>{esc(caption)}</p>" if caption else ""
    return (f"<div class='figure'><h3>{esc(name)}</h3>{cap}<div class='plot' id='{esc(fig_id)}'></div>"
            f"<script type='application/json' data-figure='{esc(fig_id)}'>{figure_json(fig)}</script></div>")


def note_block(name: str, message: str) -> str:
    """A titled figure slot that says why there is no plot (escaped)."""
    return f"<div class='figure'><h3>{esc(name)}</h3><p class='muted'>{esc(message)}</p></div>"


def csp(nonce: str) -> str:
    """The pages' Content-Security-Policy: nonce'd scripts only, inline styles (plotly needs them), no network."""
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src 'self' data: blob:; "
            "font-src data:; connect-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'")


def page(title: str, body: str, nonce: str | None = None, *, heading: str = "", nav: str = "",
         with_plotly: bool = False, plotly_src: str = PLOTLY_JS) -> str:
    """A complete HTML document; `body` must already be escaped HTML.

    The script nonce defaults to a hash of the page's content, so the same results give the same bytes on every
    build. Injected markup cannot carry it: the nonce would have to be the hash of a page that contains it."""
    if nonce is None:
        digest = hashlib.sha256("\0".join((title, heading, nav, body, plotly_src)).encode()).digest()
        nonce = base64.urlsafe_b64encode(digest[:18]).decode()
    scripts = ""
    if with_plotly:
        scripts = (f"<script nonce='{esc(nonce)}' src='{esc(plotly_src)}'></script>"
                   f"<script nonce='{esc(nonce)}'>{_PLOT_LOOP}</script>")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{esc(csp(nonce))}\">"
        f"<meta name='generator' content='{GENERATOR}'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header>{nav}<h1>{esc(heading or title)}</h1></header><main>{body}</main>{scripts}</body></html>\n"
    )


def json_pre(value: Any, limit: int = 200_000) -> str:
    """A collapsible, escaped, size-capped JSON dump (details/config for readers who want every number)."""
    text = json.dumps(value, indent=1, default=str, sort_keys=False)
    if len(text) > limit:
        text = text[:limit] + f"\n… ({len(text) - limit} more characters in result.json)"
    return f"<pre class='json'>{esc(text)}</pre>"
