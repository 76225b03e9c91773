"""The durable result outbox: order, durability across reopening, deletion only after the
broker's PUBACK, a bound that drops the oldest and counts them, and never audio on disk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path

import pytest

from services.inference.settings import InferenceSettings
from services.levels.settings import LevelsSettings
from shared.messages import AudioChunk, Calibration, LevelsResult
from shared.mqtt import Incoming, MqttBus, Subscription
from shared.outbox import Outbox, outbox_path
from shared.settings import MqttSettings
from tests.support.bus import running
from tests.support.retained import clear_statuses
from tests.support.servers import free_port

T0 = 1_764_400_000.0


def item(n: int, size: int = 10) -> tuple[str, bytes, int, str | None]:
    return (f"p/yor/levels/{n}", bytes([n % 256]) * size, 1, None)


def level(seq: int) -> LevelsResult:
    return LevelsResult(
        device="yor",
        seq=seq,
        start=T0 + seq,
        duration=1.0,
        leq_db=50.0,
        calibration=Calibration(),
        uncalibrated=True,
    )


def test_messages_come_out_in_order_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, 10**6)
    assert box.put([item(0), item(1)]) == 0
    assert box.put([item(2)]) == 0
    assert len(box) == 3 and box.size == sum(len(t) + len(p) for t, p, _, _ in map(item, range(3)))
    box.close()
    again = Outbox(path, 10**6)  # as after a restart (or kill -9: every put was committed)
    assert len(again) == 3 and again.size == box.size
    window = again.take(10)
    assert [(e.topic, e.payload) for e in window] == [item(n)[:2] for n in range(3)]
    again.close()


def test_a_row_leaves_only_once_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, 10**6)
    box.put([item(n) for n in range(5)])
    window = box.take(3)
    box.close()  # died before any PUBACK: all five are still there
    box = Outbox(path, 10**6)
    assert len(box) == 5
    window = box.take(3)
    box.done(window[:2])  # two acknowledged, the third not (the link broke)
    assert len(box) == 3
    assert [e.topic for e in box.take(10)] == [item(n)[0] for n in (2, 3, 4)]
    box.done([])
    box.close()


def test_puts_wait_for_the_disk_and_acknowledged_deletes_do_not(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", 10**6)
    statements: list[str] = []
    box._db.set_trace_callback(statements.append)
    box.put([item(n) for n in range(3)])
    box.done(box.take(2), end_window=False)
    box.put([item(3)])
    modes = [s for s in statements if s.startswith("PRAGMA synchronous")]
    assert modes == ["PRAGMA synchronous=NORMAL", "PRAGMA synchronous=FULL"]
    normal, full = statements.index(modes[0]), statements.index(modes[1])
    between = statements[normal:full]
    assert any(s.startswith("DELETE") for s in between) and "COMMIT" in between
    assert not any(s.startswith("INSERT") for s in between)
    assert box._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL again
    box.close()
    assert len(Outbox(tmp_path / "o.sqlite3", 10**6)) == 2


def test_a_failed_unsynced_transaction_leaves_the_connection_synced(tmp_path: Path) -> None:
    from shared.sqlite import open_durable, transaction

    db = open_durable(tmp_path / "d.sqlite3")
    db.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(sqlite3.OperationalError), transaction(db, sync=False):
        db.execute("INSERT INTO t VALUES (1)")
        db.execute("INSERT INTO nowhere VALUES (1)")
    assert db.execute("PRAGMA synchronous").fetchone() == (2,)
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    db.close()


def test_when_full_the_oldest_are_dropped_and_counted_but_not_those_being_sent(
    tmp_path: Path,
) -> None:
    one = len(item(0)[0]) + 10  # every item is this many bytes
    box = Outbox(tmp_path / "o.sqlite3", 5 * one)
    assert box.put([item(n) for n in range(5)]) == 0
    in_flight = box.take(2)  # 0 and 1 are on the wire
    assert box.put([item(5), item(6)]) == 2  # over by two: the oldest not on the wire go
    assert len(box) == 5 and box.size == 5 * one
    box.done(in_flight)
    assert [e.topic for e in box.take(10)] == [item(n)[0] for n in (4, 5, 6)]
    box.close()


def test_the_settings_name_the_file_and_its_size(tmp_path: Path) -> None:
    levels = LevelsSettings(node_id="lv-1", state_dir=tmp_path)
    inference = InferenceSettings(node_id="inf-1", state_dir=Path("~/x"))
    assert outbox_path(levels.state_dir, levels.node_id) == tmp_path / "lv-1-outbox.sqlite3"
    assert outbox_path(inference.state_dir, inference.node_id) == (
        Path.home() / "x" / "inf-1-outbox.sqlite3"
    )
    assert levels.outbox_megabytes == inference.outbox_megabytes == 256.0
    for cls in (LevelsSettings, InferenceSettings):
        assert cls.model_fields["outbox_megabytes"].description


def test_only_qos_1_results_go_to_disk_never_audio_or_statuses(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, 10**6)
    bus = MqttBus(MqttSettings(), "lv", "levels", durable_outbox=box)
    pcm = bytes(range(256)) * 64  # a pattern to look for in the files
    bus.publish(AudioChunk(device="yor", seq=0, start=T0, rate=16000, pcm=pcm))
    bus.set_status("online")
    bus.publish(level(0))
    assert len(box) == 1 and bus.pending == 3  # audio and status wait in memory
    assert [o.qos for o in bus._outbox] == [0, 1] and bus._outbox[1].retain
    box.close()
    for file in tmp_path.iterdir():
        assert pcm[:1024] not in file.read_bytes(), file


def test_a_batch_is_one_commit_at_its_end(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", 10**6)
    bus = MqttBus(MqttSettings(), "lv", "levels", durable_outbox=box)
    with bus.batch():
        bus.publish(level(0))
        with bus.batch():
            bus.publish(level(1))
        assert len(box) == 0
    assert len(box) == 2
    box.close()


def test_a_full_outbox_counts_and_logs_its_drops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    size = len(level(0).topic("p")) + len(level(0).encode())
    box = Outbox(tmp_path / "o.sqlite3", 3 * size)
    bus = MqttBus(MqttSettings(topic_prefix="p"), "lv", "levels", durable_outbox=box)
    with caplog.at_level(logging.WARNING, "shared.mqtt"):
        for seq in range(5):
            bus.publish(level(seq))
    assert bus.stats["outbox_dropped"] == 2 and len(box) == 3
    assert "full" in caplog.text
    box.close()


def test_an_unwritable_outbox_keeps_results_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "o.sqlite3", 10**6)
    bus = MqttBus(MqttSettings(), "lv", "levels", durable_outbox=box)
    box.close()  # every write now fails, as on a broken disk
    with caplog.at_level(logging.ERROR, "shared.mqtt"):
        bus.publish(level(0))
    assert bus.stats["outbox_failed"] == 1 and [o.qos for o in bus._outbox] == [1]
    assert "cannot write the outbox" in caplog.text


def rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


@pytest.mark.integration
async def test_results_of_a_run_that_never_reached_the_broker_go_out_first_in_order(
    tmp_path: Path, mqtt_settings: MqttSettings
) -> None:
    path = tmp_path / "lv-outbox.sqlite3"
    prefix = mqtt_settings.topic_prefix
    # First run: the broker is unreachable; the results wait on disk, then the process ends.
    nowhere = mqtt_settings.model_copy(update={"port": free_port()})
    box = Outbox(path, 10**6)
    first = MqttBus(nowhere, "lv", "levels", durable_outbox=box)
    task = asyncio.create_task(first.run())
    for seq in range(30):
        first.publish(level(seq))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    box.close()
    assert rows(path) == 30

    got: list[int] = []
    done = asyncio.Event()

    async def handler(msg: Incoming) -> None:
        got.append(LevelsResult.from_mqtt(prefix, msg.topic, msg.payload, msg.content_type).seq)
        if len(got) == 31:
            done.set()

    reader = MqttBus(
        mqtt_settings,
        "reader",
        "test",
        handler=handler,
        subscriptions=[Subscription(LevelsResult.subscription(prefix), 1)],
    )
    box = Outbox(path, 10**6)
    second = MqttBus(mqtt_settings, "lv", "levels", durable_outbox=box)
    second.publish(level(30))  # measured by the new run before it connected
    async with running(reader), running(second):
        async with asyncio.timeout(10):
            await done.wait()
        assert await second.drained(5)
    assert got == list(range(31))
    assert len(box) == 0 and rows(path) == 0 and second.stats["published"] >= 31
    box.close()
    clear_statuses(mqtt_settings.port, prefix, ["lv", "reader"])
