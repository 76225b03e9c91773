"""Start loading the browser code of the page's charts and tables as soon as the page opens.

Streamlit's frontend imports each element's code only when the first such element arrives:
plotly.js (~4.7 MB) after the first chart, the table grid (~1.7 MB with its Arrow reader)
after the first table, each dependency found only once the module before it is parsed.
Evaluating plotly.js alone keeps a browser's main thread busy for about half a second to a
second on a small machine, and until now it started only once the queries before the first
chart were done. `preload_frontend` emits, as the page's first element, a script that adds
a `modulepreload` link for every file those modules need (fetched in parallel, no waterfall)
and imports them, while the server still runs the queries. They are the very files
Streamlit imports later (same URLs, next to its own `index.*.js`), so it finds them loaded.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Final

import streamlit as st

from services.dashboard import plot

#: Streamlit's frontend chunks of the elements the pages show.
PRELOAD: Final = ("PlotlyChart", "DataFrame", "DownloadButton", "Metric")
#: A static import between the build's chunks (`import{a}from"./x.js"`, `import"./x.js"`);
#: dynamic ones (`import("./x.js")`) are what stays lazy, and are left alone.
_STATIC_IMPORT: Final = re.compile(r"""(?:\bfrom|\bimport)\s*["']\./([\w.\-]+\.js)["']""")


def _graph(folder: Path, name: str, seen: set[str]) -> None:
    """Add `name` and every chunk it imports statically, recursively, to `seen`."""
    if name in seen or not (folder / name).is_file():
        return
    seen.add(name)
    for dep in _STATIC_IMPORT.findall((folder / name).read_text(encoding="utf-8")):
        _graph(folder, dep, seen)


#: The app's own module in its index.html.
_MAIN: Final = re.compile(r'<script[^>]*type="module"[^>]*src="\./static/js/([\w.\-]+\.js)"')


@functools.cache
def chunks(
    static: Path | None = None, names: tuple[str, ...] = PRELOAD
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the entry chunks of `names`, the files they need beyond what the app's own module
    already loads) of the Streamlit frontend build in `static` (default this Streamlit's);
    empty if the build has no such chunks."""
    static = static or Path(st.__file__).parent / "static"
    folder = static / "static" / "js"
    index = static / "index.html"
    main = _MAIN.search(index.read_text(encoding="utf-8")) if index.is_file() else None
    entries = [f.name for name in names for f in sorted(folder.glob(f"{name}.*.js"))]
    if main is None or not entries:
        return (), ()
    loaded: set[str] = set()
    _graph(folder, main.group(1), loaded)
    needed: set[str] = set()
    for entry in entries:
        _graph(folder, entry, needed)
    return tuple(entries), tuple(sorted(needed - loaded - set(entries)))


def script(entries: tuple[str, ...], deps: tuple[str, ...], extra: str = "") -> str:
    """The <script> that preloads `deps` and imports `entries`, resolved next to the app's
    own `index.*.js` (so it works under any base URL path), then runs `extra`."""
    return (
        "<script>(() => {\n"
        "  const main = document.querySelector("
        '\'script[type="module"][src*="/static/js/index."]\');\n'
        "  if (!main) return;\n"
        "  performance.mark('dashboard-preload');\n"
        "  const url = (name) => new URL(name, main.src).href;\n"
        f"  for (const name of {json.dumps(list(deps))}) {{\n"
        "    const link = document.createElement('link');\n"
        "    link.rel = 'modulepreload';\n"
        "    link.href = url(name);\n"
        "    document.head.appendChild(link);\n"
        "  }\n"
        f"  for (const name of {json.dumps(list(entries))}) import(url(name)).catch(() => {{}});\n"
        f"  {extra}\n"
        "})();</script>"
    )


def preload_frontend() -> None:
    """Emit the preloading script (nothing for a Streamlit build without those chunks).
    Where the charts are drawn with the cartesian bundle (plot.py), it starts loading that
    instead of Streamlit's PlotlyChart chunk (which then loads only for a tile map)."""
    if plot.served():
        entries, deps = chunks(names=tuple(n for n in PRELOAD if n != "PlotlyChart"))
        extra = f"{plot.LOADER}.catch(() => {{}});"
    else:
        entries, deps = chunks()
        extra = ""
    if entries:
        st.html(script(entries, deps, extra), unsafe_allow_javascript=True)
