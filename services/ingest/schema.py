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

from shared.messages.bands import HIGHEST_X, LOWEST_X, nominal

#: `levels.bands` order: element i (from 1) is the 1/3-octave band x = i - 1 + LOWEST_X, named
#: here by its nominal centre; the migration's `band_names` table holds the same list.
BAND_ORDER: tuple[str, ...] = tuple(nominal(x) for x in range(LOWEST_X, HIGHEST_X + 1))

#: Staging type of times (window_start, a gap's bounds): Unix seconds, turned into
#: timestamptz by `to_timestamp`.
EPOCH = "double precision"
#: Columns staged as Unix seconds and stored as timestamptz.
EPOCH_COLUMNS = frozenset({"window_start", "first_start", "last_start", "recorded_at"})


@dataclass(frozen=True, slots=True)
class Table:
    """One results table: its columns (name, SQL type) as staged, and its conflict key.

    `rollups`: (name, SQL) of the rollup upserts fed in the same statement by `new`, the
    staged rows whose key was inserted (times still Unix seconds). The labels table stores
    one row per window (its staged rows, one per label, are grouped), so a window
    classified twice keeps one label set, never a mix of both.
    """

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    rollups: tuple[tuple[str, str], ...] = ()
    #: The whole insert statement, for tables stored packed one row a minute (see `PACKED`).
    statement: str | None = None

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
        constraint violation still raises instead of being silently skipped. The statement
        returns one row: the staged rows that were new. The rows actually inserted (RETURNING
        their key, which the writer role may read) also feed the table's rollups in the same
        statement, so a duplicate adds nothing to them and a late row adds exactly itself.
        """
        if self.statement is not None:
            return self.statement
        key = ", ".join(self.key)
        exprs = ", ".join(_value(f"s.{name}", name) for name in self.names)
        ins = (
            f"INSERT INTO {self.name} ({', '.join(self.names)}, sync_id, sync_time) "
            f"SELECT {exprs}, %s, %s FROM {self.staging} s"
        )
        ctes = [f"ins AS ({ins} ON CONFLICT ({key}) DO NOTHING RETURNING {key})"]
        new = "ins"
        if self.rollups:
            same = " AND ".join(f"{_value('s.' + name, name)} = i.{name}" for name in self.key)
            # The staged rows (every column) of the inserted keys; each key is staged once
            # (the spool holds one result per key).
            ctes.append(f"new AS (SELECT s.* FROM ins i JOIN {self.staging} s ON {same})")
            new = "new"
            ctes += [f"{name} AS ({sql})" for name, sql in self.rollups]
        return f"WITH {', '.join(ctes)} SELECT count(*) FROM {new}"


def _value(expr: str, name: str) -> str:
    """A staged column as the table stores it (times: Unix seconds -> timestamptz; bands:
    JSON map -> real[] in band order, see band_names)."""
    if name in EPOCH_COLUMNS:
        return f"to_timestamp({expr})"
    if name == "bands":
        return f"soundscape_bands({expr})"
    return expr


_WINDOW = (("device", "text"), ("window_start", EPOCH), ("window_seq", "bigint"))

#: The levels rollup tables (bucket width -> table), one row per device and UTC bucket.
LEVEL_ROLLUPS = {"minute": "levels_minute", "hour": "levels_hourly"}


def _band_ctes(unit: str) -> list[str]:
    """CTEs of the per-band energetic means of `new` per device and `unit` bucket
    (`bands_{unit}`: device, bucket, seconds (the most any band has), 41 means or null),
    from the bands as stored (smallint centi-dB, so they equal a recomputation)."""
    return [
        f"bm_{unit} AS (SELECT nbu.device, date_trunc('{unit}', nbu.ts, 'UTC') AS bucket, "
        "nbu.j, sum(nbu.d::double precision) FILTER (WHERE nbu.v IS NOT NULL) AS seconds, "
        "(10 * log10(sum(nbu.d * 10 ^ (nbu.v / 1000.0::double precision)) "
        "/ sum(nbu.d::double precision) FILTER (WHERE nbu.v IS NOT NULL)))::real AS mean "
        "FROM nbu GROUP BY 1, 2, 3)",
        f"bands_{unit} AS (SELECT device, bucket, coalesce(max(seconds), 0) AS seconds, "
        "CASE WHEN count(mean) > 0 THEN array_agg(mean ORDER BY j) END AS bands "
        f"FROM bm_{unit} GROUP BY 1, 2)",
    ]


def _levels_rollup(unit: str, table: str) -> str:
    """Upsert of one levels rollup from `new`: durations and energies add up exactly; band
    means combine weighted by their seconds (`soundscape_band_merge`)."""
    d = "new.window_duration::double precision"
    sums = [f"sum({d})", f"sum({d} * power(10::double precision, new.leq_db / 10))"]
    for col in ("laeq_db", "lceq_db"):
        sums += [
            f"coalesce(sum({d}) FILTER (WHERE new.{col} IS NOT NULL), 0)",
            f"coalesce(sum({d} * power(10::double precision, new.{col} / 10)), 0)",
        ]
    added = ", ".join(
        f"{c} = {table}.{c} + EXCLUDED.{c}"
        for c in (
            "seconds",
            "leq_energy",
            "laeq_seconds",
            "laeq_energy",
            "lceq_seconds",
            "lceq_energy",
            "windows",
            "band_seconds",
        )
    )
    merge = (
        f"bands = soundscape_band_merge({table}.bands, {table}.band_seconds, EXCLUDED.bands, "
        "EXCLUDED.band_seconds)"
    )
    return (
        f"INSERT INTO {table} (device, bucket, seconds, leq_energy, laeq_seconds, laeq_energy, "
        "lceq_seconds, lceq_energy, windows, band_seconds, bands) "
        "SELECT a.*, coalesce(b.seconds, 0), b.bands FROM ("
        f"SELECT new.device, date_trunc('{unit}', to_timestamp(new.window_start), 'UTC') "
        f"AS bucket, {', '.join(sums)}, count(*) FROM new GROUP BY 1, 2) a "
        f"LEFT JOIN bands_{unit} b ON b.device = a.device AND b.bucket = a.bucket "
        f"ORDER BY 1, 2 ON CONFLICT (device, bucket) DO UPDATE SET {added}, {merge}"
    )


def _append(table: str, columns: tuple[str, ...]) -> str:
    """ON CONFLICT assignments that append a batch's arrays to a packed row's."""
    return ", ".join(f"{c} = {table}.{c} || EXCLUDED.{c}" for c in columns)


_PACKED_LEVELS = (
    "offsets_us", "seqs", "durations", "leq_db", "laeq_db", "lceq_db", "peak_db", "dbfs",
    "bands", "clipped", "gain_db", "sensitivity_dbv", "vadc", "uncalibrated", "sync_ids",
    "sync_times",
)  # fmt: skip

#: Levels: the staged windows not yet in their minute's row (`new`) are appended to it, one
#: upsert per device and minute, and feed the rollups. Parameters: sync_id, sync_time.
LEVELS_CTES = (
    "s AS (SELECT st.*, to_timestamp(st.window_start) AS ts FROM stage_levels st)",
    "new AS (SELECT s.* FROM s WHERE NOT EXISTS (SELECT 1 FROM levels_packed p "
    "WHERE p.device = s.device AND p.minute = date_trunc('minute', s.ts, 'UTC') "
    "AND soundscape_offset(s.ts) = ANY(p.offsets_us)))",
    "ins AS (INSERT INTO levels_packed (device, minute, "
    + ", ".join(_PACKED_LEVELS)
    + ") SELECT new.device, date_trunc('minute', new.ts, 'UTC'), "
    "array_agg(soundscape_offset(new.ts) ORDER BY new.ts), "
    "array_agg(new.window_seq ORDER BY new.ts), "
    "array_agg(new.window_duration ORDER BY new.ts), "
    + ", ".join(
        f"array_agg(new.{c}::real ORDER BY new.ts)"
        for c in ("leq_db", "laeq_db", "lceq_db", "peak_db", "dbfs")
    )
    + ", array_agg(soundscape_pack_bands(new.bands) ORDER BY new.ts), "
    "array_agg(coalesce(new.clipped, false) ORDER BY new.ts), "
    + ", ".join(
        f"array_agg(new.{c}::real ORDER BY new.ts)" for c in ("gain_db", "sensitivity_dbv", "vadc")
    )
    + ", array_agg(new.uncalibrated ORDER BY new.ts), "
    "array_fill(%s::uuid, ARRAY[count(*)::integer]), "
    "array_fill(%s::timestamptz, ARRAY[count(*)::integer]) "
    "FROM new GROUP BY 1, 2 ORDER BY 1, 2 ON CONFLICT (device, minute) DO UPDATE SET "
    + _append("levels_packed", _PACKED_LEVELS)
    + ")",
    "nb AS (SELECT new.device, new.ts, new.window_duration AS d, "
    "soundscape_pack_bands(new.bands) AS b FROM new WHERE new.bands IS NOT NULL)",
    "nbu AS (SELECT nb.device, nb.ts, nb.d, u.j, u.v FROM nb "
    "CROSS JOIN LATERAL unnest(nb.b) WITH ORDINALITY AS u(v, j))",
    *_band_ctes("minute"),
    *_band_ctes("hour"),
)

_PACKED_LABELS = (
    "offsets_us", "seqs", "durations", "ends", "label_ids", "scores", "speech_present",
    "inference_ms", "sync_ids", "sync_times",
)  # fmt: skip

#: Labels: staged one row per label; grouped into windows (`w`), the windows not yet in
#: their minute's row (`neww`) are appended to it with their labels flattened in window and
#: rank order (`ends`: each window's last index); `new` is their label rows, for the rollups.
LABELS_CTES = (
    "w AS (SELECT s.device, s.window_start, s.model, to_timestamp(s.window_start) AS ts, "
    "min(s.window_seq) AS seq, min(s.window_duration) AS dur, "
    "array_agg(n.id ORDER BY s.rank) AS ids, "
    "array_agg(soundscape_score(s.rating) ORDER BY s.rank) AS sc, "
    "bool_or(s.speech_present) AS speech, min(s.inference_ms) AS ms "
    "FROM stage_labels s JOIN label_names n ON n.name = s.label "
    "GROUP BY s.device, s.window_start, s.model)",
    "neww AS (SELECT w.*, date_trunc('minute', w.ts, 'UTC') AS m FROM w WHERE NOT EXISTS ("
    "SELECT 1 FROM labels_packed p WHERE p.device = w.device "
    "AND p.minute = date_trunc('minute', w.ts, 'UTC') AND p.model = w.model "
    "AND soundscape_offset(w.ts) = ANY(p.offsets_us)))",
    "wend AS (SELECT neww.*, sum(cardinality(neww.ids)) OVER (PARTITION BY neww.device, "
    "neww.m, neww.model ORDER BY neww.ts) AS e FROM neww)",
    "flat AS (SELECT wend.device, wend.m, wend.model, "
    "array_agg(u.id ORDER BY wend.ts, u.k) AS ids, array_agg(u.sc ORDER BY wend.ts, u.k) AS sc "
    "FROM wend CROSS JOIN LATERAL unnest(wend.ids, wend.sc) WITH ORDINALITY AS u(id, sc, k) "
    "GROUP BY 1, 2, 3)",
    "ins AS (INSERT INTO labels_packed (device, minute, model, "
    + ", ".join(_PACKED_LABELS)
    + ") SELECT wend.device, wend.m, wend.model, "
    "array_agg(soundscape_offset(wend.ts) ORDER BY wend.ts), "
    "array_agg(wend.seq ORDER BY wend.ts), array_agg(wend.dur ORDER BY wend.ts), "
    "array_agg(wend.e::smallint ORDER BY wend.ts), min(f.ids), min(f.sc), "
    "array_agg(wend.speech ORDER BY wend.ts), array_agg(wend.ms ORDER BY wend.ts), "
    "array_fill(%s::uuid, ARRAY[count(*)::integer]), "
    "array_fill(%s::timestamptz, ARRAY[count(*)::integer]) "
    "FROM wend JOIN flat f ON f.device = wend.device AND f.m = wend.m AND f.model = wend.model "
    "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 ON CONFLICT (device, minute, model) DO UPDATE SET "
    + ", ".join(
        "ends = labels_packed.ends || soundscape_shift(EXCLUDED.ends, "
        "cardinality(labels_packed.label_ids))"
        if c == "ends"
        else f"{c} = labels_packed.{c} || EXCLUDED.{c}"
        for c in _PACKED_LABELS
    )
    + ")",
    "new AS (SELECT s.* FROM stage_labels s JOIN neww ON neww.device = s.device "
    "AND neww.window_start = s.window_start AND neww.model = s.model)",
)


def packed_statement(ctes: tuple[str, ...], rollups: tuple[tuple[str, str], ...]) -> str:
    """The insert statement of a packed table: its CTEs, then its rollups fed from `new`,
    returning one row: the staged rows that were new."""
    return (
        "WITH "
        + ", ".join([*ctes, *(f"{name} AS ({sql})" for name, sql in rollups)])
        + " SELECT count(*) FROM new"
    )


#: Acoustic index columns rolled up per hour (a sum and a count of non-null values each).
INDEX_COLUMNS = ("aci", "adi", "aei", "bi", "ndsi", "ht", "hf", "events")


def _hourly(table: str, key: str, values: list[tuple[str, str, str]]) -> str:
    """Upsert of an hourly rollup keyed by (device, bucket, window_duration) from `new`:
    `values` are (column, aggregate, how a stored row combines with EXCLUDED)."""
    cols = ", ".join(c for c, _, _ in values)
    aggs = ", ".join(a for _, a, _ in values)
    sets = ", ".join(
        f"{c} = {how.format(t=f'{table}.{c}', e=f'EXCLUDED.{c}')}" for c, _, how in values
    )
    return (
        f"INSERT INTO {table} (device, bucket, window_duration, {cols}) "
        "SELECT new.device, date_trunc('hour', to_timestamp(new.window_start), 'UTC'), "
        f"new.window_duration, {aggs} FROM new GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
        f"ON CONFLICT ({key}) DO UPDATE SET {sets}"
    )


_ADD = "{t} + {e}"
_D = "new.window_duration::double precision"
#: Level summaries per hour: LAeq as energy, LAmax/LAmin as extremes, L10/L50/L90 as
#: duration-weighted sums (their hourly value is sum / seconds: an approximation, see docs).
SUMMARIES_HOURLY = _hourly(
    "summaries_hourly",
    "device, bucket, window_duration",
    [
        ("summaries", "count(*)", _ADD),
        ("seconds", f"sum({_D})", _ADD),
        ("laeq_energy", f"sum({_D} * power(10::double precision, new.laeq_db / 10))", _ADD),
        ("lamax_db", "max(new.lamax_db)", "greatest({t}, {e})"),
        ("lamin_db", "min(new.lamin_db)", "least({t}, {e})"),
        ("l10_sum", f"sum({_D} * new.l10_db)", _ADD),
        ("l50_sum", f"sum({_D} * new.l50_db)", _ADD),
        ("l90_sum", f"sum({_D} * new.l90_db)", _ADD),
        ("coverage_seconds", f"sum({_D} * new.coverage)", _ADD),
    ],
)
#: Acoustic indices per hour: sum and count of each index (mean = sum / count).
INDICES_HOURLY = _hourly(
    "indices_hourly",
    "device, bucket, window_duration",
    [("windows", "count(*)", _ADD)]
    + [
        item
        for c in INDEX_COLUMNS
        for item in (
            (f"{c}_sum", f"coalesce(sum(new.{c}::double precision), 0)", _ADD),
            (f"{c}_n", f"count(new.{c})", _ADD),
        )
    ],
)

#: Every rollup table ingest maintains.
ROLLUP_TABLES = (
    *LEVEL_ROLLUPS.values(),
    "labels_hourly",
    "summaries_hourly",
    "indices_hourly",
    "labelled_hourly",
)

#: Label counts and scores per device, UTC hour, model and label, from `new` (label rows).
LABELS_HOURLY = (
    "INSERT INTO labels_hourly (device, bucket, model, label_id, windows, score_sum, "
    "score_max) SELECT new.device, date_trunc('hour', to_timestamp(new.window_start), 'UTC'), "
    "new.model, n.id, count(*), sum(soundscape_score(new.rating) / 10000.0::float8), "
    "max((soundscape_score(new.rating) / 10000.0::float8)::real) "
    "FROM new JOIN label_names n ON n.name = new.label GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 "
    "ON CONFLICT (device, bucket, model, label_id) DO UPDATE SET "
    "windows = labels_hourly.windows + EXCLUDED.windows, "
    "score_sum = labels_hourly.score_sum + EXCLUDED.score_sum, "
    "score_max = greatest(labels_hourly.score_max, EXCLUDED.score_max)"
)

_LEVEL_UPSERTS = tuple((t, _levels_rollup(u, t)) for u, t in LEVEL_ROLLUPS.items())

#: Labelled windows (and their seconds) per device, UTC hour and model, from `neww`.
LABELLED_HOURLY = (
    "INSERT INTO labelled_hourly (device, bucket, model, windows, seconds) "
    "SELECT neww.device, date_trunc('hour', neww.ts, 'UTC'), neww.model, count(*), "
    "sum(neww.dur::double precision) FROM neww GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
    "ON CONFLICT (device, bucket, model) DO UPDATE SET "
    "windows = labelled_hourly.windows + EXCLUDED.windows, "
    "seconds = labelled_hourly.seconds + EXCLUDED.seconds"
)
_LABEL_UPSERTS = (("labels_hourly", LABELS_HOURLY), ("labelled_hourly", LABELLED_HOURLY))

#: Label names not yet in the catalogue (run before the labels insert). NOT EXISTS first, so
#: that a known name never draws (and wastes) a smallint id from the identity sequence.
LABEL_NAMES_INSERT = (
    "INSERT INTO label_names (name) SELECT DISTINCT s.label FROM stage_labels s "
    "WHERE NOT EXISTS (SELECT 1 FROM label_names n WHERE n.name = s.label) "
    "ORDER BY 1 ON CONFLICT (name) DO NOTHING"
)

#: Results tables by topic leaf (see shared.messages.RESULT_TYPES).
TABLES: dict[str, Table] = {
    "labels": Table(
        "labels",
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
        ("device", "window_start", "model"),
        rollups=_LABEL_UPSERTS,
        statement=packed_statement(LABELS_CTES, _LABEL_UPSERTS),
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
        rollups=_LEVEL_UPSERTS,
        statement=packed_statement(LEVELS_CTES, _LEVEL_UPSERTS),
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
        rollups=(("summaries_hourly", SUMMARIES_HOURLY),),
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
        rollups=(("indices_hourly", INDICES_HOURLY),),
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
    # One row per species of a SpeciesResult (migration 0007).
    "species": Table(
        "species",
        (
            *_WINDOW,
            ("window_duration", "real"),
            ("model", "text"),
            ("scientific_name", "text"),
            ("common_name", "text"),
            ("score", "real"),
            ("rank", "smallint"),
            ("min_confidence", "real"),
            ("location_filtered", "boolean"),
            ("inference_ms", "real"),
        ),
        ("device", "window_start", "model", "scientific_name"),
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
    results = ", ".join(t.name for t in TABLES.values() if t.statement is None and t.name != "gaps")
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
        if table.statement is None:
            lines.append(f"GRANT SELECT ({', '.join(table.key)}) ON {table.name} TO {writer};")
    lines += [
        "-- levels and labels are stored one row a minute: a batch's windows are appended to",
        "-- their minute's row (ON CONFLICT DO UPDATE reads the arrays it appends to), so the",
        "-- writer reads and updates those rows (it still cannot delete or truncate them)",
        f"GRANT SELECT, INSERT, UPDATE ON levels_packed, labels_packed TO {writer};",
    ]
    lines += [
        "-- the catalogues: label ids are given out as ingest meets a name; band order",
        f"GRANT SELECT, INSERT (name) ON label_names TO {writer};",
        f"GRANT SELECT ON band_names TO {writer};",
        "-- rollups are upserted (added to) in the transaction that inserts the raw rows",
        f"GRANT SELECT, INSERT, UPDATE ON {', '.join(ROLLUP_TABLES)} TO {writer};",
        "-- day partitions are created by the owner's SECURITY DEFINER function",
        f"GRANT EXECUTE ON FUNCTION soundscape_ensure_partitions(date[]) TO {writer};",
    ]
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
