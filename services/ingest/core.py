"""Pure decisions of ingest: which messages to accept, the rows they become, the gaps left.

No I/O here: the adapters (`spool`, `db`, `link`, `service`) call these with plain values.
Every result becomes a `Result`: its table rows in `schema.TABLES` column order (times as Unix
seconds, JSON columns as JSON text) and a key that names it across redeliveries. A
`GapReport` is a result too: one row of the gaps table, keyed by a uid derived from it.
`BrokerDrops` turns the broker's `$SYS` drop counter into gap rows.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

from services.ingest.schema import BROKER_DEVICE, BROKER_DROPPED, TABLES
from shared.devices import DeviceRegistry
from shared.errors import MessageError
from shared.messages import (
    RESULT_TYPES,
    GapReport,
    IndicesResult,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    NoiseEvent,
    SpeciesResult,
    WindowMessage,
)

#: Default seconds between syncs when neither the setting nor the registry says otherwise.
DEFAULT_SYNC_INTERVAL = 30.0
#: Largest magnitude a PostgreSQL `real` column stores without overflow.
REAL_MAX = 3.4028234e38
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
#: Namespace of the uids of reported gaps (uuid5 of the report's fields).
GAP_NAMESPACE = uuid.UUID("6f1d3c52-7a0e-4c9b-9d55-2b8e4a1f0c37")
#: The broker's counter of PUBLISH messages it dropped (inflight or queue limits), and its
#: uptime (a lower uptime than before: the broker restarted, its counters began again at 0).
SYS_DROPPED = "$SYS/broker/publish/messages/dropped"
SYS_UPTIME = "$SYS/broker/uptime"
SYS_STORED = "$SYS/broker/store/messages/count"
#: The `$SYS` topics ingest reads.
SYS_TOPICS = (SYS_DROPPED, SYS_UPTIME, SYS_STORED)

Row = tuple[Any, ...]

#: json.dumps(value, allow_nan=False), with the encoder built once instead of per call.
_to_json = json.JSONEncoder(allow_nan=False).encode


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


def gap_uid(device: str, cause: str, node: str, start: float, end: float) -> str:
    """The uid of a reported gap: the same report always gets the same uid."""
    name = json.dumps([device, cause, node, repr(start), repr(end)], ensure_ascii=True)
    return str(uuid.uuid5(GAP_NAMESPACE, name))


def result_key(msg: WindowMessage | GapReport) -> str:
    """The spool key of a result: its table's conflict key at message level, as text.

    Two deliveries of the same result have the same key; `repr` of the start float is exact.
    """
    if isinstance(msg, GapReport):
        return gap_uid(msg.device, msg.cause, msg.node, msg.start, msg.end)
    parts = [msg.device, repr(msg.start)]
    if isinstance(msg, LabelsResult | SpeciesResult):
        parts.append(msg.model)
    elif isinstance(msg, LevelsSummary | IndicesResult):
        parts.append(repr(msg.duration))
    # json.dumps(parts, ensure_ascii=True), without its encoder's set-up per call
    return "[" + ", ".join(map(encode_basestring_ascii, parts)) + "]"


def rows_of(msg: WindowMessage | GapReport, received: float | None = None) -> tuple[Row, ...]:
    """The table rows of a result, in `schema.TABLES[msg.LEAF]` column order.

    `received` (Unix s) is a gap's `recorded_at`; without it, the end of the gap."""
    if isinstance(msg, GapReport):
        recorded = msg.end if received is None else received
        return (
            (
                result_key(msg),
                msg.device,
                msg.cause,
                msg.start,
                msg.end,
                msg.count,
                recorded,
                msg.node,
            ),
        )
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
        bands = None if msg.bands is None else _to_json(msg.bands)
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
        classes = _to_json([{"label": c.label, "score": c.score} for c in msg.classes])
        return ((*window, msg.threshold_db, msg.laeq_db, msg.lamax_db, classes),)
    if isinstance(msg, SpeciesResult):
        return tuple(
            (
                *window,
                msg.model,
                item.scientific_name,
                item.common_name,
                item.score,
                rank,
                msg.min_confidence,
                msg.location_filtered,
                msg.inference_ms,
            )
            for rank, item in enumerate(msg.detections, start=1)
        )
    raise MessageError(f"no table for {type(msg).__name__}")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


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


class _NonFinite(Exception):
    """A JSON number that is not finite (NaN, Infinity, or too large for a float)."""


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _NonFinite(text)
    return number


def _constant(name: str) -> float:
    raise _NonFinite(name)


def _jsonb_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return _json_problem(value)
    if _plain_json(value):
        try:
            json.loads(value)
        except ValueError:
            return "invalid JSON"
        return None
    try:
        decoded = json.loads(value, parse_float=_finite, parse_constant=_constant)
    except _NonFinite:
        return "non-finite number"
    except ValueError:
        return "invalid JSON"
    # Every number is finite now, and a NUL byte can only come from the escape \\u0000 (a raw
    # one is invalid JSON): text without it needs no walk.
    return _json_problem(decoded) if "\\u0000" in value else None


_DIGITS = str.maketrans(dict.fromkeys("123456789", "0"))
_LONGEST_FINITE = "0" * 309  # more digits before the point than a double holds


def _plain_json(value: str) -> bool:
    """Whether JSON text can decode to nothing but finite numbers and NUL-free strings: no
    NaN or Infinity constant, no exponent (no "e" at all), no run of 309 digits, no escape
    \\u0000 (a raw NUL is invalid JSON). Text that fails this is decoded and walked."""
    return not (
        "e" in value
        or "E" in value
        or "NaN" in value
        or "Infinity" in value
        or "\\u0000" in value
        or _LONGEST_FINITE in value.translate(_DIGITS)
    )


def _uuid_problem(value: Any) -> str | None:
    return None if isinstance(value, str) and _is_uuid(value) else "not a uuid"


def _text_column_problem(value: Any) -> str | None:
    return _text_problem(value) if isinstance(value, str) else "not text"


def _number_problem(value: Any, real: bool) -> str | None:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN or infinite number"
        if real and abs(value) > REAL_MAX:
            return "number too large for a real column"
        return None
    if isinstance(value, int):
        return None if BIGINT_MIN <= value <= BIGINT_MAX else "integer out of range"
    return f"unexpected {type(value).__name__}"


def _real_problem(value: Any) -> str | None:
    if type(value) is float and -REAL_MAX <= value <= REAL_MAX:  # NaN compares false
        return None
    return _number_problem(value, True)


def _other_problem(value: Any) -> str | None:
    kind = type(value)
    if (kind is float and math.isfinite(value)) or (
        kind is int and BIGINT_MIN <= value <= BIGINT_MAX
    ):
        return None
    return _number_problem(value, False)


_BY_TYPE = {
    "uuid": _uuid_problem,
    "jsonb": _jsonb_problem,
    "text": _text_column_problem,
    "real": _real_problem,
}
#: Per table: (column name, the check of its SQL type) in column order, built once.
_CHECKS = {
    kind: tuple((name, _BY_TYPE.get(sqltype, _other_problem)) for name, sqltype in t.columns)
    for kind, t in TABLES.items()
}


def row_problem(kind: str, row: Sequence[Any]) -> str | None:
    """Why PostgreSQL would refuse (or silently mis-store) this row, or None when it is fine.

    The message classes already refuse NaN and NUL bytes; this second check guards the database
    boundary against anything built around them (a NaN stored in a float column would poison
    every average the dashboard computes; a NUL byte would abort the whole COPY).
    """
    checks = _CHECKS[kind]
    if len(row) != len(checks):
        table = TABLES[kind]
        return f"{len(row)} values for {len(checks)} columns of {table.name}"
    for (name, check), value in zip(checks, row, strict=True):
        if value is None or value is True or value is False:
            continue
        problem = check(value)
        if problem:
            return f"{TABLES[kind].name}.{name}: {problem}"
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

    def result(self, topic: str, msg: WindowMessage | GapReport, now: float) -> Result | Rejection:
        """Check a decoded result against the registry, the clock and the database's limits."""
        if self.device is not None and msg.device != self.device:
            return Rejection(topic, f"device {msg.device!r} is not {self.device!r}", "device")
        if self.require_known_device and self.registry.get(msg.device) is None:
            return Rejection(topic, f"unknown device {msg.device!r}", "unknown_device")
        if msg.start > now + self.max_future_s:
            ahead = msg.start - now
            return Rejection(topic, f"window starts {ahead:.0f} s in the future", "future")
        try:
            rows = rows_of(msg, now)
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


class BrokerDrops:
    """The broker's drop counter (`$SYS/broker/publish/messages/dropped`), as gap rows.

    Mosquitto publishes the counter (retained) only when it changed, every `sys_interval`.
    The first value ingest sees is its baseline (drops before it are not dated, so not
    recorded); every rise after it is one gap row from the time of the previous value to
    now, with the rise as `count`. The counter starts again at 0 when the broker restarts
    (seen as a lower uptime or a lower count): the new value is then the rise.
    """

    def __init__(self) -> None:
        self.dropped: int | None = None  #: the counter's last value
        self.stored: int | None = None  #: messages the broker holds (store/messages/count)
        self.recorded = 0  #: drops recorded as gap rows since ingest started
        self._since = 0.0
        self._uptime: int | None = None
        self._restarted = False

    def message(self, topic: str, payload: bytes, now: float) -> Result | Rejection | None:
        """Take one `$SYS` message; a gap row when the drop counter rose."""
        try:
            value = int(payload.decode("ascii").split()[0])
        except (UnicodeDecodeError, ValueError, IndexError):
            return Rejection(topic, "not a counter", "sys")
        if topic == SYS_UPTIME:
            if self._uptime is not None and value < self._uptime:
                self._restarted = True
            self._uptime = value
            return None
        if topic == SYS_STORED:
            self.stored = value
            return None
        if topic != SYS_DROPPED:
            return Rejection(topic, "not a $SYS topic ingest reads", "sys")
        previous, since = self.dropped, self._since
        self.dropped, self._since = value, now
        if previous is None:
            self._restarted = False
            return None
        rise = value if self._restarted or value < previous else value - previous
        self._restarted = False
        if rise <= 0:
            return None
        self.recorded += rise
        uid = gap_uid(BROKER_DEVICE, BROKER_DROPPED, "broker", since, now)
        row = (uid, BROKER_DEVICE, BROKER_DROPPED, since, now, rise, now, "broker")
        return Result("gaps", BROKER_DEVICE, since, uid, (row,))


def sync_interval(
    setting: float | None, device: str | None, sync_intervals: Mapping[str, float]
) -> float:
    """The setting if given; else the one device's registry `sync_interval`; else 30 s."""
    if setting is not None:
        return setting
    if device is not None and device in sync_intervals:
        return sync_intervals[device]
    return DEFAULT_SYNC_INTERVAL
