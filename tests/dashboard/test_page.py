"""Smoke tests of the Streamlit page with AppTest, on empty and populated databases."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from services.dashboard.app import PAGE
from services.dashboard.core import BUCKET_ORIGIN
from tests.dashboard.data import Dataset
from tests.dashboard.fleet import LABELS, RAW, seed_fleet
from tests.support.servers import free_port

pytestmark = pytest.mark.integration


def run_page(monkeypatch: pytest.MonkeyPatch, dsn: str | None) -> AppTest:
    for name in ("DATABASE_URL", "TIMEZONE", "MIN_SCORE"):
        monkeypatch.delenv(f"SOUNDSCAPE_DASHBOARD_{name}", raising=False)
    if dsn is not None:
        monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_DATABASE_URL", dsn)
    app = AppTest.from_file(str(PAGE), default_timeout=30)
    return app.run()


def texts(elements: object) -> str:
    return "\n".join(str(e.value) for e in elements)  # type: ignore[attr-defined]


def test_unconfigured_page_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    app = run_page(monkeypatch, None)
    assert not app.exception
    assert "SOUNDSCAPE_DASHBOARD_DATABASE_URL" in texts(app.error)


def test_unreachable_database_is_an_error_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_CONNECT_TIMEOUT_S", "1")
    app = run_page(monkeypatch, f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    assert not app.exception
    assert "Cannot reach the database (nowhere on 127.0.0.1:" in texts(app.error)


def test_database_without_tables(monkeypatch: pytest.MonkeyPatch, database: str) -> None:
    app = run_page(monkeypatch, database)
    assert not app.exception
    assert "No data yet" in texts(app.info)
    assert "soundscape ingest" in texts(app.info)


def test_empty_schema(monkeypatch: pytest.MonkeyPatch, schema_db: str) -> None:
    app = run_page(monkeypatch, schema_db)
    assert not app.exception
    assert not app.error
    assert "no device has reported" in texts(app.info)


def spec(chart: object) -> dict[str, Any]:
    """A plotly chart element's figure, its typed arrays decoded."""
    figure: dict[str, Any] = json.loads(chart.proto.spec)  # type: ignore[attr-defined]

    def decode(value: Any) -> Any:
        if isinstance(value, dict) and "bdata" in value:
            flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            shape = value.get("shape")
            if isinstance(shape, str):
                return flat.reshape([int(n) for n in shape.split(",")]).tolist()
            return flat.tolist()
        if isinstance(value, dict):
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    return {"data": decode(figure["data"]), "layout": figure["layout"]}


def test_overview_places_every_device_and_marks_the_never_seen(
    monkeypatch: pytest.MonkeyPatch, populated: tuple[str, Dataset]
) -> None:
    dsn, data = populated
    app = run_page(monkeypatch, dsn)
    assert not app.exception
    assert not app.error
    assert [h.value for h in app.header] == ["Overview", "Bird species"]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Devices"] == "4"
    assert metrics["Never seen"] == "1"  # spare: in the registry, never reported
    yor_online = (data.now - data.t).total_seconds() <= 120
    assert metrics["Online"] == str(1 + yor_online)  # ouse reported seconds ago
    figure = spec(app.get("plotly_chart")[0])
    on_map = {name for trace in figure["data"] for name in trace["text"]}
    # yor and ouse have coordinates (lab has no registry row, spare none): both on the map,
    # on plain axes (no tiles: it works offline).
    assert {n.split(" ")[0] for n in on_map} == {"yor", "ouse"}
    assert all(t["type"] == "scatter" for t in figure["data"])
    assert "map" not in figure["layout"] and "mapbox" not in figure["layout"]
    assert "Not on the map (no coordinates): lab, spare" in texts(app.caption)
    assert "never reported (not counted online): spare" in texts(app.caption)
    fleet = app.dataframe[0].value
    states = dict(zip(fleet["device"], fleet["state"], strict=True))
    assert states["spare"] == "never seen" and states["ouse"] == "online"
    events = app.dataframe[1].value
    assert events.loc[0, "classes"] == "Car 0.80"
    labels = [b.label for b in app.download_button]
    assert labels.count("Download CSV") == len(app.get("plotly_chart")) + len(app.dataframe)


def test_the_offline_map_shows_every_placed_device_of_a_fleet(
    monkeypatch: pytest.MonkeyPatch, schema_db: str
) -> None:
    fleet = seed_fleet(schema_db, 6)
    app = run_page(monkeypatch, schema_db)
    assert not app.exception and not app.error
    figure = spec(app.get("plotly_chart")[0])
    shown = {str(n).split(" ")[0] for t in figure["data"] for n in t["text"]}
    assert shown == {*fleet.devices, fleet.spare}
    never = [t for t in figure["data"] if t["name"] == "never seen"]
    assert [t["text"] for t in never] == [["spare (never seen)"]]
    metrics = {m.label: m.value for m in app.metric}
    assert (metrics["Devices"], metrics["Never seen"], metrics["Uncalibrated"]) == ("7", "1", "1")
    assert int(metrics["Online"]) <= 1  # dev-01 only (if this run took under a minute)
    # The fleet chart shows the five loudest, not all six: small with any fleet.
    levels = spec(app.get("plotly_chart")[1])
    assert len(levels["data"]) == 5


def test_device_page_draws_every_chart(monkeypatch: pytest.MonkeyPatch, schema_db: str) -> None:
    fleet = seed_fleet(schema_db, 2)
    app = run_page(monkeypatch, schema_db)
    app.sidebar.radio(key="page").set_value("Device").run()
    app.sidebar.selectbox(key="device").set_value("dev-02").run()
    assert not app.exception and not app.error
    assert [h.value for h in app.header] == ["Device dev-02: Sensor dev-02"]
    keys = [c.key for c in app.get("plotly_chart")]
    assert keys == ["levels", "hour-class", "spectrogram", "indices", "class-levels"]
    figures = [spec(c) for c in app.get("plotly_chart")]
    levels, heat, spectrum, _indices, by_class = figures
    names = [t["name"] for t in levels["data"]]
    assert names == ["L90", "L10-L90", "LAFmax", "LAeq"]
    # every class of the seed, every hour of the day
    assert len(heat["data"][0]["y"]) == 12 and len(heat["data"][0]["x"]) == 24
    # 27 bands with values, one column per minute of the raw rows (the last 2 h of the day)
    assert len(spectrum["data"][0]["y"]) == 27
    # one column per 10 minutes (the last day's bucket) of the raw rows' per-minute band means
    step = timedelta(minutes=10)
    bins = {
        BUCKET_ORIGIN + (fleet.raw_start + timedelta(minutes=m) - BUCKET_ORIGIN) // step * step
        for m in range(int(RAW.total_seconds() // 60))
    }
    assert len(spectrum["data"][0]["x"]) == len(bins)
    # what makes the noise: class k was heard at 50 + 2k + (device %% 3) dB(A)
    box = by_class["data"][0]
    medians = dict(zip([x.split(" (")[0] for x in box["x"]], box["median"], strict=True))
    assert len(medians) == 10
    for label, median in medians.items():
        assert median == pytest.approx(50 + 2 * (LABELS.index(label) + 1) + 2), label
    assert fleet.devices == ["dev-01", "dev-02"]


def test_health_page_lists_every_device_with_its_pipeline(
    monkeypatch: pytest.MonkeyPatch, schema_db: str
) -> None:
    seed_fleet(schema_db, 3)
    app = run_page(monkeypatch, schema_db)
    app.sidebar.radio(key="page").set_value("Health").run()
    assert not app.exception and not app.error
    health = app.dataframe[0].value.set_index("device")
    assert list(health.index) == ["dev-01", "dev-02", "dev-03", "spare"]
    assert health.loc["spare", "state"] == "never seen"
    assert health.loc["spare", "last_seen_ago"] == "never"
    assert health.loc["dev-01", "gaps"] == 1 and health.loc["dev-01", "lost"] == 30
    assert health.loc["dev-03", "gaps"] == 0
    assert bool(health.loc["dev-03", "uncalibrated"]) is True
    assert health.loc["dev-02", "inference_ms"] == pytest.approx(40)
    assert health.loc["dev-02", "behind_s"] == pytest.approx(0)
    assert health.loc["dev-02", "classified_pct"] == pytest.approx(100)
    gaps = app.dataframe[1].value
    assert sorted(gaps["device"]) == ["dev-01", "dev-02"]
    syncs = app.dataframe[-1].value
    assert len(syncs) == 2
    assert "SOUNDSCAPE_DASHBOARD_BROKER_STATUS" in texts(app.caption)


def test_pages_follow_the_sidebar(
    monkeypatch: pytest.MonkeyPatch, populated: tuple[str, Dataset]
) -> None:
    dsn, data = populated
    app = run_page(monkeypatch, dsn)
    app.sidebar.slider(key="score").set_value(0.45).run()
    assert not app.exception
    # Custom range in the past: the pages stay up and say there is nothing there.
    app.sidebar.radio(key="range").set_value("Custom").run()
    start = data.t.replace(tzinfo=None) - timedelta(days=30)
    app.sidebar.datetime_input(key="from").set_value(start).run()
    app.sidebar.datetime_input(key="to").set_value(start + timedelta(days=1)).run()
    for page in ("Overview", "Device", "Health"):
        app.sidebar.radio(key="page").set_value(page).run()
        assert not app.exception, page
        assert not app.error, page
    assert "No noise events in this range." in texts(app.info) or page == "Health"
    # An inverted range is refused in the sidebar, not with a traceback.
    app.sidebar.datetime_input(key="to").set_value(start - timedelta(days=1)).run()
    assert not app.exception
    assert "after its start" in texts(app.sidebar.error)


def _failing_sections() -> None:
    import psycopg

    from services.dashboard.ui import section

    with section("Levels"):
        raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
    with section("Gaps"):
        raise psycopg.errors.InsufficientPrivilege("permission denied for table gaps")


def test_failing_query_becomes_a_warning() -> None:
    app = AppTest.from_function(_failing_sections, default_timeout=30).run()
    assert not app.exception
    warnings = texts(app.warning)
    assert "Levels: the query took longer than SOUNDSCAPE_DASHBOARD_STATEMENT_TIMEOUT_S" in warnings
    assert "Gaps could not be loaded: permission denied for table gaps" in warnings
