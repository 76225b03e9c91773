"""PostgreSQL adapter: migrations, the device mirror, roles and moving one batch.

A batch moves in one transaction: COPY into temporary staging tables (explicit columns),
`INSERT ... SELECT ... ON CONFLICT (key) DO NOTHING` into each table, the gaps (idempotent by
uid), and the `syncs` row. Either all of it commits or none of it does.

Errors, as callers see them:
    psycopg.OperationalError / InterfaceError   the database is unreachable: retry later
    psycopg.DataError / IntegrityError          PostgreSQL refused a value: isolate the result
    SchemaError                                 the schema is behind and this role cannot migrate
    other psycopg.Error                         configuration (privileges...): retry later, loudly
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from services.ingest.core import Row
from services.ingest.schema import (
    GAP_INSERT,
    LABEL_NAMES_INSERT,
    SPOOL_OVERFLOW,
    SYNC_INSERT,
    TABLES,
    roles_sql,
)
from services.ingest.spool import Batch
from shared.devices import DeviceRegistry
from shared.errors import ConfigError

log = logging.getLogger(__name__)

#: pg_advisory_xact_lock key that serialises migrations between ingest processes.
MIGRATION_LOCK = 0x50554E44_1E57
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

#: The database is unreachable (retry later, results wait in the spool).
UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError)
#: PostgreSQL refused a value: the batch is split to find the result that carries it.
REFUSED = (psycopg.DataError, psycopg.IntegrityError)


def link_settings(timeout: float) -> tuple[dict[str, int], list[str]]:
    """libpq parameters and server settings that bound a link to `timeout` seconds.

    Client side: TCP user timeout (unacknowledged data) and keepalives (an idle connection,
    or one waiting for an answer) give a dead link up after about `timeout`. Server side, the
    same for the session's backend, so a transaction left behind by a dead client releases
    its locks: statement and idle-in-transaction timeouts, the server's own keepalives and
    TCP user timeout. Neither ends a sync through a link whose far kernel still
    acknowledges (see deadline.py): the watchdog does.
    """
    ms = max(1000, round(timeout * 1000))
    idle = max(1, round(timeout / 2))
    interval = max(1, round(timeout / 8))
    params = {
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": 4,
        "tcp_user_timeout": ms,
    }
    server = [
        f"statement_timeout={ms}",
        f"idle_in_transaction_session_timeout={ms}",
        f"tcp_keepalives_idle={idle}",
        f"tcp_keepalives_interval={interval}",
        "tcp_keepalives_count=4",
        f"tcp_user_timeout={ms}",
    ]
    return params, server


def connect(
    dsn: str, *, connect_timeout: int, timeout: float, application_name: str
) -> psycopg.Connection:
    """An autocommit connection whose link is bounded by `timeout` (see `link_settings`).

    What the DSN sets itself wins: its libpq parameters are kept, and its `options` come
    after ours (PostgreSQL applies the last `-c` of a name).
    """
    given = conninfo_to_dict(dsn)
    params, server = link_settings(timeout)
    options = " ".join(f"-c {s}" for s in server)
    if given.get("options"):
        options = f"{options} {given['options']}"
    extra: dict[str, str | int | None] = {k: v for k, v in params.items() if k not in given}
    extra["connect_timeout"] = given.get("connect_timeout") or connect_timeout
    extra["application_name"] = given.get("application_name") or application_name
    extra["options"] = options
    return psycopg.connect(make_conninfo(dsn, **extra), autocommit=True)


class SchemaError(ConfigError):
    """The database schema is older than this ingest and the connected role cannot migrate."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned SQL file from services/ingest/sql."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with this package, in version order."""
    found = []
    for entry in resources.files("services.ingest").joinpath("sql").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ConfigError(f"duplicate migration versions in {versions}")
    return found


def applied_versions(conn: psycopg.Connection) -> set[int]:
    """Versions recorded in schema_migrations (empty when the table does not exist yet)."""
    with conn.transaction():
        row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return set()
        return {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply pending migrations, each recorded in schema_migrations; the applied names.

    Concurrent ingest processes serialise on an advisory lock held for the transaction, and
    re-read what is applied once they hold it. A role that may not create tables gets a
    SchemaError naming the command that fixes it.
    """
    wanted = migrations()
    if {m.version for m in wanted} <= applied_versions(conn):
        return []
    done: list[str] = []
    conn.add_notice_handler(_log_notice)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            have = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
            for mig in wanted:
                if mig.version in have:
                    continue
                log.info("applying migration %04d_%s", mig.version, mig.name)
                conn.execute(mig.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (mig.version, mig.name),
                )
                done.append(f"{mig.version:04d}_{mig.name}")
    except psycopg.errors.InsufficientPrivilege as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "permission denied"
        raise SchemaError(
            "the database schema is older than this ingest and this role may not migrate it "
            f"({detail}): run `soundscape ingest --migrate` once with the schema owner's "
            "--database-url"
        ) from exc
    finally:
        conn.remove_notice_handler(_log_notice)
    return done


def _log_notice(diag: psycopg.errors.Diagnostic) -> None:
    """Say what a migration reported (e.g. why TimescaleDB could not be used)."""
    severity = diag.severity_nonlocalized or ""
    level = logging.WARNING if severity == "WARNING" else logging.INFO
    log.log(level, "migration: %s", diag.message_primary)


def upsert_devices(conn: psycopg.Connection, registry: DeviceRegistry) -> int:
    """Mirror the registry file into `devices` (the file is the truth on a lone Pi)."""
    if not registry.devices:
        return 0
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO devices (id, name, latitude, longitude, model, calibration, "
            "sync_interval, noise_threshold_db, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, now()) "
            "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, "
            "latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude, "
            "model = EXCLUDED.model, calibration = EXCLUDED.calibration, "
            "sync_interval = EXCLUDED.sync_interval, "
            "noise_threshold_db = EXCLUDED.noise_threshold_db, updated_at = now()",
            [
                (
                    d.id,
                    d.name,
                    d.latitude,
                    d.longitude,
                    d.model,
                    None if d.calibration is None else json.dumps(d.calibration.model_dump()),
                    d.sync_interval,
                    d.noise_threshold_db,
                )
                for d in registry.devices.values()
            ],
        )
    return len(registry.devices)


def create_roles(
    conn: psycopg.Connection,
    writer: str,
    reader: str,
    writer_password: str | None = None,
    reader_password: str | None = None,
) -> None:
    """Create and grant the writer and reader roles (run as the schema owner, after migrate)."""
    with conn.transaction():
        conn.execute(roles_sql(writer, reader).encode())
        for role, password in ((writer, writer_password), (reader, reader_password)):
            if password is not None:
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(password)
                    )
                )


@dataclass(frozen=True, slots=True)
class Pushed:
    """What one transaction stored."""

    sync_id: uuid.UUID
    offered: int
    inserted: int
    results: int
    gaps: int


#: Result kinds whose tables are partitioned by UTC day of window_start (levels_packed,
#: labels_packed: by the minute of it; the rollups by its month).
PARTITIONED = frozenset({"labels", "levels"})
_DAY = 86_400.0


def batch_days(batch: Batch) -> set[date]:
    """The UTC days the partitioned rows of a batch fall on (to_timestamp rounds to the
    microsecond, so a start a hair before midnight is counted on both days)."""
    days: set[date] = set()
    for res in batch.results:
        if res.kind in PARTITIONED:
            for start in (res.start, round(res.start, 6)):
                days.add(datetime.fromtimestamp(start // _DAY * _DAY, UTC).date())
    return days


def ensure_partitions(conn: psycopg.Connection, days: set[date], known: set[date]) -> int:
    """Create the day partitions of labels and levels missing for `days` (in a transaction
    of its own, before a batch's); `known` remembers the days already ensured. The number
    of partitions created."""
    wanted = sorted(days - known)
    if not wanted:
        return 0
    with conn.transaction():
        row = conn.execute("SELECT soundscape_ensure_partitions(%s::date[])", (wanted,)).fetchone()
    known.update(wanted)
    made = int(row[0]) if row and row[0] is not None else 0
    if made:
        log.info("created %d day partitions (%s .. %s)", made, wanted[0], wanted[-1])
    return made


def days_ahead(now: datetime) -> set[date]:
    """The days whose partitions exist ahead of need: yesterday to the day after tomorrow."""
    today = now.astimezone(UTC).date()
    return {today + timedelta(days=k) for k in range(-1, 3)}


#: What retention drops, by `keep_days` key: the partitioned tables it covers. Raw levels
#: and labels are in day partitions, the rollups in month partitions (UTC).
RETENTION: dict[str, tuple[str, ...]] = {
    "levels": ("levels_packed",),
    "labels": ("labels_packed",),
    "minute_rollups": ("levels_minute",),
    "hourly_rollups": (
        "levels_hourly",
        "labels_hourly",
        "summaries_hourly",
        "indices_hourly",
        "labelled_hourly",
    ),
}
_PARTITION_NAME = re.compile(r"^([a-z_]+)_p(\d{6}|\d{8})$")
#: The packed tables whose insert takes a per-device advisory lock (see `push`).
PACKED = {"levels": "soundscape_levels:", "labels": "soundscape_labels:"}


@dataclass(frozen=True, slots=True)
class Dropped:
    """One partition retention dropped (`day`: its first day), with the rows it held."""

    table: str
    day: date
    rows: int


def partition_end(day: date, monthly: bool) -> datetime:
    """The end (exclusive, UTC) of the day or month partition that starts on `day`."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if not monthly:
        return start + timedelta(days=1)
    return start.replace(year=day.year + day.month // 12, month=day.month % 12 + 1)


def expired(day: date, keep_days: int, now: datetime, monthly: bool = False) -> bool:
    """Whether the partition starting on `day` (a UTC day, or a month when `monthly`) is
    wholly older than `keep_days` days before `now`; never with keep_days 0 (forever)."""
    if keep_days <= 0:
        return False
    return partition_end(day, monthly) <= now - timedelta(days=keep_days)


def drop_expired(
    conn: psycopg.Connection, keep_days: dict[str, int], now: datetime
) -> list[Dropped]:
    """Drop the partitions (see `RETENTION`) whose rows are all older than `keep_days[key]`
    days (0 or absent: keep forever). Whole partitions only, never row deletes (a default
    partition is never dropped). Needs the schema owner (the writer may not drop tables);
    each table's drops commit in one transaction."""
    dropped: list[Dropped] = []
    for key, tables in RETENTION.items():
        keep = keep_days.get(key, 0)
        if keep <= 0:
            continue
        for table in tables:
            with conn.transaction():
                names = [
                    name
                    for (name,) in conn.execute(
                        "SELECT c.relname FROM pg_inherits i "
                        "JOIN pg_class c ON c.oid = i.inhrelid "
                        "WHERE i.inhparent = to_regclass(%s) ORDER BY 1",
                        (table,),
                    )
                ]
                for name in names:
                    match = _PARTITION_NAME.match(name)
                    if not match or match[1] != table:
                        continue
                    monthly = len(match[2]) == 6
                    day = datetime.strptime(match[2] + ("01" if monthly else ""), "%Y%m%d")
                    if not expired(day.date(), keep, now, monthly):
                        continue
                    ident = sql.Identifier(name)
                    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()
                    conn.execute(sql.SQL("DROP TABLE {}").format(ident))
                    dropped.append(Dropped(table, day.date(), int(row[0]) if row else 0))
            mine = [d for d in dropped if d.table == table]
            if mine:
                log.info(
                    "retention: dropped %d partitions of %s (%s .. %s, %d rows), older than "
                    "%d days",
                    len(mine),
                    table,
                    mine[0].day,
                    mine[-1].day,
                    sum(d.rows for d in mine),
                    keep,
                )
    return dropped


def maintain(conn: psycopg.Connection, keep_days: dict[str, int], now: datetime) -> list[Dropped]:
    """The schema owner's maintenance: partitions ahead (today - 1 .. today + 2), then
    retention. Idempotent; run it daily (`soundscape ingest --maintain`)."""
    ensure_partitions(conn, days_ahead(now), set())
    return drop_expired(conn, keep_days, now)


def push(
    conn: psycopg.Connection, batch: Batch, source: str, known_days: set[date] | None = None
) -> Pushed:
    """Store a batch in one transaction, stamped with a fresh sync_id and sync_time.

    The day partitions its rows need are created first (`ensure_partitions`); `known_days`
    carries what is known to exist from one batch to the next."""
    ensure_partitions(conn, batch_days(batch), set() if known_days is None else known_days)
    sync_id = uuid.uuid4()
    sync_time = datetime.now(UTC)
    by_kind: dict[str, list[Row]] = defaultdict(list)
    for res in batch.results:
        by_kind[res.kind].extend(res.rows)
    offered = inserted = 0
    with conn.transaction(), conn.cursor() as cur:
        for kind, rows in sorted(by_kind.items()):
            table = TABLES[kind]
            cur.execute(table.create_staging())
            with cur.copy(table.copy()) as copy:
                for row in rows:
                    copy.write_row(table.complete(row))
            if kind == "labels":
                cur.execute(LABEL_NAMES_INSERT)
            if kind in PACKED:
                # A window is stored once: whether it is already in its minute's row is
                # read by the insert itself, so concurrent writers of a device take turns
                # (in device order; kinds in name order), each seeing the other's commit.
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s || d.device)) "
                    f"FROM (SELECT DISTINCT device FROM {table.staging} ORDER BY 1) d",
                    (PACKED[kind],),
                )
            cur.execute(table.insert(), (sync_id, sync_time))
            new = cur.fetchone()
            offered += len(rows)
            inserted += int(new[0]) if new else 0
        if batch.gaps:
            cur.executemany(
                GAP_INSERT,
                [
                    (
                        g.uid,
                        g.gap.device,
                        SPOOL_OVERFLOW,
                        g.gap.result,
                        g.gap.first_start,
                        g.gap.last_start,
                        g.gap.count,
                        g.recorded_at,
                        sync_id,
                        sync_time,
                    )
                    for g in batch.gaps
                ],
            )
        cur.execute(
            SYNC_INSERT,
            (sync_id, sync_time, source, inserted, offered, len(batch.results), len(batch.gaps)),
        )
    return Pushed(sync_id, offered, inserted, len(batch.results), len(batch.gaps))
