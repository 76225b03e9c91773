"""Smoke tests of the Streamlit page with AppTest, on empty and populated databases."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from services.dashboard.app import PAGE
from tests.dashboard.data import Dataset
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


def test_populated_page_shows_every_section(
    monkeypatch: pytest.MonkeyPatch, populated: tuple[str, Dataset]
) -> None:
    dsn, data = populated
    app = run_page(monkeypatch, dsn)
    assert not app.exception
    assert not app.error
    headers = [h.value for h in app.header]
    assert headers == [
        "Devices", "Sound level", "Detections", "Acoustic indices", "Noise events", "Gaps",
    ]  # fmt: skip
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Devices"] == "4"
    # ouse reported seconds ago; yor's data ends at the last full hour
    yor_online = (data.now - data.t).total_seconds() <= 120
    assert metrics["Online"] == str(1 + yor_online)
    charts = app.get("plotly_chart")
    # map, levels, summaries, top classes, indices, gaps by cause
    assert len(charts) == 6
    assert len(app.dataframe) == 4  # devices, detections, noise events, gaps
    devices = app.dataframe[0].value
    assert sorted(devices["device"]) == ["lab", "ouse", "spare", "yor"]
    calibrated = dict(zip(devices["device"], devices["calibrated"], strict=True))
    assert bool(calibrated["yor"]) is True
    assert bool(calibrated["ouse"]) is False
    assert pd.isna(calibrated["lab"])  # no levels: unknown, not "calibrated"
    assert "Not on the map (no coordinates): lab, spare" in texts(app.caption)
    assert "ouse use default calibration values" in texts(app.warning)
    shown = texts(app.warning) + texts(app.caption)
    assert "classified" in shown, "the last hour's classification coverage is shown"
    detections = app.dataframe[1].value
    assert len(detections) == 51
    assert app.dataframe[2].value.loc[0, "classes"] == "Car 0.80"
    assert sorted(app.dataframe[3].value["kind"]) == ["inference_overload", "spool_overflow"]


def test_populated_page_follows_sidebar_choices(
    monkeypatch: pytest.MonkeyPatch, populated: tuple[str, Dataset]
) -> None:
    dsn, data = populated
    app = run_page(monkeypatch, dsn)
    app.sidebar.slider(key="score").set_value(0.45).run()
    assert not app.exception
    assert set(app.dataframe[1].value["label"]) == {"Speech", "Car", "Bird"}
    app.sidebar.multiselect(key="devices_shown").set_value(["ouse"]).run()
    assert not app.exception
    assert "No detections in this range yet." in texts(app.info)
    assert {m.label: m.value for m in app.metric}["Devices"] == "1"
    app.sidebar.multiselect(key="devices_shown").set_value([]).run()
    assert "Choose at least one device" in texts(app.info)
    # A custom range in the past: the page stays up and says there is nothing there.
    app.sidebar.multiselect(key="devices_shown").set_value(["yor", "lab"]).run()
    app.sidebar.radio(key="range").set_value("Custom").run()
    assert not app.exception
    start = data.t.replace(tzinfo=None) - timedelta(days=30)
    app.sidebar.datetime_input(key="from").set_value(start).run()
    app.sidebar.datetime_input(key="to").set_value(start + timedelta(days=1)).run()
    assert not app.exception
    assert "No sound levels in this range yet." in texts(app.info)
    # An inverted range is refused in the sidebar, not with a traceback.
    app.sidebar.datetime_input(key="to").set_value(start - timedelta(days=1)).run()
    assert not app.exception
    assert "after its start" in texts(app.sidebar.error)


def _failing_sections() -> None:
    import psycopg

    from services.dashboard.page import section

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
