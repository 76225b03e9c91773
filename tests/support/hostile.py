"""Hostile payloads, as one device's credentials could publish them: hypothesis strategies.

Each strategy yields `Hostile` (the device level of the topic, the payload, the MQTT 5 content
type) for one message class: random bytes, truncated frames, deep nesting in msgpack and JSON,
declared-length bombs, NaN and infinities, wrong types, missing and unknown fields, other
schema versions, bad content types, and the device in the payload differing from the topic.
`batch` draws many at once (hypothesis draws, never `.example()`), and `specials` adds the
few large ones that the issue reproduced (a 100 kB `[[[[`, a 16 MiB array bomb, ...).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.messages import (
    JSON,
    MSGPACK,
    AudioChunk,
    Calibration,
    IndicesResult,
    LabelScore,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    Message,
    NoiseEvent,
    Status,
)

T0 = 1_764_400_000.0


@dataclass(frozen=True, slots=True)
class Hostile:
    """One payload to publish on `{prefix}/{device}/{leaf}`."""

    device: str
    payload: bytes
    content_type: str | None


def valid(cls: type[Message], device: str) -> Message:
    """A small valid message of `cls` (the starting point of most mutations)."""
    window: dict[str, Any] = {"device": device, "seq": 7, "start": T0, "duration": 1.0}
    made: dict[type[Message], Callable[[], Message]] = {
        AudioChunk: lambda: AudioChunk(
            device=device, seq=7, start=T0, rate=16000, pcm=b"\x01\x00" * 160
        ),
        LabelsResult: lambda: LabelsResult(
            **window, model="tiny", labels=[LabelScore(label="Speech", score=0.9)]
        ),
        LevelsResult: lambda: LevelsResult(
            **window,
            leq_db=50.0,
            laeq_db=45.5,
            bands={"1000": 40.0},
            calibration=Calibration(),
            uncalibrated=True,
        ),
        LevelsSummary: lambda: LevelsSummary(
            **{**window, "duration": 60.0},
            laeq_db=55.0,
            lamax_db=70.0,
            lamin_db=40.0,
            l10_db=60.0,
            l50_db=54.0,
            l90_db=45.0,
            coverage=1.0,
            uncalibrated=False,
        ),
        IndicesResult: lambda: IndicesResult(**window, aci=150.5, ndsi=-0.2, events=3),
        NoiseEvent: lambda: NoiseEvent(
            **window,
            threshold_db=65.0,
            laeq_db=71.0,
            lamax_db=80.5,
            classes=[LabelScore(label="Car", score=0.8)],
        ),
        Status: lambda: Status(
            device=device, service="capture", state="online", time=T0, counters={"chunks": 1}
        ),
    }
    return made[cls]()


def _json_bytes(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    raise TypeError(type(value).__name__)


def encode(data: object, content_type: str) -> bytes:
    """msgpack or JSON (NaN as the JSON constant, bytes as text) of any data."""
    if content_type == JSON:
        return json.dumps(data, default=_json_bytes).encode()
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    return packed


#: msgpack headers that declare a length: (first byte, bytes of length that follow).
LENGTH_HEADERS = [
    (0xDC, 2),  # array 16
    (0xDD, 4),  # array 32
    (0xDE, 2),  # map 16
    (0xDF, 4),  # map 32
    (0xD9, 1),  # str 8
    (0xDA, 2),  # str 16
    (0xDB, 4),  # str 32
    (0xC4, 1),  # bin 8
    (0xC5, 2),  # bin 16
    (0xC6, 4),  # bin 32
    (0xC9, 4),  # ext 32
]

SCALARS = st.one_of(
    st.text(max_size=24),
    st.binary(max_size=24),
    st.lists(st.integers(-5, 5), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(-5, 5), max_size=3),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
)
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
#: What an MQTT string (a content type) may hold: the broker drops a client that sends control
#: characters or NUL in one, so no device can deliver them.
PRINTABLE = st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"])


def hostile(cls: type[Message], device: str) -> st.SearchStrategy[Hostile]:
    """Hostile payloads for `cls` published on `device`'s topic (or another device's)."""
    base = valid(cls, device)
    fields = base.model_dump()
    required = [name for name, info in cls.model_fields.items() if info.is_required()]
    floats = [k for k, v in fields.items() if isinstance(v, float)]
    encodings = [MSGPACK, JSON] if cls.JSON_OK else [MSGPACK]
    full = {ct: base.encode(ct) for ct in encodings}  # type: ignore[arg-type]

    def header(ct: str) -> st.SearchStrategy[str | None]:
        return st.just(JSON) if ct == JSON else st.sampled_from([None, MSGPACK])

    @st.composite
    def mutated(draw: st.DrawFn) -> Hostile:
        ct = draw(st.sampled_from(encodings))
        data = dict(fields)
        how = draw(st.sampled_from(["replace", "drop", "extra", "version", "nan", "nested"]))
        if how == "replace":
            data[draw(st.sampled_from(sorted(data)))] = draw(SCALARS)
        elif how == "drop":
            del data[draw(st.sampled_from(required))]
        elif how == "extra":
            data[draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in data))] = draw(
                SCALARS
            )
        elif how == "version":
            data["v"] = draw(st.integers(-(2**63), 2**63).filter(lambda v: v != 1))
        elif how == "nan" and floats:
            data[draw(st.sampled_from(floats))] = draw(NON_FINITE)
        else:  # a field's value buried in lists
            key = draw(st.sampled_from(sorted(data)))
            for _ in range(draw(st.integers(1, 6))):
                data[key] = [data[key]]
        return Hostile(device, encode(data, ct), draw(header(ct)))

    @st.composite
    def truncated(draw: st.DrawFn) -> Hostile:
        ct = draw(st.sampled_from(encodings))
        cut = draw(st.integers(0, len(full[ct]) - 1))
        return Hostile(device, full[ct][:cut], draw(header(ct)))

    @st.composite
    def other_device(draw: st.DrawFn) -> Hostile:
        ct = draw(st.sampled_from(encodings))
        topic_device = draw(st.sampled_from(["other", "yor", device + "x", "x" * 64]))
        return Hostile(topic_device, full[ct], draw(header(ct)))

    @st.composite
    def content_type(draw: st.DrawFn) -> Hostile:
        payload = draw(st.sampled_from(sorted(full.values())))
        ct = draw(
            st.one_of(
                st.text(PRINTABLE, max_size=40).filter(lambda t: t not in ("", MSGPACK, JSON)),
                st.just(JSON if payload == full[MSGPACK] else MSGPACK),
            )
        )
        return Hostile(device, payload, ct)

    @st.composite
    def deep(draw: st.DrawFn) -> Hostile:
        n = draw(st.integers(2, 20_000))
        shape = draw(st.sampled_from(range(7)))
        if shape < 3:
            payload = [
                b"\x91" * n + b"\xc0",  # arrays in arrays
                b"\x81\xa1a" * n + b"\xc0",  # maps in maps
                b"\x81\xa6device" + b"\x91" * n + b"\xc0",  # inside a field
            ][shape]
            return Hostile(device, payload, draw(header(MSGPACK)))
        payload = [
            b"[" * n,
            b"[" * n + b"]" * n,
            b'{"a":' * n + b"1" + b"}" * n,
            b'{"v": 1, "device": ' + b"[" * n + b"]" * n + b"}",
        ][shape - 3]
        return Hostile(device, payload, JSON)

    @st.composite
    def length_bomb(draw: st.DrawFn) -> Hostile:
        first, size = draw(st.sampled_from(LENGTH_HEADERS))
        n = draw(st.integers(0, 2 ** (8 * size) - 1))
        head = bytes([first]) + n.to_bytes(size, "big")
        tail = draw(st.binary(max_size=16))
        where = draw(st.sampled_from(["alone", "field", "after"]))
        key = draw(st.sampled_from(sorted(fields)))
        if where == "alone":
            payload = head + tail
        elif where == "field":
            payload = b"\x81" + msgpack.packb(key) + head + tail
        else:  # a valid start, then the bomb as the last field's value
            partial = {k: v for k, v in fields.items() if k != key}
            payload = msgpack.packb(partial, use_bin_type=True)
            count = len(partial) + 1
            payload = bytes([0x80 | count]) + payload[1:] + msgpack.packb(key) + head + tail
        return Hostile(device, payload, draw(header(MSGPACK)))

    @st.composite
    def containers(draw: st.DrawFn) -> Hostile:
        """Many or long lists and maps where the message has a few short ones."""
        ct = draw(st.sampled_from(encodings))
        data = dict(fields)
        key = draw(st.sampled_from(sorted(data)))
        items = min(cls.MAX_ITEMS, 1024)  # one more than the limit, or simply many
        data[key] = draw(
            st.one_of(
                st.lists(st.just(data[key]), min_size=items, max_size=items + 40),
                st.dictionaries(st.text(max_size=8), SCALARS, min_size=1, max_size=80),
                st.lists(
                    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3), min_size=5, max_size=40
                ),
            )
        )
        return Hostile(device, encode(data, ct), draw(header(ct)))

    strategies = [
        st.builds(Hostile, st.just(device), st.binary(max_size=200), st.sampled_from([None, JSON])),
        mutated(),
        truncated(),
        other_device(),
        content_type(),
        deep(),
        length_bomb(),
        containers(),
    ]
    if cls is LevelsResult:

        @st.composite
        def bands(draw: st.DrawFn) -> Hostile:
            ct = draw(st.sampled_from(encodings))
            data = dict(fields)
            data["bands"] = draw(
                st.dictionaries(
                    st.one_of(st.sampled_from(["20", "1000", "200000"]), st.text(max_size=8)),
                    st.floats(allow_nan=True, allow_infinity=True),
                    min_size=1,
                    max_size=60,
                )
            )
            return Hostile(device, encode(data, ct), draw(header(ct)))

        strategies.append(bands())
    return st.one_of(strategies)


def batch(strategy: st.SearchStrategy[Hostile], n: int, per_example: int = 100) -> list[Hostile]:
    """At least `n` draws of `strategy`: lists of `per_example` in each hypothesis example."""
    out: list[Hostile] = []

    @settings(
        max_examples=-(-n // per_example),
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(strategy, min_size=per_example, max_size=per_example))
    def collect(drawn: list[Hostile]) -> None:
        out.extend(drawn)

    collect()
    return out


def specials(cls: type[Message], device: str) -> list[Hostile]:
    """The large payloads the hostile-input study reproduced, and oversize ones."""
    out = [
        Hostile(device, b"[" * 100_000, JSON),  # killed services through RecursionError
        Hostile(device, b'{"a":' * 20_000 + b"1" + b"}" * 20_000, JSON),
        Hostile(device, b"\x91" * 100_000 + b"\xc0", None),
        Hostile(device, b"\x81\xa1a\xc4\x00" + b"\0" * cls.MAX_PAYLOAD_BYTES, None),  # one over
        Hostile(device, b"\x81\xa1a\xc4\x00" + b"\0" * cls.MAX_PAYLOAD_BYTES, JSON),
    ]
    if cls is AudioChunk:
        # An array bomb as large as a valid chunk: 16 M items (128 MB of pointers once decoded).
        items = cls.MAX_BIN_BYTES - 64
        out.append(Hostile(device, b"\xdd" + items.to_bytes(4, "big") + b"\xc0" * items, None))
    if cls is LevelsResult:
        data = valid(cls, device).model_dump()
        data["bands"] = {f"b{i}": 1.0 for i in range(100_000)}  # were all stored
        out.append(Hostile(device, encode(data, MSGPACK), None))
    return out


def variants(drawn: list[Hostile]) -> list[Hostile]:
    """Each drawn payload and four cheap relatives: trailing garbage, cut in half, wrapped in
    an array, announced with the other content type."""
    out: list[Hostile] = []
    for h in drawn:
        json_ct = h.content_type == JSON
        wrapped = b"[" + h.payload + b"]" if json_ct else b"\x91" + h.payload
        out += [
            h,
            Hostile(h.device, h.payload + b"\xc1", h.content_type),
            Hostile(h.device, h.payload[: len(h.payload) // 2], h.content_type),
            Hostile(h.device, wrapped, h.content_type),
            Hostile(h.device, h.payload, None if json_ct else JSON),
        ]
    return out
