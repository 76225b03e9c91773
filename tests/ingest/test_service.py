"""ingest as a service against the real broker and PostgreSQL: every kind stored, hostile
payloads rejected and counted, the persistent session, SIGTERM, the command line."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgpack
import psycopg
import pytest

from services.health import fetch_status
from services.ingest.app import main
from services.ingest.service import Ingest
from services.ingest.settings import IngestSettings
from shared.devices import DeviceRegistry
from shared.messages import JSON, LevelsResult
from shared.settings import MqttSettings
from tests.ingest.helpers import (
    Publisher,
    count,
    every_kind,
    ingest_cmd,
    ingest_env,
    labels,
    level,
    rows,
    spool_depth,
    wait_for,
    wait_online,
)
from tests.support.servers import free_port, process

pytestmark = pytest.mark.integration


def settings(tmp_path: Path, dsn: str, **kw: object) -> IngestSettings:
    base: dict[str, object] = {
        "database_url": dsn,
        "sync_interval": 0.3,
        "spool": tmp_path / "spool.sqlite3",
        "client_id": f"test-ingest-{uuid.uuid4().hex[:8]}",
        "node_id": "test-ingest",
    }
    base.update(kw)
    return IngestSettings(**base)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(
    s: IngestSettings, mqtt: MqttSettings, registry: DeviceRegistry | None = None
) -> AsyncIterator[Ingest]:
    stop = asyncio.Event()
    ingest = Ingest(s, mqtt, registry or DeviceRegistry())
    task = asyncio.create_task(ingest.run(stop))
    try:
        await asyncio.to_thread(ingest.link.connected.wait, 10)
        assert ingest.link.connected.is_set()
        yield ingest
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def until(what: str, check: Callable[[], bool], limit_s: float = 20.0) -> None:
    await asyncio.to_thread(wait_for, what, check, limit_s)


async def test_every_kind_is_stored_and_hostile_payloads_are_counted(
    tmp_path: Path, mqtt_settings: MqttSettings, database: str, prefix: str
) -> None:
    pub = await asyncio.to_thread(Publisher, mqtt_settings.port, prefix, f"pub-{uuid.uuid4()}")
    nul_label = {**labels(99).model_dump(), "labels": [{"label": "Hum\x00", "score": 0.5}]}
    hostile = [
        (f"{prefix}/yor/levels", b"\xc1\xc1\xc1", None),  # not msgpack
        (f"{prefix}/yor/levels", level(1).encode()[:-4], None),  # truncated
        (f"{prefix}/yor/levels", msgpack.packb(["a", "list"]), None),  # wrong type
        (f"{prefix}/ouse/levels", level(2).encode(), None),  # device differs from topic
        (f"{prefix}/yor/labels", msgpack.packb(nul_label, use_bin_type=True), None),
        (f"{prefix}/yor/levels", b'{"v": 1, "leq_db": NaN}', JSON),  # NaN
        (f"{prefix}/yor/levels", level(3).model_copy(update={"start": 4e9}).encode(), None),
    ]
    async with running(settings(tmp_path, database), mqtt_settings) as ingest:
        for topic, payload, ctype in hostile[:4]:
            await asyncio.to_thread(pub.raw, topic, payload, ctype)
        for seq in range(10):
            for msg in every_kind(seq):
                await asyncio.to_thread(pub.publish, msg)
        for topic, payload, ctype in hostile[4:]:
            await asyncio.to_thread(pub.raw, topic, payload, ctype)
        await asyncio.to_thread(pub.close)
        await until("every result stored", lambda: count(database, "levels") == 10)
        await until("labels stored", lambda: count(database, "detections") == 30)
        await until("all rejected", lambda: ingest.stats.snapshot().get("rejected") == 7)
        # rejections are counted before the batch is spooled and acknowledged: wait for that
        await until("all acknowledged", lambda: ingest.stats.snapshot().get("acked") == 57)
        counters = ingest.stats.snapshot()
        status = ingest.status("online")
    for table in ("level_summaries", "indices", "noise_events"):
        assert count(database, table) == 10
    assert counters["rejected_invalid"] == 6
    assert counters["rejected_future"] == 1
    assert counters["spooled"] == 50
    assert counters["acked"] == counters["received"] == 57
    assert status.state == "online" and status.counters["spool_depth"] == 0
    retained = await fetch_status(mqtt_settings, "test-ingest", 5.0)
    assert retained is not None and retained.state == "offline"
    assert retained.service == "ingest" and retained.counters["rejected"] == 7


async def test_results_published_while_ingest_is_down_arrive_when_it_returns(
    tmp_path: Path, mqtt_settings: MqttSettings, database: str, prefix: str
) -> None:
    s = settings(tmp_path, database)
    async with running(s, mqtt_settings):
        pass  # the broker now holds a persistent session for s.client_id
    pub = await asyncio.to_thread(Publisher, mqtt_settings.port, prefix, f"pub-{uuid.uuid4()}")
    for seq in range(25):
        await asyncio.to_thread(pub.publish, level(seq))
    await asyncio.to_thread(pub.close)
    assert count(database, "levels") == 0
    async with running(s, mqtt_settings):
        await until("queued results stored", lambda: count(database, "levels") == 25)


async def test_ingest_for_one_device_subscribes_to_that_device_only(
    tmp_path: Path, mqtt_settings: MqttSettings, database: str, prefix: str
) -> None:
    async with running(settings(tmp_path, database, device="yor"), mqtt_settings) as ingest:
        pub = await asyncio.to_thread(Publisher, mqtt_settings.port, prefix, f"p-{uuid.uuid4()}")
        for seq in range(3):
            await asyncio.to_thread(pub.publish, level(seq, "ouse"))
            await asyncio.to_thread(pub.publish, level(seq, "yor"))
        await asyncio.to_thread(pub.close)
        await until("yor stored", lambda: count(database, "levels") == 3)
        assert ingest.stats.snapshot().get("rejected", 0) == 0
    assert rows(database, "SELECT DISTINCT device FROM levels") == [("yor",)]


def test_sigterm_makes_a_final_sync_then_exits(
    tmp_path: Path, mqtt_settings: MqttSettings, database: str, prefix: str
) -> None:
    spool = tmp_path / "spool.sqlite3"
    cmd = ingest_cmd(
        "--database-url",
        database,
        "--sync-interval",
        "3600",
        "--spool",
        str(spool),
        "--client-id",
        f"sigterm-{uuid.uuid4().hex[:8]}",
        "--node-id",
        "sigterm-ingest",
    )
    log = tmp_path / "ingest.log"
    with process(cmd, ingest_env(mqtt_settings.port, prefix), log) as proc:
        wait_online(mqtt_settings.port, prefix, "sigterm-ingest")
        wait_for("schema", lambda: count(database, "levels") == 0, 30)
        pub = Publisher(mqtt_settings.port, prefix, f"pub-{uuid.uuid4()}")
        for seq in range(20):
            pub.publish(level(seq))
        pub.close()
        wait_for("spooled", lambda: spool_depth(spool) == 20, 20)
        assert count(database, "levels") == 0  # the next sync is an hour away
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    assert count(database, "levels") == 20
    assert spool_depth(spool) == 0
    assert "final sync" in log.read_text()


def test_cli_prints_roles_sql_and_refuses_to_run_without_a_database(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOUNDSCAPE_INGEST_DATABASE_URL", raising=False)
    assert main(["--print-roles-sql"]) == 0
    out = capsys.readouterr().out
    assert "CREATE ROLE soundscape_ingest LOGIN" in out
    assert "GRANT SELECT ON ALL TABLES IN SCHEMA public TO soundscape_reader" in out
    assert main([]) == 2
    assert "SOUNDSCAPE_INGEST_DATABASE_URL" in capsys.readouterr().err
    assert main(["--spool-max", "0", "--database-url", "postgresql://x/y"]) == 2


def test_cli_migrate_and_create_roles(
    database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setenv("SOUNDSCAPE_INGEST_WRITER_ROLE", f"w_{suffix}")
    monkeypatch.setenv("SOUNDSCAPE_INGEST_READER_ROLE", f"r_{suffix}")
    monkeypatch.setenv("SOUNDSCAPE_INGEST_READER_PASSWORD", "s3cret")
    assert main(["--database-url", database, "--migrate"]) == 0
    assert "0001_schema" in capsys.readouterr().out
    try:
        assert main(["--database-url", database, "--create-roles"]) == 0
        assert "up to date" in capsys.readouterr().out
        got = rows(
            database,
            "SELECT rolname, rolpassword IS NOT NULL FROM pg_authid "
            "WHERE rolname LIKE %s ORDER BY 1",
            (f"%_{suffix}",),
        )
        assert got == [(f"r_{suffix}", True), (f"w_{suffix}", False)]
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            for role in (f"w_{suffix}", f"r_{suffix}"):
                conn.execute(f"DROP OWNED BY {role}".encode())
                conn.execute(f"DROP ROLE IF EXISTS {role}".encode())


def test_cli_reports_an_unreachable_database_for_one_shot_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
    assert main(["--database-url", url, "--migrate"]) == 1
    assert "soundscape ingest:" in capsys.readouterr().err


def test_the_module_runs_as_a_command() -> None:
    done = subprocess.run(ingest_cmd("--help"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "--database-url" in done.stdout
    assert LevelsResult.LEAF == "levels"


async def test_a_final_sync_that_hangs_is_cancelled_and_nothing_is_lost(
    tmp_path: Path, mqtt_settings: MqttSettings, database: str, prefix: str
) -> None:
    s = settings(tmp_path, database, sync_interval=3600.0, shutdown_timeout=1.0)
    stop = asyncio.Event()
    ingest = Ingest(s, mqtt_settings, DeviceRegistry())
    task = asyncio.create_task(ingest.run(stop))
    await asyncio.to_thread(ingest.link.connected.wait, 10)
    await until("schema", lambda: count(database, "levels") == 0)
    pub = await asyncio.to_thread(Publisher, mqtt_settings.port, prefix, f"pub-{uuid.uuid4()}")
    for seq in range(5):
        await asyncio.to_thread(pub.publish, level(seq))
    await asyncio.to_thread(pub.close)
    await until("spooled", lambda: ingest.stats.snapshot().get("spooled") == 5)
    with psycopg.connect(database) as blocker:
        blocker.execute("LOCK TABLE levels IN ACCESS EXCLUSIVE MODE")  # the INSERT will wait
        began = asyncio.get_running_loop().time()
        stop.set()
        await asyncio.wait_for(task, 20)
        assert asyncio.get_running_loop().time() - began < 10
    assert count(database, "levels") == 0
    assert spool_depth(s.spool) == 5  # still there for the next start


def test_an_unusable_spool_path_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    args = ["--database-url", "postgresql://x/y", "--spool", str(blocker / "spool.sqlite3")]
    assert main(args) == 2
    assert "cannot open the spool" in capsys.readouterr().err


async def test_results_published_twice_through_the_broker_are_stored_once(
    tmp_path: Path, mqtt_settings: MqttSettings, database: str, prefix: str
) -> None:
    async with running(settings(tmp_path, database), mqtt_settings) as ingest:
        pub = await asyncio.to_thread(Publisher, mqtt_settings.port, prefix, f"p-{uuid.uuid4()}")
        for _ in range(2):
            for seq in range(10):
                await asyncio.to_thread(pub.publish, labels(seq))
            await until("stored", lambda: count(database, "detections") == 30)
        await asyncio.to_thread(pub.close)
        await until("all received", lambda: ingest.stats.snapshot().get("received") == 20)
        await until("spool empty", lambda: ingest.spool.depth() == 0)
    assert count(database, "detections") == 30
    # Offered again unless the spool still held the first copy (then it was never offered).
    ((stored, offered),) = rows(database, "SELECT sum(rows)::int, sum(offered)::int FROM syncs")
    assert stored == 30 and 30 <= offered <= 60  # type: ignore[operator]


async def test_results_arriving_together_are_spooled_in_one_commit(
    tmp_path: Path, mqtt_settings: MqttSettings, database: str, prefix: str
) -> None:
    # One delivery at a time, as fast as the broker takes them: without the linger, the
    # writer would commit (and fsync) once for every one or two of them.
    s = settings(tmp_path, database, spool_linger=2.0)
    async with running(s, mqtt_settings) as ingest:
        pub = await asyncio.to_thread(Publisher, mqtt_settings.port, prefix, f"p-{uuid.uuid4()}")

        def publish_all() -> None:
            for seq in range(40):
                pub.publish(level(seq))
            pub.close()

        await asyncio.to_thread(publish_all)
        await until("all acked", lambda: ingest.stats.snapshot().get("acked") == 40)
        await until("stored", lambda: count(database, "levels") == 40)
        commits = ingest.stats.snapshot()["spool_commits"]
    assert 1 <= commits <= 3, commits
    assert count(database, "levels") == 40


async def test_no_status_is_queued_while_the_broker_is_away(tmp_path: Path) -> None:
    """paho queues QoS 1 publishes while disconnected, without bound, and sends them all on
    reconnect (stale `online` before the subscriptions are back): heartbeats wait for a link."""
    away = MqttSettings(
        host="127.0.0.1", port=free_port(), topic_prefix="away", status_interval=0.05
    )
    s = settings(tmp_path, f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    stop = asyncio.Event()
    ingest = Ingest(s, away, DeviceRegistry())
    sent: list[str] = []
    ingest.link.publish_status = lambda status: sent.append(status.state)  # type: ignore[method-assign,assignment,return-value]
    task = asyncio.create_task(ingest.run(stop))
    await until("sync attempts", lambda: ingest.stats.snapshot().get("sync_failures", 0) >= 1)
    await asyncio.sleep(0.5)  # ten heartbeat intervals
    stop.set()
    await asyncio.wait_for(task, 30)
    assert sent == []
