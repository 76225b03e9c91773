"""The tables results go into: columns, keys and the SQL that moves a batch. Pure (no I/O).

The column lists here are the order in which `core` builds rows, in which the spool keeps them
and in which they are copied into the staging tables: one place to change, checked against the
migrations by the tests.

A column added by a later migration is nullable and goes at the end of its table's list:
rows spooled by an older ingest lack it, and `Table.complete` fills it with null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Staging type of times (window_start, a gap's bounds): Unix seconds, turned into
#: timestamptz by `to_timestamp`.
EPOCH = "double precision"
#: Columns staged as Unix seconds and stored as timestamptz.
EPOCH_COLUMNS = frozenset({"window_start", "first_start", "last_start", "recorded_at"})


@dataclass(frozen=True, slots=True)
class Table:
    """One results table: its columns (name, SQL type) as staged, and its conflict key.

    `message_key`: the columns naming one message, when a message becomes several rows (the
    labels of one window): rows of a message whose window is already stored are skipped as a
    whole, so a window classified twice keeps one label set, never a mix of both.
    """

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    message_key: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Column names, in row order."""
        return tuple(name for name, _ in self.columns)

    @property
    def staging(self) -> str:
        """The staging table's name (a temporary table of the same session)."""
        return f"stage_{self.name}"

    def complete(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """A row with the columns added since it was spooled (by an older ingest) as null."""
        missing = len(self.columns) - len(row)
        return (*row, *(None,) * missing) if missing > 0 else row

    def create_staging(self) -> str:
        """Staging DDL with explicit columns: `LIKE` would need SELECT on the target table."""
        cols = ", ".join(f"{name} {sqltype}" for name, sqltype in self.columns)
        return f"CREATE TEMPORARY TABLE {self.staging} ({cols}) ON COMMIT DROP"

    def copy(self) -> str:
        """COPY statement that fills the staging table."""
        return f"COPY {self.staging} ({', '.join(self.names)}) FROM STDIN"

    def insert(self) -> str:
        """Move staged rows into the table, skipping rows whose key is already stored.

        Parameters: sync_id, sync_time. The conflict target is explicit so that any other
        constraint violation still raises instead of being silently skipped.
        """
        exprs = ", ".join(_value(f"s.{name}", name) for name in self.names)
        where = ""
        if self.message_key:
            # Reads only key columns: the writer role may SELECT nothing else.
            same = " AND ".join(
                f"t.{name} = {_value(f's.{name}', name)}" for name in self.message_key
            )
            where = f" WHERE NOT EXISTS (SELECT 1 FROM {self.name} t WHERE {same})"
        return (
            f"INSERT INTO {self.name} ({', '.join(self.names)}, sync_id, sync_time) "
            f"SELECT {exprs}, %s, %s FROM {self.staging} s{where} "
            f"ON CONFLICT ({', '.join(self.key)}) DO NOTHING"
        )


def _value(expr: str, name: str) -> str:
    """A staged column as the table stores it (times: Unix seconds -> timestamptz)."""
    return f"to_timestamp({expr})" if name in EPOCH_COLUMNS else expr


_WINDOW = (("device", "text"), ("window_start", EPOCH), ("window_seq", "bigint"))

#: Results tables by topic leaf (see shared.messages.RESULT_TYPES).
TABLES: dict[str, Table] = {
    "labels": Table(
        "detections",
        (
            ("label", "text"),
            ("rating", "real"),
            *_WINDOW,
            ("window_duration", "real"),
            ("model", "text"),
            ("rank", "smallint"),
            ("speech_present", "boolean"),
            ("inference_ms", "real"),
        ),
        ("device", "window_start", "model", "label"),
        message_key=("device", "window_start", "model"),
    ),
    "levels": Table(
        "levels",
        (
            *_WINDOW,
            ("window_duration", "real"),
            ("leq_db", "double precision"),
            ("laeq_db", "double precision"),
            ("lceq_db", "double precision"),
            ("peak_db", "double precision"),
            ("dbfs", "double precision"),
            ("bands", "jsonb"),
            ("clipped", "boolean"),
            ("gain_db", "double precision"),
            ("sensitivity_dbv", "double precision"),
            ("vadc", "double precision"),
            ("uncalibrated", "boolean"),
        ),
        ("device", "window_start"),
    ),
    "summary": Table(
        "level_summaries",
        (
            *_WINDOW,
            ("window_duration", "real"),
            ("laeq_db", "double precision"),
            ("lamax_db", "double precision"),
            ("lamin_db", "double precision"),
            ("l10_db", "double precision"),
            ("l50_db", "double precision"),
            ("l90_db", "double precision"),
            ("coverage", "double precision"),
            ("uncalibrated", "boolean"),
        ),
        ("device", "window_start", "window_duration"),
    ),
    "indices": Table(
        "indices",
        (
            *_WINDOW,
            ("window_duration", "real"),
            ("aci", "double precision"),
            ("adi", "double precision"),
            ("aei", "double precision"),
            ("bi", "double precision"),
            ("ndsi", "double precision"),
            ("ht", "double precision"),
            ("hf", "double precision"),
            ("events", "bigint"),
            ("coverage", "real"),
        ),
        ("device", "window_start", "window_duration"),
    ),
    "events": Table(
        "noise_events",
        (
            *_WINDOW,
            ("window_duration", "real"),
            ("threshold_db", "double precision"),
            ("laeq_db", "double precision"),
            ("lamax_db", "double precision"),
            ("classes", "jsonb"),
        ),
        ("device", "window_start"),
    ),
    # GapReports (and the broker's drops) go into the table of ingest's own spool gaps.
    # first_start/last_start are the start and end of the lost audio; `kind` is the cause.
    "gaps": Table(
        "gaps",
        (
            ("uid", "uuid"),
            ("device", "text"),
            ("kind", "text"),
            ("first_start", EPOCH),
            ("last_start", EPOCH),
            ("count", "bigint"),
            ("recorded_at", EPOCH),
            ("node", "text"),
        ),
        ("uid",),
    ),
}

#: `gaps.kind` of the results ingest itself dropped because its spool was full.
SPOOL_OVERFLOW = "spool_overflow"
#: `gaps.kind` of messages the broker dropped (its `$SYS/broker/publish/messages/dropped`
#: counter rose); `device` is BROKER_DEVICE and `node` is "broker".
BROKER_DROPPED = "broker_dropped"
#: `gaps.device` of broker drops: the broker does not say whose messages it dropped.
BROKER_DEVICE = "*"

#: Gaps ingest records, stored idempotently by `uid`.
GAP_INSERT = (
    "INSERT INTO gaps (uid, device, kind, result, first_start, last_start, count, "
    "recorded_at, sync_id, sync_time) VALUES (%s, %s, %s, %s, to_timestamp(%s), "
    "to_timestamp(%s), %s, to_timestamp(%s), %s, %s) ON CONFLICT (uid) DO NOTHING"
)

SYNC_INSERT = (
    "INSERT INTO syncs (sync_id, sync_time, source, rows, offered, results, gaps) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def roles_sql(writer: str, reader: str) -> str:
    """SQL that creates (if missing) and grants the ingest writer and the read-only reader.

    Run it as the schema owner, in the soundscape database, after the migrations. Re-running
    it is harmless; re-run it after a migration that adds a table. Role names must be plain
    identifiers (settings enforce it). Passwords are set separately (`ALTER ROLE ... PASSWORD`).
    """
    results = ", ".join(t.name for t in TABLES.values() if t.name != "gaps")
    lines = [
        "DO $$",
        "BEGIN",
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{writer}') THEN",
        f"    CREATE ROLE {writer} LOGIN;",
        "  END IF;",
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{reader}') THEN",
        f"    CREATE ROLE {reader} LOGIN;",
        "  END IF;",
        f"  EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO {writer}', "
        "current_database());",
        f"  EXECUTE format('GRANT CONNECT ON DATABASE %I TO {reader}', current_database());",
        "END $$;",
        f"GRANT USAGE ON SCHEMA public TO {writer}, {reader};",
        "-- ingest: insert results; read only the key columns that ON CONFLICT (key) checks",
        f"GRANT INSERT ON {results}, syncs, gaps TO {writer};",
    ]
    for table in TABLES.values():
        lines.append(f"GRANT SELECT ({', '.join(table.key)}) ON {table.name} TO {writer};")
    lines += [
        f"GRANT USAGE ON SEQUENCE gaps_id_seq TO {writer};",
        "-- ingest mirrors the device registry file into devices (an upsert, which reads",
        "-- the columns it updates): the device list is not secret",
        f"GRANT SELECT, INSERT, UPDATE ON devices TO {writer};",
        "-- ingest checks the schema version before it writes",
        f"GRANT SELECT ON schema_migrations TO {writer};",
        "-- readers: everything, read-only",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader};",
        "",
    ]
    return "\n".join(lines)
