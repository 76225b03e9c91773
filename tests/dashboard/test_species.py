"""The species section: ingest's species table summarised per species, drawn, rendered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from services.dashboard.species import (
    LICENCE_NOTE,
    SUMMARY_COLUMNS,
    species_figure,
    species_summary,
)

pytestmark = pytest.mark.integration

T = datetime(2025, 5, 26, 5, 0, tzinfo=UTC)
ROWS = [  # device, minutes after T, scientific, common, score, rank
    ("yor", 0, "Parus major", "Great Tit", 0.8, 1),
    ("yor", 0, "Turdus merula", "Eurasian Blackbird", 0.4, 2),
    ("yor", 3, "Parus major", "Great Tit", 0.6, 1),
    ("pi2", 5, "Parus major", "Great Tit", 0.7, 1),
    ("pi2", 90, "Erithacus rubecula", "European Robin", 0.9, 1),  # outside the hour below
    ("other", 1, "Pica pica", "Eurasian Magpie", 0.9, 1),  # a device not chosen
]


def insert(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for device, minutes, scientific, common, score, rank in ROWS:
            conn.execute(
                "INSERT INTO species (device, window_start, window_seq, window_duration, model, "
                "scientific_name, common_name, score, rank, min_confidence, location_filtered, "
                "sync_id, sync_time) VALUES (%s, %s, %s, 3, 'BirdNET_GLOBAL_6K_V2.4', %s, %s, "
                "%s, %s, 0.25, true, gen_random_uuid(), now())",
                (device, T + timedelta(minutes=minutes), minutes, scientific, common, score, rank),
            )


def test_summary_counts_windows_per_species_in_the_range(schema_db: str) -> None:
    insert(schema_db)
    with psycopg.connect(schema_db) as conn:
        got = species_summary(conn, ["yor", "pi2"], T, T + timedelta(hours=1))
        above = species_summary(conn, ["yor", "pi2"], T, T + timedelta(hours=1), 0.65)
    assert list(got.columns) == list(SUMMARY_COLUMNS)
    assert got["scientific_name"].tolist() == ["Parus major", "Turdus merula"]
    tit = got.iloc[0]
    assert (tit["detections"], tit["devices"]) == (3, 2)
    assert tit["max_score"] == pytest.approx(0.8) and tit["mean_score"] == pytest.approx(0.7)
    assert tit["last_heard"] == T + timedelta(minutes=5, seconds=3)
    assert above["detections"].tolist() == [2]
    fig = species_figure(got)
    assert list(fig.data[0].y) == ["Eurasian Blackbird", "Great Tit"]
    assert list(fig.data[0].x) == [1, 3]


def _page(dsn: str, start: str, end: str) -> None:
    from datetime import datetime

    import psycopg

    from services.dashboard.species import render_species

    with psycopg.connect(dsn) as conn:
        render_species(conn, ["yor", "pi2"], datetime.fromisoformat(start),
                       datetime.fromisoformat(end))  # fmt: skip


def test_render_shows_the_species_and_the_licence(schema_db: str) -> None:
    insert(schema_db)
    hour = (T.isoformat(), (T + timedelta(hours=1)).isoformat())
    app = AppTest.from_function(_page, args=(schema_db, *hour), default_timeout=30).run()
    assert not app.exception
    assert [h.value for h in app.header] == ["Bird species"]
    assert len(app.dataframe) == 1
    assert app.dataframe[0].value["common_name"].tolist() == ["Great Tit", "Eurasian Blackbird"]
    assert LICENCE_NOTE in [c.value for c in app.caption]
    empty = (T - timedelta(days=1)).isoformat(), T.isoformat()
    none = AppTest.from_function(_page, args=(schema_db, *empty), default_timeout=30).run()
    assert not none.exception and "No species detected" in none.info[0].value
