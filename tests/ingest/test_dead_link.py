"""A database link that silently stops: a loopback proxy that stops forwarding without
closing either side (this kernel has no packet filter or netem). A sync on it fails within
`db_timeout`, the service stays up and keeps spooling, and once the link returns the spooled
results land exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from services.ingest import db
from services.ingest.service import Ingest
from services.ingest.settings import IngestSettings
from services.ingest.spool import Spool
from services.ingest.sync import Syncer, SyncReport
from shared.devices import DeviceRegistry
from shared.settings import MqttSettings
from tests.ingest.helpers import (
    NOW,
    Publisher,
    as_results,
    count,
    labels,
    level,
    rows,
    wait_for,
)
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration

TIMEOUT = 2.0  # db_timeout and connect_timeout of these tests, seconds
MARGIN = 2.0  # for a shared, loaded 2-core machine
K = 3  # labels per window


@pytest.fixture
def proxy(pg_admin_dsn: str) -> Iterator[TcpProxy]:
    info = conninfo_to_dict(pg_admin_dsn)
    with TcpProxy(str(info.get("host", "127.0.0.1")), int(str(info.get("port", 5432)))) as p:
        yield p


def via(dsn: str, proxy: TcpProxy) -> str:
    """The same database, reached through the proxy."""
    return make_conninfo(dsn, host="127.0.0.1", port=str(proxy.port))


def timed(
    fn: Callable[[], SyncReport],
) -> tuple[list[tuple[float, SyncReport]], Callable[[], SyncReport]]:
    """Wrap a sync method: every call's duration and report are recorded."""
    seen: list[tuple[float, SyncReport]] = []

    def run() -> SyncReport:
        began = time.monotonic()
        report = fn()
        seen.append((time.monotonic() - began, report))
        return report

    return seen, run


def test_tcp_and_server_timeouts_alone_leave_a_statement_blocked(
    proxy: TcpProxy, database: str
) -> None:
    """The trap the watchdog exists for: the proxy's kernel keeps acknowledging."""
    with db.connect(
        via(database, proxy), connect_timeout=1, timeout=1.0, application_name="test"
    ) as conn:
        assert conn.execute("SHOW tcp_user_timeout").fetchone() == ("1000",)  # ms
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1s",)
        proxy.stall()
        done = threading.Event()

        def query() -> None:
            conn.execute("SELECT 1")
            done.set()

        thread = threading.Thread(target=query)
        thread.start()
        assert not done.wait(3.0), "a TCP or server timeout ended the statement"
        proxy.resume()  # the held bytes flow on: the statement completes
        assert done.wait(5.0)
        thread.join()


def test_the_dsn_keeps_its_own_settings(database: str) -> None:
    dsn = make_conninfo(database, options="-c statement_timeout=7s", keepalives_idle="17")
    with db.connect(dsn, connect_timeout=1, timeout=3.0, application_name="test") as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("7s",)
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("3s",)
        assert conn.info.get_parameters()["keepalives_idle"] == "17"
        assert conn.info.get_parameters()["tcp_user_timeout"] == "3000"
        assert conn.execute("SHOW tcp_keepalives_idle").fetchone() == ("2",)  # server side
        assert conn.execute("SHOW tcp_user_timeout").fetchone() == ("3000",)


def test_the_server_ends_a_transaction_its_client_left_behind(
    proxy: TcpProxy, database: str
) -> None:
    name = f"left-{uuid.uuid4().hex[:8]}"
    conn = db.connect(via(database, proxy), connect_timeout=1, timeout=1.0, application_name=name)
    conn.execute("BEGIN")
    conn.execute("CREATE TEMP TABLE held (x int)")  # a lock held by the open transaction
    proxy.stall()  # the client is gone as far as the server can tell

    def sessions() -> int:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        ((n,),) = rows(database, query, (name,))
        return int(str(n))

    assert sessions() == 1
    wait_for("the server to end the session", lambda: sessions() == 0, 1.0 + MARGIN)
    proxy.resume()
    conn.close()


def test_a_sync_on_a_stalled_link_fails_in_time_and_the_spool_keeps_it(
    tmp_path: Path, proxy: TcpProxy, database: str
) -> None:
    spool = Spool(tmp_path / "spool.sqlite3", 10_000)
    syncer = Syncer(
        spool,
        via(database, proxy),
        source="test",
        batch_size=100,
        connect_timeout=int(TIMEOUT),
        db_timeout=TIMEOUT,
    )
    with contextlib.closing(spool), syncer:
        spool.put(as_results([level(seq) for seq in range(10)]), NOW)
        assert syncer.sync().error is None
        spool.put(as_results([level(seq) for seq in range(10, 30)]), NOW)
        proxy.stall()  # the connection is open and idle: the next statement gets no answer
        began = time.monotonic()
        report = syncer.sync()
        took = time.monotonic() - began
        assert report.error is not None and "sync timed out" in report.error, report
        assert "within 2 s; link dropped" in report.error
        assert TIMEOUT - 0.1 <= took <= TIMEOUT + MARGIN, took
        assert spool.depth() == 20
        assert syncer.stats.snapshot()["sync_timeouts"] == 1
        # Still stalled: a new connection gets no answer either, within connect_timeout.
        began = time.monotonic()
        report = syncer.sync()
        assert time.monotonic() - began <= TIMEOUT + MARGIN
        assert report.error is not None and "database unreachable" in report.error, report
        assert spool.depth() == 20
        proxy.resume()
        report = syncer.sync()
        assert report.error is None, report
        assert report.results == 20
        assert spool.depth() == 0
    assert [s for (s,) in rows(database, "SELECT window_seq FROM levels ORDER BY 1")] == list(
        range(30)
    )


def test_cancelling_a_sync_on_a_stalled_link_drops_the_link(
    tmp_path: Path, proxy: TcpProxy, database: str
) -> None:
    """SIGTERM's final sync: the cancel request gets no answer either, so the link goes."""
    spool = Spool(tmp_path / "spool.sqlite3", 10_000)
    syncer = Syncer(spool, via(database, proxy), source="test", batch_size=100, db_timeout=60.0)
    with contextlib.closing(spool), syncer:
        spool.put(as_results([level(0)]), NOW)
        assert syncer.sync().error is None
        spool.put(as_results([level(1)]), NOW)
        proxy.stall()
        reports: list[SyncReport] = []
        thread = threading.Thread(target=lambda: reports.append(syncer.sync()))
        thread.start()
        time.sleep(0.5)
        began = time.monotonic()
        syncer.cancel()  # cancel_safe gives up after 5 s, then the link is dropped
        thread.join(5.0 + MARGIN)
        assert not thread.is_alive()
        assert time.monotonic() - began <= 5.0 + MARGIN
        assert [r.error for r in reports] == ["sync cancelled: link dropped"]
        assert spool.depth() == 1
        proxy.resume()


@pytest.mark.slow
async def test_ingest_survives_a_link_that_stalls_mid_sync_and_stores_everything_once(
    tmp_path: Path,
    proxy: TcpProxy,
    mqtt_settings: MqttSettings,
    database: str,
    prefix: str,
) -> None:
    settings = IngestSettings(
        database_url=via(database, proxy),
        sync_interval=0.2,
        batch_size=50,
        spool=tmp_path / "spool.sqlite3",
        client_id=f"test-ingest-{uuid.uuid4().hex[:8]}",
        node_id="test-ingest",
        connect_timeout=int(TIMEOUT),
        db_timeout=TIMEOUT,
    )
    stop = asyncio.Event()
    ingest = Ingest(settings, mqtt_settings, DeviceRegistry())
    syncs, ingest.syncer.sync = timed(ingest.syncer.sync)  # type: ignore[method-assign]
    task = asyncio.create_task(ingest.run(stop))
    pub = await asyncio.to_thread(Publisher, mqtt_settings.port, prefix, f"pub-{uuid.uuid4()}")

    async def publish(seqs: range) -> None:
        for seq in seqs:
            await asyncio.to_thread(pub.publish, labels(seq, k=K))
            await asyncio.to_thread(pub.publish, level(seq))

    def until(what: str, check: Callable[[], bool], limit_s: float = 30.0) -> Awaitable[None]:
        return asyncio.to_thread(wait_for, what, check, limit_s)

    try:
        await asyncio.to_thread(ingest.link.connected.wait, 10)
        await publish(range(20))
        await until("first windows stored", lambda: count(database, "levels") == 20)
        # The link stops a few kB into the next transaction (in the middle of its COPY).
        proxy.stall_after(3000)
        await publish(range(20, 120))
        await until("a sync timed out", lambda: any(r.error for _, r in syncs))
        assert proxy.stalled
        # The service is up: still subscribed, still spooling, saying what is wrong.
        await until("every result spooled", lambda: ingest.stats.snapshot()["spooled"] == 240)
        assert ingest.link.connected.is_set() and not task.done()
        status = ingest.status("online")
        assert status.state == "degraded" and "timed out" in (status.detail or "")
        ((windows,),) = rows(database, "SELECT count(DISTINCT window_seq) FROM detections")
        stored = count(database, "levels") + int(str(windows))
        assert stored < 240
        assert ingest.spool.depth() == 240 - stored
        await until("two more failed syncs", lambda: sum(bool(r.error) for _, r in syncs) >= 3)
        for took, report in syncs:  # each failed sync ended within its timeout
            assert not report.error or took <= TIMEOUT + MARGIN, (took, report)
        proxy.resume()
        await until("every window stored", lambda: count(database, "levels") == 120)
        await until("spool empty", lambda: ingest.spool.depth() == 0)
        assert ingest.status("online").state == "online"
    finally:
        await asyncio.to_thread(pub.close)
        stop.set()
        await asyncio.wait_for(task, 30)
    timeouts = [r.error for _, r in syncs if r.error and "timed out" in r.error]
    assert timeouts and ingest.stats.snapshot()["sync_timeouts"] == len(timeouts)
    assert [s for (s,) in rows(database, "SELECT window_seq FROM levels ORDER BY 1")] == list(
        range(120)
    )
    per_window = rows(
        database, "SELECT window_seq, count(*), count(DISTINCT label) FROM detections GROUP BY 1"
    )
    assert sorted(per_window) == [(s, K, K) for s in range(120)]
    with psycopg.connect(database) as conn:
        orphans = conn.execute(
            "SELECT count(*) FROM levels l WHERE NOT EXISTS "
            "(SELECT 1 FROM syncs s WHERE s.sync_id = l.sync_id)"
        ).fetchone()
    assert orphans == (0,)
