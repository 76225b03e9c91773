"""Writing report rows as CSV, JSON or Parquet (Parquet needs pyarrow: the `reports` extra)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Literal

Format = Literal["csv", "json", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "json", "parquet")

#: Text columns; "date" is a date, "start_utc" a UTC timestamp, *events integers, others floats.
_TEXT = {"device", "timezone", "start_local", "period"}


class ExportError(RuntimeError):
    """The rows cannot be written in the asked format; the text says why."""


def _text(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes:
    """CSV with a header; an empty cell for a missing figure; times in ISO 8601."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else _text(row[c]) for c in columns])
    return buffer.getvalue().encode("utf-8")


def to_json(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes:
    """A JSON array of objects; null for a missing figure; times in ISO 8601."""
    data = [{c: _text(row[c]) for c in columns} for row in rows]
    return (json.dumps(data, indent=1, allow_nan=False) + "\n").encode("utf-8")


def to_parquet(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes:
    """A Parquet file: dates as date32, start_utc as a UTC timestamp, nulls for missing."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ExportError(
            "Parquet needs pyarrow: install the project with the `reports` extra"
        ) from exc

    def kind(column: str) -> Any:
        if column in _TEXT:
            return pa.string()
        if column == "date":
            return pa.date32()
        if column == "start_utc":
            return pa.timestamp("us", tz="UTC")
        if column.endswith("events"):
            return pa.int64()
        return pa.float64()

    schema = pa.schema([(c, kind(c)) for c in columns])
    table = pa.Table.from_pylist([{c: row[c] for c in columns} for row in rows], schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def render(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: Format) -> bytes:
    """The rows in `fmt`."""
    if fmt == "csv":
        return to_csv(rows, columns)
    if fmt == "json":
        return to_json(rows, columns)
    return to_parquet(rows, columns)
