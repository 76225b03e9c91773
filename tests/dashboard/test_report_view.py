"""The dashboard's noise-report section: off by default, the report's figures when on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from services.dashboard.app import PAGE
from services.report import core
from tests.dashboard.data import Dataset

pytestmark = pytest.mark.integration


def test_report_section_shows_the_figures_and_downloads(
    monkeypatch: pytest.MonkeyPatch, populated: tuple[str, Dataset], tmp_path: Path
) -> None:
    dsn, _ = populated
    london = core.zone_of("Europe/London")
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    spans = core.period_spans(yesterday, london)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM levels_hourly")  # only the hours below (populate rolls up)
        start, end = spans["day"].start, spans["night"].end
        hour = start
        while hour < end:
            energy = 3600 * 10**6.0
            conn.execute(
                "INSERT INTO levels_hourly VALUES ('yor', %s, 3600, %s, 3600, %s, 3600, %s, 3600)",
                (hour, energy, energy, energy),
            )
            hour += timedelta(hours=1)
    registry = tmp_path / "devices.toml"
    registry.write_text('[[device]]\nid = "yor"\ntimezone = "Europe/London"\n', encoding="utf-8")
    for name in ("DATABASE_URL", "TIMEZONE", "MIN_SCORE"):
        monkeypatch.delenv(f"SOUNDSCAPE_DASHBOARD_{name}", raising=False)
    monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_DATABASE_URL", dsn)
    monkeypatch.setenv("SOUNDSCAPE_DEVICES_FILE", str(registry))
    app = AppTest.from_file(str(PAGE), default_timeout=30).run()
    assert not app.exception
    app.sidebar.radio(key="page").set_value("Report").run()
    assert not app.exception
    assert "Noise report" not in [h.value for h in app.header]
    app.toggle(key="report_on").set_value(True).run()
    assert not app.exception
    assert not app.error
    assert "Noise report" in [h.value for h in app.header]
    tables = [d.value for d in app.dataframe]
    (days,) = [t for t in tables if "lden_db" in t.columns]
    (hours,) = [t for t in tables if "start_local" in t.columns]
    assert len(hours) == 4 * 7 * 24 + sum(
        len(core.hour_spans(yesterday - timedelta(days=k), london)) - 24 for k in range(7)
    )
    yor = days[(days["device"] == "yor") & (days["date"] == yesterday)].iloc[0]
    assert yor["timezone"] == "Europe/London"
    assert (yor["lday_db"], yor["levening_db"], yor["lnight_db"]) == (60.0, 60.0, 60.0)
    assert yor["night_coverage"] == 1.0
    assert set(days["device"]) == {"yor", "ouse", "lab", "spare"}
    buttons = [b.label for b in app.download_button]
    assert "Noise report as CSV" in buttons and "Noise report as PARQUET" in buttons
