"""ingest's database side against a real PostgreSQL: schema contract, migrations, idempotent
batches, refused values, the bounded spool with the database down, least-privilege roles."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from services.ingest import db
from services.ingest.core import Result
from services.ingest.schema import BAND_ORDER, TABLES
from services.ingest.spool import Spool
from services.ingest.sync import Syncer
from shared.devices import Device, DeviceRegistry
from shared.messages import Calibration, GapReport, LabelScore
from tests.ingest.helpers import (
    T0,
    as_results,
    count,
    every_kind,
    indices,
    labels,
    level,
    rows,
    ts,
)
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

#: The schema contract with the dashboard (brief): table -> columns that must exist.
CONTRACT = {
    "devices": "id name latitude longitude model calibration sync_interval "
    "noise_threshold_db updated_at",
    "syncs": "sync_id sync_time source rows",
    "detections": "label rating device sync_id sync_time window_start window_seq "
    "window_duration model rank speech_present inference_ms",
    "levels": "device window_start window_seq window_duration leq_db laeq_db lceq_db peak_db "
    "dbfs bands clipped gain_db sensitivity_dbv vadc uncalibrated sync_id sync_time",
    "level_summaries": "device window_start window_duration laeq_db lamax_db lamin_db l10_db "
    "l50_db l90_db coverage uncalibrated sync_id sync_time",
    "indices": "device window_start window_duration aci adi aei bi ndsi ht hf events coverage "
    "sync_id sync_time",
    "noise_events": "device window_start window_duration threshold_db laeq_db lamax_db classes "
    "sync_id sync_time",
    "gaps": "id device kind first_start last_start count recorded_at sync_id sync_time node",
}


@pytest.fixture
def schema(database: str) -> str:
    with psycopg.connect(database, autocommit=True) as conn:
        db.migrate(conn)
    return database


_open: list[Syncer] = []


def syncer(
    spool: Spool, dsn: str, batch_size: int = 1000, registry: DeviceRegistry | None = None
) -> Syncer:
    sync = Syncer(spool, dsn, source="test", batch_size=batch_size, registry=registry)
    _open.append(sync)
    return sync


@pytest.fixture(autouse=True)
def _close_syncers() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def test_migrations_create_the_contract_tables_once(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        applied = db.migrate(conn)
        assert applied[:6] == [
            "0001_schema",
            "0002_timescale",
            "0003_indices_coverage",
            "0004_gap_reports",
            "0005_compact_partitions",
            "0006_minute_rows",
        ]
        assert "0007_species" in applied
        assert applied == [f"{m.version:04d}_{m.name}" for m in db.migrations()]
        assert db.migrate(conn) == []
        columns: dict[str, set[str]] = {}
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        ):
            columns.setdefault(table, set()).add(column)
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert versions == [(m.version,) for m in db.migrations()]
    for table, wanted in CONTRACT.items():
        assert set(wanted.split()) <= columns[table], table
    for table in TABLES.values():
        # labels are staged one row per label: the detections view has those columns
        stored = "detections" if table.name == "labels" else table.name
        assert set(table.names) | {"sync_id", "sync_time"} <= columns[stored]


def test_concurrent_migrations_serialise_on_the_advisory_lock(database: str) -> None:
    errors: list[BaseException] = []
    results: list[list[str]] = []

    def run() -> None:
        try:
            with psycopg.connect(database, autocommit=True) as conn:
                results.append(db.migrate(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(len(r) for r in results) == [0, 0, 0, len(db.migrations())]


def test_a_sync_stores_every_kind_with_one_sync_id_and_empties_the_spool(
    schema: str, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 1000)
    spool.put(as_results([m for seq in range(3) for m in every_kind(seq)]))
    report = syncer(spool, schema).sync()
    assert report.error is None
    assert (report.results, report.inserted) == (15, 3 * 3 + 4 * 3)
    assert spool.depth() == 0
    assert count(schema, "detections") == 9
    for table in ("levels", "level_summaries", "indices", "noise_events"):
        assert count(schema, table) == 3
    ((sync_id, source, n, offered, results),) = rows(
        schema, "SELECT sync_id, source, rows, offered, results FROM syncs"
    )
    assert (source, n, offered, results) == ("test", 21, 21, 15)
    assert rows(schema, "SELECT DISTINCT sync_id FROM levels") == [(sync_id,)]
    (lv,) = rows(
        schema,
        "SELECT window_start, leq_db, bands, gain_db, uncalibrated FROM levels "
        "WHERE window_seq = 1",
    )
    bands: list[float | None] = [None] * len(BAND_ORDER)
    bands[BAND_ORDER.index("1000")], bands[BAND_ORDER.index("2000")] = 40.0, 38.5
    assert lv == (ts(T0 + 1), 51.0, bands, 25.0, True)
    det = rows(
        schema,
        "SELECT label, rating, rank, model, speech_present FROM detections "
        "WHERE window_seq = 0 ORDER BY rank",
    )
    assert [d[0] for d in det] == ["Speech", "Hum", "Bird"]
    assert det[0][1] == pytest.approx(0.9)
    (ev,) = rows(schema, "SELECT classes FROM noise_events WHERE window_seq = 2")
    assert ev == ([{"label": "Car", "score": 0.8}],)


def test_replaying_the_same_results_stores_them_once(schema: str, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 1000)
    results = as_results([labels(i) for i in range(20)] + [level(i) for i in range(20)])
    sync = syncer(spool, schema, batch_size=7)
    spool.put(results)
    sync.sync()
    spool.put(results)  # the same results, delivered again after their first sync
    report = sync.sync()
    assert (report.results, report.inserted, report.offered) == (40, 0, 80)
    assert count(schema, "detections") == 60
    assert count(schema, "levels") == 20


def test_indices_coverage_round_trips_and_older_rows_store_null(
    schema: str, tmp_path: Path
) -> None:
    """coverage 0.5 is stored as sent; a producer that does not send it, or a row spooled by an
    ingest from before the column (one value short), stores null instead of being refused."""
    spool = Spool(tmp_path / "s.sqlite3", 1000)
    half = indices(0).model_copy(update={"coverage": 0.5})
    unknown = indices(1).model_copy(update={"coverage": None})
    (old,) = as_results([indices(2)])
    spooled_before = Result(old.kind, old.device, old.start, old.key, (old.rows[0][:-1],))
    spool.put([*as_results([half, unknown]), spooled_before])
    report = syncer(spool, schema).sync()
    assert (report.error, report.quarantined, report.inserted) == (None, 0, 3)
    got = rows(schema, "SELECT window_seq, coverage, aci, events FROM indices ORDER BY 1")
    assert got == [(0, 0.5, 150.5, 3), (1, None, 150.5, 3), (2, None, 150.5, 3)]


def test_a_window_classified_twice_keeps_one_label_set(schema: str, tmp_path: Path) -> None:
    """Same window, same model, different top-k (a re-run, a second inference): the labels
    of one message are stored, never a mix of both (6 rows, two of rank 1...)."""
    spool = Spool(tmp_path / "s.sqlite3", 1000)
    sync = syncer(spool, schema)
    first = labels(0)
    other = first.model_copy(
        update={"labels": [LabelScore(label=n, score=0.5) for n in ("Speech", "Car", "Wind")]}
    )
    spool.put(as_results([first]))
    sync.sync()
    spool.put(as_results([other, labels(1)]))
    report = sync.sync()
    assert report.inserted == 3  # window 1 only
    got = rows(schema, "SELECT label, rank FROM detections WHERE window_seq = 0 ORDER BY rank")
    assert got == [("Speech", 1), ("Hum", 2), ("Bird", 3)]
    assert count(schema, "detections") == 6


def test_a_crash_between_commit_and_spool_delete_stores_nothing_twice(
    schema: str, tmp_path: Path
) -> None:
    path = tmp_path / "s.sqlite3"
    spool = Spool(path, 1000)
    spool.put(as_results([level(i) for i in range(10)] + [labels(0)]))
    with psycopg.connect(schema, autocommit=True) as conn:
        db.push(conn, spool.take(100), "crashed")  # committed; the process dies before done()
    spool.close()
    reopened = Spool(path, 1000)
    report = syncer(reopened, schema).sync()
    assert (report.results, report.inserted) == (11, 0)
    assert reopened.depth() == 0
    assert count(schema, "levels") == 10
    assert count(schema, "detections") == 3


def test_a_value_postgresql_refuses_is_quarantined_and_the_rest_stored(
    schema: str, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 1000)
    good = as_results([level(i) for i in range(9)])
    (template,) = as_results([labels(50)])
    # Slipped past validation somehow (an older spool, a bug): a NUL byte in a label.
    poisoned = Result(
        template.kind,
        template.device,
        template.start,
        template.key,
        tuple(("Hum\x00", *r[1:]) for r in template.rows),
    )
    spool.put([*good[:4], poisoned, *good[4:]])
    report = syncer(spool, schema).sync()
    assert report.error is None
    assert report.quarantined == 1
    assert count(schema, "levels") == 9
    assert count(schema, "detections") == 0
    assert spool.depth() == 0 and spool.quarantined() == 1


def test_database_down_then_up_a_full_spool_keeps_the_newest_and_one_gap(
    schema: str, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 50)
    down = syncer(spool, f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    for first in range(0, 80, 10):
        spool.put(as_results([level(i) for i in range(first, first + 10)]))
        report = down.sync()
        assert report.error is not None and "unreachable" in report.error
        assert not down.healthy
    assert spool.depth() == 50
    up = syncer(spool, schema)
    assert up.sync().error is None
    stored = rows(schema, "SELECT window_seq FROM levels ORDER BY 1")
    assert [s for (s,) in stored] == list(range(30, 80))
    gaps = rows(schema, "SELECT device, kind, result, first_start, last_start, count FROM gaps")
    assert gaps == [("yor", "spool_overflow", "levels", ts(T0), ts(T0 + 29), 30)]
    up.sync()
    assert count(schema, "gaps") == 1


def test_the_device_registry_is_mirrored_into_devices(schema: str) -> None:
    cal = Calibration(gain_db=30.0, sensitivity_dbv=-20.0, vadc=1.25)
    registry = DeviceRegistry(
        devices={
            "yor": Device(id="yor", name="York Road", latitude=53.9, longitude=-1.08),
            "gsm": Device(id="gsm", calibration=cal, sync_interval=3600.0),
        }
    )
    with psycopg.connect(schema, autocommit=True) as conn:
        assert db.upsert_devices(conn, registry) == 2
        renamed = DeviceRegistry(devices={"yor": Device(id="yor", name="Renamed")})
        db.upsert_devices(conn, renamed)
    got = dict(
        (r[0], r[1:])
        for r in rows(schema, "SELECT id, name, calibration, sync_interval FROM devices")
    )
    assert got["yor"] == ("Renamed", None, 30.0)
    assert got["gsm"][1] == {"gain_db": 30.0, "sensitivity_dbv": -20.0, "vadc": 1.25}
    assert got["gsm"][2] == 3600.0


@pytest.fixture
def roles(schema: str) -> Iterator[tuple[str, str]]:
    """(writer DSN, reader DSN) of throwaway roles made by db.create_roles."""
    suffix = uuid.uuid4().hex[:10]
    writer, reader = f"w_{suffix}", f"r_{suffix}"
    with psycopg.connect(schema, autocommit=True) as admin:
        db.create_roles(admin, writer, reader, "writer-pw", None)
        try:
            yield make_conninfo(schema, user=writer), make_conninfo(schema, user=reader)
        finally:
            for role in (writer, reader):
                admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_ingest_works_as_the_writer_role(
    roles: tuple[str, str], schema: str, tmp_path: Path
) -> None:
    writer, _ = roles
    spool = Spool(tmp_path / "s.sqlite3", 6)
    spool.put(as_results([level(i) for i in range(10)]))  # 10 > 6: one gap of 4
    registry = DeviceRegistry(devices={"yor": Device(id="yor")})
    sync = syncer(spool, writer, registry=registry, batch_size=2)
    assert sync.sync().error is None
    spool.put(as_results(every_kind(20)))
    assert sync.sync().error is None
    spool.put(as_results(every_kind(20)))  # a replay: every key conflicts
    assert sync.sync().error is None
    report = GapReport(device="yor", start=T0, end=T0 + 5, cause="service_down", node="lv")
    for _ in range(2):  # a gap report, delivered twice, stored once by the writer role
        spool.put(as_results([report]))
        assert sync.sync().error is None
    assert rows(schema, "SELECT count FROM gaps ORDER BY kind DESC") == [(4,), (None,)]
    assert count(schema, "levels") == 6 + 1
    assert count(schema, "detections") == 3
    assert count(schema, "noise_events") == count(schema, "indices") == 1
    assert count(schema, "devices") == 1


def test_the_writer_cannot_read_results_nor_change_them(roles: tuple[str, str]) -> None:
    writer, _ = roles
    statements = ["CREATE TABLE mine (x int)", "DROP TABLE levels_packed", "DELETE FROM devices"]
    for table in [*(t.name for t in TABLES.values()), "syncs", "gaps"]:
        statements.append(f"SELECT * FROM {table}")
        # levels and labels are views (not updatable) of the packed tables, below
        if table not in ("levels", "labels"):
            statements += [
                f"DELETE FROM {table}",
                f"UPDATE {table} SET sync_time = now()",
                f"TRUNCATE {table}",
            ]
    statements += [f"{verb} levels_packed" for verb in ("DELETE FROM", "TRUNCATE")]
    statements += [f"{verb} labels_packed" for verb in ("DELETE FROM", "TRUNCATE")]
    statements.append("SELECT rating FROM detections")
    with psycopg.connect(writer, autocommit=True) as conn:
        for statement in statements:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement.encode())


def test_the_reader_reads_everything_and_cannot_write(
    roles: tuple[str, str], schema: str, tmp_path: Path
) -> None:
    _, reader = roles
    spool = Spool(tmp_path / "s.sqlite3", 100)
    spool.put(as_results(every_kind(0)))
    syncer(spool, schema).sync()
    with psycopg.connect(reader, autocommit=True) as conn:
        for table in CONTRACT:
            conn.execute(f"SELECT * FROM {table}".encode()).fetchall()
        assert conn.execute("SELECT coverage FROM indices").fetchall() == [(0.75,)]
        for statement in (
            "INSERT INTO syncs (sync_id, sync_time, source, rows) "
            "VALUES (gen_random_uuid(), now(), 'x', 0)",
            "DELETE FROM levels_packed",
            "UPDATE devices SET name = 'x'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement.encode())
    # and as ingest, the reader gets nowhere (and nothing is lost)
    spool.put(as_results([level(9)]))
    report = syncer(spool, reader).sync()
    assert report.error is not None and "refused" in report.error
    assert spool.depth() == 1


def test_roles_made_before_the_coverage_column_write_and_read_it(
    schema: str, tmp_path: Path
) -> None:
    """An existing install: roles granted on the 0002 schema, then migration 0003. The grants
    are table-level (INSERT for the writer, SELECT for the reader), so they cover the new
    column without re-running --create-roles."""
    suffix = uuid.uuid4().hex[:10]
    writer, reader = f"w_{suffix}", f"r_{suffix}"
    with psycopg.connect(schema, autocommit=True) as admin:
        admin.execute("ALTER TABLE indices DROP COLUMN coverage")
        admin.execute("DELETE FROM schema_migrations WHERE version = 3")
        db.create_roles(admin, writer, reader, None, None)
        try:
            assert db.migrate(admin) == ["0003_indices_coverage"]
            spool = Spool(tmp_path / "s.sqlite3", 100)
            spool.put(as_results([indices(0)]))
            assert syncer(spool, make_conninfo(schema, user=writer)).sync().error is None
            with psycopg.connect(make_conninfo(schema, user=reader)) as conn:
                assert conn.execute("SELECT coverage FROM indices").fetchall() == [(0.75,)]
        finally:
            for role in (writer, reader):
                admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_writer_facing_an_older_schema_says_how_to_migrate(
    roles: tuple[str, str], schema: str, tmp_path: Path
) -> None:
    writer, _ = roles
    with psycopg.connect(schema, autocommit=True) as admin:
        admin.execute("DELETE FROM schema_migrations WHERE version = 2")
    spool = Spool(tmp_path / "s.sqlite3", 100)
    spool.put(as_results([level(0)]))
    report = syncer(spool, writer).sync()
    assert report.error is not None and "--migrate" in report.error
    assert spool.depth() == 1
