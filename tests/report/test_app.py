"""`soundscape report` end to end against a real PostgreSQL with seeded hourly rollups.

The rollup table is created here with the DDL ingest's migration uses (`IF NOT EXISTS`, so
the test keeps working once that migration creates it).
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from services.cli import COMMANDS
from services.ingest import db as ingest_db
from services.report import app, core, db
from services.report.settings import ReportSettings

pytestmark = pytest.mark.integration


LONDON = core.zone_of("Europe/London")
SPRING = date(2026, 3, 28)  # its night (to 07:00 BST on the 29th) is 7 hours
DAY = [60.0, 70.0] * 6
EVENING = [55.0, 57.0, 59.0, 61.0]
NIGHT = [50.0, 52.0, 54.0, 56.0, 58.0, 60.0, 62.0]


def _insert_hour(conn: psycopg.Connection, device: str, start: datetime, level: float) -> None:
    energy = 3600 * 10 ** (level / 10)
    conn.execute(
        "INSERT INTO levels_hourly VALUES (%s, %s, 3600, %s, 3600, %s, 3600, %s, 3600)",
        (device, start, energy, energy, energy),
    )


def _insert_event(conn: psycopg.Connection, device: str, start: datetime) -> None:
    conn.execute(
        "INSERT INTO noise_events (device, window_start, window_seq, window_duration, "
        "threshold_db, laeq_db, lamax_db, sync_id, sync_time) "
        "VALUES (%s, %s, 0, 10, 65, 70, 80, %s, now())",
        (device, start, uuid.uuid4()),
    )


@pytest.fixture
def seeded(database: str) -> Iterator[str]:
    """The test database with ingest's schema and two days of device yor in `levels_hourly`: the
    28th (spring-forward night) fully measured, the 29th with only its day period."""
    with psycopg.connect(database, autocommit=True) as conn:
        ingest_db.migrate(conn)
        spans = core.period_spans(SPRING, LONDON)
        for name, levels in (("day", DAY), ("evening", EVENING), ("night", NIGHT)):
            for k, level in enumerate(levels):
                _insert_hour(conn, "yor", spans[name].start + timedelta(hours=k), level)
        nxt = core.period_spans(SPRING + timedelta(days=1), LONDON)
        for k in range(12):
            _insert_hour(conn, "yor", nxt["day"].start + timedelta(hours=k), 65.0)
        _insert_hour(conn, "other", spans["day"].start, 99.0)
        for start in (
            spans["day"].start + timedelta(minutes=10),
            spans["evening"].start + timedelta(minutes=1),
            spans["night"].start + timedelta(hours=3),
        ):
            _insert_event(conn, "yor", start)
    yield database


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "devices.toml"
    path.write_text('[[device]]\nid = "yor"\ntimezone = "Europe/London"\n', encoding="utf-8")
    return path


def _args(dsn: str, registry: Path, fmt: str, *extra: str) -> list[str]:
    return [
        "--device",
        "yor",
        "--from",
        "2026-03-28",
        "--to",
        "2026-03-29",
        "--format",
        fmt,
        "--devices",
        str(registry),
        "--database-url",
        dsn,
        *extra,
    ]


def test_report_is_a_command() -> None:
    assert COMMANDS["report"] == "services.report.app"


def test_csv_report_to_stdout(
    seeded: str, registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.main(_args(seeded, registry, "csv")) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["date"] for r in rows] == ["2026-03-28", "2026-03-29"]
    first, second = rows
    assert float(first["lden_db"]) == pytest.approx(67.0390, abs=0.01)
    assert float(first["lnight_db"]) == pytest.approx(57.7018, abs=0.01)
    assert float(first["night_hours"]) == 7
    assert (first["day_events"], first["evening_events"], first["night_events"]) == ("1", "1", "1")
    assert first["timezone"] == "Europe/London"
    assert float(second["lday_db"]) == pytest.approx(65.0, abs=0.01)
    assert second["levening_db"] == "" and second["lden_db"] == ""
    assert float(second["evening_coverage"]) == 0.0


def test_json_and_hourly_json(seeded: str, registry: Path, tmp_path: Path) -> None:
    out, hourly = tmp_path / "days.json", tmp_path / "hours.json"
    argv = _args(seeded, registry, "json", "--out", str(out), "--hourly", str(hourly))
    assert app.main(argv) == 0
    days = json.loads(out.read_text())
    assert days[0]["lden_db"] == pytest.approx(67.0390, abs=0.01)
    assert days[1]["lnight_db"] is None and days[1]["lden_db"] is None
    hours = json.loads(hourly.read_text())
    # Calendar days 28 (24 hours) and 29 (23 hours: 01:00 never happens).
    assert len(hours) == 24 + 23
    on_29th = [h for h in hours if h["date"] == "2026-03-29"]
    assert [h["start_local"][11:16] for h in on_29th[:3]] == ["00:00", "02:00", "03:00"]
    assert on_29th[0]["laeq_db"] == pytest.approx(NIGHT[1], abs=0.01)
    assert on_29th[0]["period"] == "night"


def test_parquet_reads_back(seeded: str, registry: Path, tmp_path: Path) -> None:
    out, hourly = tmp_path / "days.parquet", tmp_path / "hours.parquet"
    argv = _args(seeded, registry, "parquet", "--out", str(out), "--hourly", str(hourly))
    assert app.main(argv) == 0
    days = pq.read_table(out).to_pylist()
    assert days[0]["date"] == SPRING
    assert days[0]["lden_db"] == pytest.approx(67.0390, abs=0.01)
    assert days[1]["lden_db"] is None
    assert pq.read_table(out).schema.names == list(core.DAY_COLUMNS)
    hours = pq.read_table(hourly).to_pylist()
    assert hours[0]["start_utc"] == datetime(2026, 3, 28, 0, tzinfo=UTC)
    assert len(hours) == 47


def test_event_threshold_and_unknown_device(
    seeded: str, registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.main([*_args(seeded, registry, "json"), "--min-event-db", "75"]) == 0
    days = json.loads(capsys.readouterr().out)
    assert days[0]["day_events"] == 0
    argv = _args(seeded, registry, "json")
    argv[1] = "nobody"
    assert app.main(argv) == 0
    days = json.loads(capsys.readouterr().out)
    assert days[0]["timezone"] == "UTC" and days[0]["lday_db"] is None


def test_bad_arguments_exit_2(registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--device", "yor", "--from", "2026-03-02", "--to", "2026-03-01"]
    assert app.main([*base, "--devices", str(registry), "--database-url", "x"]) == 2
    ok = ["--device", "yor", "--from", "2026-03-01", "--to", "2026-03-02"]
    assert app.main([*ok, "--format", "parquet", "--database-url", "x"]) == 2
    bad = registry.parent / "bad.toml"
    bad.write_text('[[device]]\nid = "yor"\ntimezone = "Mars/Olympus"\n', encoding="utf-8")
    assert app.main([*ok, "--devices", str(bad), "--database-url", "x"]) == 2
    assert "unknown time zone" in capsys.readouterr().err


def test_connection_is_read_only(seeded: str) -> None:
    with (
        db.connect(ReportSettings(), seeded) as conn,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("DELETE FROM levels_hourly")


def test_half_hour_zone_reads_minute_rollups(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day = date(2026, 1, 5)
    spans = core.period_spans(day, core.zone_of("Asia/Kolkata"))
    with psycopg.connect(database, autocommit=True) as conn:
        ingest_db.migrate(conn)
        energy = 60 * 10**6.5
        # The evening, 19:00-23:00 IST = 13:30-17:30 UTC, one row per minute.
        conn.cursor().executemany(
            "INSERT INTO levels_minute VALUES ('blr', %s, 60, %s, 60, %s, 60, %s, 60)",
            [
                (spans["evening"].start + timedelta(minutes=k), energy, energy, energy)
                for k in range(4 * 60)
            ],
        )
    registry = tmp_path / "devices.toml"
    registry.write_text('[[device]]\nid = "blr"\ntimezone = "Asia/Kolkata"\n', encoding="utf-8")
    argv = ["--device", "blr", "--from", "2026-01-05", "--to", "2026-01-05", "--format", "json"]
    assert app.main([*argv, "--devices", str(registry), "--database-url", database]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["levening_db"] == pytest.approx(65.0, abs=0.01)
    assert row["evening_coverage"] == 1.0
    assert row["lday_db"] is None and row["lden_db"] is None
