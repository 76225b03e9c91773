"""Ingest stores GapReports in the gaps table, once however often they are delivered, and
turns rises of the broker's `$SYS` drop counter into gap rows."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import msgpack
import psycopg
import pytest

from services.ingest import db
from services.ingest.core import (
    SYS_DROPPED,
    SYS_STORED,
    SYS_UPTIME,
    BrokerDrops,
    Rejection,
    Result,
    Triage,
    row_problem,
)
from services.ingest.spool import Spool
from services.ingest.sync import Syncer
from shared.messages import JSON, MSGPACK, GapCause, GapReport
from shared.settings import MqttSettings
from tests.ingest.helpers import NOW, T0, Publisher, count, rows, ts
from tests.ingest.test_service import running, settings, until

PREFIX = "p"


def report(
    start: float = T0, cause: GapCause = "service_down", node: str = "levels-1"
) -> GapReport:
    return GapReport(device="yor", start=start, end=start + 30, cause=cause, node=node, count=30)


def triage(msg: GapReport, json: bool = False) -> Result | Rejection:
    ctype = JSON if json else None
    return Triage(PREFIX).message(
        msg.topic(PREFIX), msg.encode(JSON if json else MSGPACK), ctype, NOW
    )


def test_a_gap_report_is_one_gaps_row_with_a_uid_derived_from_it() -> None:
    got = triage(report())
    assert isinstance(got, Result) and got.kind == "gaps"
    ((uid, device, kind, first, last, n, recorded, node),) = got.rows
    assert (device, kind, first, last, n, recorded, node) == (
        "yor", "service_down", T0, T0 + 30, 30, NOW, "levels-1"
    )  # fmt: skip
    assert uid == got.key and row_problem("gaps", got.rows[0]) is None
    again = triage(report(), json=True)  # delivered twice, once as JSON: the same key
    assert isinstance(again, Result) and again.key == got.key
    other = [
        triage(report(T0 + 1)),
        triage(report(cause="levels_overload")),
        triage(report(node="x")),
    ]
    assert len({r.key for r in other if isinstance(r, Result)} | {got.key}) == 4


@pytest.mark.parametrize(
    "payload",
    [
        {"device": "yor", "start": T0, "end": T0 - 1, "cause": "service_down", "node": "n"},
        {"device": "yor", "start": T0, "end": T0 + 1, "cause": "unclassified", "node": "n"},
        {"device": "yor", "start": T0, "end": T0 + 1, "cause": "service_down", "node": "a/b"},
        {"device": "yor", "start": 1.0, "end": T0, "cause": "service_down", "node": "n"},
    ],
)
def test_a_bad_gap_report_is_rejected(payload: dict[str, object]) -> None:
    got = Triage(PREFIX).message("p/yor/gaps", msgpack.packb(payload), None, NOW)
    assert isinstance(got, Rejection) and got.category == "invalid"


def test_broker_drops_become_gap_rows_from_a_baseline() -> None:
    b = BrokerDrops()
    assert b.message(SYS_UPTIME, b"100 seconds", 1000.0) is None
    assert b.message(SYS_DROPPED, b"7", 1000.0) is None  # the baseline: undated drops
    assert b.message(SYS_DROPPED, b"7", 1010.0) is None
    rise = b.message(SYS_DROPPED, b"12", 1020.0)
    assert isinstance(rise, Result) and rise.kind == "gaps" and rise.device == "*"
    ((_, device, kind, first, last, n, _, node),) = rise.rows
    assert (device, kind, first, last, n, node) == (
        "*",
        "broker_dropped",
        1010.0,
        1020.0,
        5,
        "broker",
    )
    assert row_problem("gaps", rise.rows[0]) is None
    # the broker restarted: uptime fell, the counter began again at 0
    assert b.message(SYS_UPTIME, b"5 seconds", 1030.0) is None
    after = b.message(SYS_DROPPED, b"3", 1040.0)
    assert isinstance(after, Result) and after.rows[0][5] == 3
    assert b.message(SYS_STORED, b"42", 1040.0) is None
    assert (b.dropped, b.stored, b.recorded) == (3, 42, 8)
    assert isinstance(b.message(SYS_DROPPED, b"\xff", 1050.0), Rejection)
    assert isinstance(b.message("$SYS/broker/other", b"1", 1050.0), Rejection)


@pytest.mark.integration
def test_gap_reports_delivered_twice_are_stored_once(database: str, tmp_path: Path) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        db.migrate(conn)
    spool = Spool(tmp_path / "s.sqlite3", 100)
    sync = Syncer(spool, database, source="test", batch_size=10)
    try:
        first = [triage(report()), triage(report(T0 + 100, "inference_overload", "inf-1"))]
        broker = BrokerDrops()
        broker.message(SYS_DROPPED, b"1", T0)
        rise = broker.message(SYS_DROPPED, b"4", T0 + 10)
        results = [r for r in [*first, rise] if isinstance(r, Result)]
        assert len(results) == 3
        spool.put(results)
        assert sync.sync().error is None
        spool.put([r for r in first if isinstance(r, Result)])  # redelivered after a restart
        assert sync.sync().error is None
    finally:
        sync.close()
        spool.close()
    assert rows(
        database,
        "SELECT device, kind, node, first_start, last_start, count FROM gaps "
        "ORDER BY first_start, kind DESC",
    ) == [
        ("yor", "service_down", "levels-1", ts(T0), ts(T0 + 30), 30),
        ("*", "broker_dropped", "broker", ts(T0), ts(T0 + 10), 3),
        ("yor", "inference_overload", "inf-1", ts(T0 + 100), ts(T0 + 130), 30),
    ]


@pytest.mark.integration
async def test_ingest_reads_the_brokers_sys_topics_and_stores_gap_reports(
    tmp_path: Path, mqtt_settings: MqttSettings, database: str, prefix: str
) -> None:
    pub = await asyncio.to_thread(Publisher, mqtt_settings.port, prefix, f"pub-{uuid.uuid4()}")
    gap = GapReport(
        device="yor", start=T0, end=T0 + 4, cause="capture_restart", node="yor", count=64000
    )
    async with running(settings(tmp_path, database, broker_drops=True), mqtt_settings) as ingest:
        for _ in range(2):  # delivered twice
            await asyncio.to_thread(pub.publish, gap)
        await asyncio.to_thread(pub.close)
        await until("the gap stored", lambda: count(database, "gaps") == 1)
        # the broker's retained uptime arrives at once on subscribing
        await until("$SYS read", lambda: ingest.stats.snapshot().get("broker_received", 0) > 0)
        counters = ingest.stats.snapshot()
    await asyncio.to_thread(clear_retained, mqtt_settings.port, f"{prefix}/test-ingest/status")
    assert counters["received"] == counters["acked"] == 2
    assert rows(database, "SELECT kind, node, count FROM gaps") == [
        ("capture_restart", "yor", 64000)
    ]


def clear_retained(port: int, topic: str) -> None:
    """Remove a retained message this test caused (an empty retained payload)."""
    pub = Publisher(port, "unused", f"clear-{uuid.uuid4()}")
    pub.client.publish(topic, b"", 1, True).wait_for_publish(5)
    pub.close()
