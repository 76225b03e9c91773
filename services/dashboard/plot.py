"""Draw the charts with plotly.js's cartesian bundle instead of Streamlit's full one.

Streamlit's `st.plotly_chart` loads its PlotlyChart chunk: the whole plotly.js (~4.7 MB,
maps, 3D and WebGL traces included), whose evaluation alone kept a small machine's browser
busy for about a second per page. Every chart but a tile map is a scatter, bar, box or
heat map, which plotly.js's cartesian bundle (`static/plotly-cartesian.min.js`, ~1.5 MB,
vendored from npm's `plotly.js-cartesian-dist-min`, MIT, same plotly.js version as the
plotly package) draws. A `streamlit.components.v2` component runs its script in the page
itself (no iframe), so the bundle is fetched and evaluated once per page (the preload
starts it, see preload.py) and every chart is drawn by `Plotly.react` into a
`.js-plotly-plot` div, as `st.plotly_chart` does. The file is served by Streamlit's static
serving (`server.enableStaticServing`, the `static/` folder next to page.py, at
`app/static/`); without it (or for a figure with traces outside the bundle) a chart falls
back to `st.plotly_chart`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Final

import plotly.graph_objects as go
import streamlit as st
import streamlit.components.v2 as components

#: The vendored bundle, served at `app/static/<name>`.
BUNDLE: Final = Path(__file__).with_name("static") / "plotly-cartesian.min.js"
#: Trace types the cartesian bundle has.
CARTESIAN: Final = frozenset(
    {"scatter", "bar", "box", "heatmap", "histogram", "histogram2d", "histogram2dcontour",
     "contour", "image", "pie", "violin"}
)  # fmt: skip
#: The component's name, and the name of the page-wide promise of the loaded bundle.
NAME: Final = "soundscape_plot"
_GLOBAL: Final = "__soundscapePlotly"

#: Load the bundle once per page: fetched as text and run from a blob URL, since the static
#: route serves .js as text/plain with nosniff (a <script src> of it would be refused).
#: Resolved next to Streamlit's own index.*.js, so it works under any base URL path.
LOADER: Final = f"""(() => {{
  if (window.{_GLOBAL}) return window.{_GLOBAL};
  const main = document.querySelector('script[type="module"][src*="/static/js/index."]');
  const url = new URL('../../app/static/{BUNDLE.name}', main ? main.src : location.href);
  window.{_GLOBAL} = fetch(url).then(r => {{
    if (!r.ok) throw new Error('plotly bundle: HTTP ' + r.status);
    return r.text();
  }}).then(text => new Promise((resolve, reject) => {{
    const s = document.createElement('script');
    s.src = URL.createObjectURL(new Blob([text], {{type: 'text/javascript'}}));
    s.onload = () => resolve(window.Plotly);
    s.onerror = reject;
    document.head.appendChild(s);
  }}));
  return window.{_GLOBAL};
}})()"""

#: Per chart: parse the figure JSON (a string, so Streamlit passes it through untouched) and
#: draw it into this element's div (`Plotly.react` reuses it on a rerun).
JS: Final = f"""export default function(component) {{
  const {{ data, parentElement }} = component;
  let el = parentElement.querySelector('.soundscape-plot');
  if (!el) {{
    el = document.createElement('div');
    el.className = 'soundscape-plot';
    el.style.width = '100%';
    parentElement.appendChild(el);
  }}
  const {{ figure, config }} = JSON.parse(data);
  {LOADER}.then(Plotly => Plotly.react(el, figure.data, figure.layout, config));
}}"""


@functools.cache
def _component() -> Any:
    return components.component(NAME, js=JS, isolate_styles=False)


def served() -> bool:
    """Whether the bundle can be served (vendored here and static serving on)."""
    return BUNDLE.is_file() and bool(st.get_option("server.enableStaticServing"))


def drawable(fig: go.Figure) -> bool:
    """Whether every trace of `fig` is one the cartesian bundle has."""
    return all(trace.type in CARTESIAN for trace in fig.data)


def figure_json(fig: go.Figure, config: dict[str, Any]) -> str:
    """What the component gets: `{"figure": {data, layout}, "config": …}` as JSON.

    Every axis gets `automargin`: plotly.py's own template sets it, but importing Streamlit
    makes its "streamlit" template the default, which does not, and plotly.js's default is
    off, so long tick labels and axis titles were cut off at a 10 px margin."""
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    body: str = fig.to_json()
    return f'{{"figure": {body}, "config": {json.dumps({"responsive": True, **config})}}}'


def plot(fig: go.Figure, key: str, config: dict[str, Any]) -> None:
    """Draw `fig` with the cartesian bundle where it can, else with `st.plotly_chart`."""
    if served() and drawable(fig):
        _component()(data=figure_json(fig, config), key=key, height="content")
    else:
        st.plotly_chart(fig, key=key, config=config)
