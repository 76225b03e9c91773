"""The cartesian-bundle chart component (services/dashboard/plot.py): what it is given."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from services.dashboard import plot


def test_bundle_is_vendored_with_its_licence() -> None:
    head = plot.BUNDLE.read_text(encoding="utf-8")[:200]
    assert "plotly.js (cartesian - minified)" in head
    assert "MIT" in head
    assert plot.BUNDLE.with_name("plotly-cartesian.LICENSE").is_file()


def test_only_cartesian_traces_are_drawn_by_the_bundle() -> None:
    assert plot.drawable(go.Figure([go.Scatter(y=[1, 2]), go.Bar(y=[3]), go.Heatmap(z=[[1]])]))
    assert not plot.drawable(go.Figure([go.Scattermap(lat=[52.0], lon=[0.1])]))


def test_figure_json_carries_figure_and_config() -> None:
    fig = go.Figure([go.Scatter(x=[1, 2], y=[3, 4], name="a")], layout={"title": "t"})
    body = json.loads(plot.figure_json(fig, {"displaylogo": False}))
    assert body["config"] == {"responsive": True, "displaylogo": False}
    assert body["figure"]["data"][0]["name"] == "a"
    assert body["figure"]["layout"]["title"]["text"] == "t"


def _app() -> None:
    import plotly.graph_objects as go

    from services.dashboard import plot

    plot.plot(go.Figure([go.Bar(y=[1, 2])]), key="bars", config={})
    plot.plot(go.Figure([go.Scattermap(lat=[52.0], lon=[0.1])]), key="map", config={})


def test_component_draws_cartesian_figures_and_plotly_chart_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plot, "served", lambda: True)  # AppTest runs the script in-process
    at = AppTest.from_function(_app).run()
    assert not at.exception
    components = at.get("bidi_component")
    assert len(components) == 1
    proto = components[0].proto
    assert proto.component_name == plot.NAME
    assert "Plotly.react" in proto.js_content
    body = json.loads(json.loads(proto.json))
    assert body["figure"]["data"][0]["type"] == "bar"
    assert [c.key for c in at.get("plotly_chart")] == ["map"]
