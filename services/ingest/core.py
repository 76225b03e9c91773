"""Pure decisions of ingest: which messages to accept, the rows they become, the gaps left.

No I/O here: the adapters (`spool`, `db`, `link`, `service`) call these with plain values.
Every result becomes a `Result`: its table rows in `schema.TABLES` column order (window start
as Unix seconds, JSON columns as JSON text) and a key that names it across redeliveries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.ingest.schema import TABLES
from shared.devices import DeviceRegistry
from shared.errors import MessageError
from shared.messages import (
    RESULT_TYPES,
    IndicesResult,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    NoiseEvent,
    WindowMessage,
)

#: Default seconds between syncs when neither the setting nor the registry says otherwise.
DEFAULT_SYNC_INTERVAL = 30.0
#: Largest magnitude a PostgreSQL `real` column stores without overflow.
REAL_MAX = 3.4028234e38
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Result:
    """A validated result, ready for the spool: its table rows and its idempotency key."""

    kind: str
    device: str
    start: float
    key: str
    rows: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message ingest will not store, and why (the reason never contains the payload)."""

    topic: str
    reason: str
    category: str

    @property
    def counter(self) -> str:
        """The status counter this rejection increments."""
        return f"rejected_{self.category}"


@dataclass(frozen=True, slots=True)
class Gap:
    """Results of one device and topic leaf (`result`) that were dropped (spool overflow)."""

    device: str
    result: str
    first_start: float
    last_start: float
    count: int


def result_key(msg: WindowMessage) -> str:
    """The spool key of a result: its table's conflict key at message level, as text.

    Two deliveries of the same result have the same key; `repr` of the start float is exact.
    """
    parts: list[object] = [msg.device, repr(msg.start)]
    if isinstance(msg, LabelsResult):
        parts.append(msg.model)
    elif isinstance(msg, LevelsSummary | IndicesResult):
        parts.append(repr(msg.duration))
    return json.dumps(parts, ensure_ascii=True)


def rows_of(msg: WindowMessage) -> tuple[Row, ...]:
    """The table rows of a result, in `schema.TABLES[msg.LEAF]` column order."""
    window = (msg.device, msg.start, msg.seq, msg.duration)
    if isinstance(msg, LabelsResult):
        return tuple(
            (
                item.label,
                item.score,
                *window,
                msg.model,
                rank,
                msg.speech_present,
                msg.inference_ms,
            )
            for rank, item in enumerate(msg.labels, start=1)
        )
    if isinstance(msg, LevelsResult):
        cal = msg.calibration
        bands = None if msg.bands is None else json.dumps(msg.bands, allow_nan=False)
        return (
            (
                *window,
                msg.leq_db,
                msg.laeq_db,
                msg.lceq_db,
                msg.peak_db,
                msg.dbfs,
                bands,
                msg.clipped,
                cal.gain_db,
                cal.sensitivity_dbv,
                cal.vadc,
                msg.uncalibrated,
            ),
        )
    if isinstance(msg, LevelsSummary):
        return (
            (
                *window,
                msg.laeq_db,
                msg.lamax_db,
                msg.lamin_db,
                msg.l10_db,
                msg.l50_db,
                msg.l90_db,
                msg.coverage,
                msg.uncalibrated,
            ),
        )
    if isinstance(msg, IndicesResult):
        return (
            (
                *window,
                msg.aci,
                msg.adi,
                msg.aei,
                msg.bi,
                msg.ndsi,
                msg.ht,
                msg.hf,
                msg.events,
                msg.coverage,
            ),
        )
    if isinstance(msg, NoiseEvent):
        classes = json.dumps(
            [{"label": c.label, "score": c.score} for c in msg.classes], allow_nan=False
        )
        return ((*window, msg.threshold_db, msg.laeq_db, msg.lamax_db, classes),)
    raise MessageError(f"no table for {type(msg).__name__}")


def _text_problem(value: str) -> str | None:
    return "NUL byte in text" if "\x00" in value else None


def _json_problem(value: Any) -> str | None:
    """NUL bytes anywhere in decoded JSON (keys too): jsonb refuses \\u0000."""
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, dict):
        for k, v in value.items():
            problem = _json_problem(k) or _json_problem(v)
            if problem:
                return problem
    if isinstance(value, list):
        for v in value:
            problem = _json_problem(v)
            if problem:
                return problem
    if isinstance(value, float) and not math.isfinite(value):
        return "non-finite number"
    return None


def row_problem(kind: str, row: Sequence[Any]) -> str | None:
    """Why PostgreSQL would refuse (or silently mis-store) this row, or None when it is fine.

    The message classes already refuse NaN and NUL bytes; this second check guards the database
    boundary against anything built around them (a NaN stored in a float column would poison
    every average the dashboard computes; a NUL byte would abort the whole COPY).
    """
    table = TABLES[kind]
    if len(row) != len(table.columns):
        return f"{len(row)} values for {len(table.columns)} columns of {table.name}"
    for (name, sqltype), value in zip(table.columns, row, strict=True):
        problem: str | None = None
        if value is None or isinstance(value, bool):
            continue
        if sqltype == "jsonb":
            try:
                decoded = json.loads(value) if isinstance(value, str) else value
            except ValueError:
                problem = "invalid JSON"
            else:
                problem = _json_problem(decoded)
        elif sqltype == "text":
            problem = _text_problem(value) if isinstance(value, str) else "not text"
        elif isinstance(value, float):
            if not math.isfinite(value):
                problem = "NaN or infinite number"
            elif sqltype == "real" and abs(value) > REAL_MAX:
                problem = "number too large for a real column"
        elif isinstance(value, int):
            if not BIGINT_MIN <= value <= BIGINT_MAX:
                problem = "integer out of range"
        else:
            problem = f"unexpected {type(value).__name__}"
        if problem:
            return f"{table.name}.{name}: {problem}"
    return None


class Triage:
    """Decides, message by message, what ingest stores and what it rejects."""

    def __init__(
        self,
        prefix: str,
        registry: DeviceRegistry | None = None,
        *,
        require_known_device: bool = False,
        device: str | None = None,
        max_future_s: float = 86_400.0,
    ) -> None:
        self.prefix = prefix
        self.registry = registry or DeviceRegistry()
        self.require_known_device = require_known_device and bool(self.registry.devices)
        self.device = device
        self.max_future_s = max_future_s

    def message(
        self, topic: str, payload: bytes, content_type: str | None, now: float
    ) -> Result | Rejection:
        """Decode one delivery and check it; never raises for bad input."""
        cls = RESULT_TYPES.get(topic.rsplit("/", 1)[-1])
        if cls is None:
            return Rejection(topic, "not a result topic", "topic")
        try:
            msg = cls.from_mqtt(self.prefix, topic, payload, content_type)
        except MessageError as exc:
            return Rejection(topic, str(exc), "invalid")
        return self.result(topic, msg, now)

    def result(self, topic: str, msg: WindowMessage, now: float) -> Result | Rejection:
        """Check a decoded result against the registry, the clock and the database's limits."""
        if self.device is not None and msg.device != self.device:
            return Rejection(topic, f"device {msg.device!r} is not {self.device!r}", "device")
        if self.require_known_device and self.registry.get(msg.device) is None:
            return Rejection(topic, f"unknown device {msg.device!r}", "unknown_device")
        if msg.start > now + self.max_future_s:
            ahead = msg.start - now
            return Rejection(topic, f"window starts {ahead:.0f} s in the future", "future")
        try:
            rows = rows_of(msg)
        except (MessageError, ValueError) as exc:
            return Rejection(topic, str(exc), "value")
        for row in rows:
            problem = row_problem(msg.LEAF, row)
            if problem:
                return Rejection(topic, problem, "value")
        return Result(msg.LEAF, msg.device, msg.start, result_key(msg), rows)


def gaps_of(dropped: Iterable[tuple[str, str, float]]) -> list[Gap]:
    """One gap per (device, result) from dropped (device, result leaf, start) triples."""
    spans: dict[tuple[str, str], list[float]] = {}
    for device, result, start in dropped:
        span = spans.setdefault((device, result), [start, start, 0])
        span[0] = min(span[0], start)
        span[1] = max(span[1], start)
        span[2] += 1
    return [Gap(d, k, lo, hi, int(n)) for (d, k), (lo, hi, n) in sorted(spans.items())]


def sync_interval(
    setting: float | None, device: str | None, sync_intervals: Mapping[str, float]
) -> float:
    """The setting if given; else the one device's registry `sync_interval`; else 30 s."""
    if setting is not None:
        return setting
    if device is not None and device in sync_intervals:
        return sync_intervals[device]
    return DEFAULT_SYNC_INTERVAL
