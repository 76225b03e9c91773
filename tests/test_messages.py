"""Message round-trips, topics, and hostile payloads rejected with a clear reason."""

from __future__ import annotations

import contextlib
import json
import math
import re
import tracemalloc
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from services.levels.bands import partition
from shared.errors import MessageError
from shared.messages import (
    JSON,
    MAX_PACKET_BYTES,
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
from shared.messages.audio import MAX_PCM_BYTES
from shared.messages.bands import BAND_NAMES
from shared.messages.events import MAX_EVENT_CLASSES
from shared.messages.labels import MAX_LABELS
from shared.messages.status import MAX_COUNTERS

T0 = 1_764_400_000.0


def chunk(**over: object) -> AudioChunk:
    fields: dict[str, object] = dict(
        device="yor", seq=3, start=T0, rate=16000, pcm=b"\x01\x00" * 16000
    )
    fields.update(over)
    return AudioChunk(**fields)  # type: ignore[arg-type]


def test_audio_round_trip_uses_msgpack_bin() -> None:
    msg = chunk()
    raw = msg.encode()
    decoded = msgpack.unpackb(raw, raw=False)
    assert isinstance(decoded["pcm"], bytes)  # bin, not base64 text
    back = AudioChunk.decode(raw)
    assert back == msg
    assert back.samples == 16000 and back.seconds == 1.0 and back.end == T0 + 1


def test_audio_float_conversion_round_trips() -> None:
    samples = np.linspace(-0.5, 0.5, 1600, dtype=np.float32)
    msg = AudioChunk.from_float("yor", 0, T0, 16000, samples)
    assert np.allclose(msg.mono(), samples, atol=1 / 32768)


def test_topics_belong_to_the_class() -> None:
    assert AudioChunk.topic_for("soundscape", "yor") == "soundscape/yor/audio"
    assert LabelsResult.subscription("a/b") == "a/b/+/labels"
    assert Status.topic_for("soundscape", "yor") == "soundscape/yor/status"
    assert LevelsResult.device_of("soundscape", "soundscape/yor/levels") == "yor"
    with pytest.raises(MessageError):
        LevelsResult.device_of("soundscape", "soundscape/yor/labels")
    with pytest.raises(MessageError):
        AudioChunk.topic_for("soundscape", "bad/device")
    with pytest.raises(MessageError):
        AudioChunk.topic_for("sound+scape", "yor")


def test_results_round_trip_in_msgpack_and_json() -> None:
    msg = LabelsResult(
        device="yor",
        seq=1,
        start=T0,
        duration=1.0,
        model="m",
        labels=[LabelScore(label="Speech", score=0.9)],
    )
    assert LabelsResult.decode(msg.encode()) == msg
    assert LabelsResult.decode(msg.encode(JSON), JSON) == msg
    lv = LevelsResult(
        device="yor",
        seq=1,
        start=T0,
        duration=1.0,
        leq_db=54.2,
        calibration=Calibration(),
        uncalibrated=True,
    )
    assert LevelsResult.decode(lv.encode(JSON), JSON) == lv


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "undecodable"),
        (msgpack.packb({"device": "yor"})[:-2], "undecodable"),  # truncated
        (msgpack.packb([1, 2, 3]), "expected a map"),
        (msgpack.packb("hello"), "expected a map"),
        (b"\xc1", "undecodable"),  # never-used msgpack byte
        (msgpack.packb({"v": 2, "device": "yor"}), "schema version"),
        (
            msgpack.packb(
                {"device": "yor", "seq": "3", "start": T0, "rate": 16000, "pcm": b"\0\0"}
            ),
            "seq",
        ),
        (
            msgpack.packb(
                {"device": "yor", "seq": 0, "start": T0, "rate": 16000, "pcm": b"\0\0\0"},
                use_bin_type=True,
            ),
            "PCM length",
        ),
        (
            msgpack.packb({"device": "yor", "seq": 0, "start": T0, "rate": 16000, "pcm": "text"}),
            "pcm",
        ),
        (
            msgpack.packb(
                {"device": "yor", "seq": 0, "start": T0, "rate": 16000, "pcm": b"\0\0", "evil": 1},
                use_bin_type=True,
            ),
            "evil",
        ),
        (
            msgpack.packb(
                {"device": "../x", "seq": 0, "start": T0, "rate": 16000, "pcm": b"\0\0"},
                use_bin_type=True,
            ),
            "device",
        ),
        (
            msgpack.packb(
                {"device": "yor", "seq": 0, "start": math.nan, "rate": 16000, "pcm": b"\0\0"},
                use_bin_type=True,
            ),
            "start",
        ),
        (msgpack.packb(msgpack.ExtType(5, b"x")), "extension"),
        (
            msgpack.packb(
                {
                    "device": "yor",
                    "seq": 0,
                    "start": T0,
                    "rate": 16000,
                    "pcm": b"\0\0" * (16000 * 61),
                },
                use_bin_type=True,
            ),
            "longer",
        ),
    ],
)
def test_bad_audio_payloads_are_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        AudioChunk.decode(payload)


def test_deep_nesting_and_length_bombs_are_rejected() -> None:
    deep = b"\x91" * 100_000 + b"\x00"  # 100k nested arrays
    with pytest.raises(MessageError):
        AudioChunk.decode(deep)
    bomb = b"\xdd\xff\xff\xff\xff"  # array32 claiming 4G items, no data
    with pytest.raises(MessageError):
        AudioChunk.decode(bomb)


def test_hostile_results_are_rejected() -> None:
    base = {"device": "yor", "seq": 0, "start": T0, "duration": 1.0, "model": "m"}
    for labels, reason in [
        ([{"label": "Spe\x00ech", "score": 0.5}], "NUL"),
        ([{"label": "Speech", "score": 1.5}], "score"),
        ([{"label": "Speech", "score": math.nan}], "score"),
        ([], "labels"),
    ]:
        with pytest.raises(MessageError, match=reason):
            LabelsResult.decode(msgpack.packb({**base, "labels": labels}))
    with pytest.raises(MessageError, match="start"):
        LabelsResult.decode(
            json.dumps({**base, "start": 9e12, "labels": [{"label": "x", "score": 0.1}]}).encode(),
            JSON,
        )
    with pytest.raises(MessageError, match="content type"):
        LabelsResult.decode(b"{}", "text/plain")


def test_device_in_payload_must_match_topic() -> None:
    raw = chunk(device="abc").encode()
    with pytest.raises(MessageError, match="does not match"):
        AudioChunk.from_mqtt("soundscape", "soundscape/yor/audio", raw)
    assert AudioChunk.from_mqtt("soundscape", "soundscape/abc/audio", raw).device == "abc"


# --- bounded decoding -----------------------------------------------------------------------

EMOJI = "\U0001f600"  # four bytes of UTF-8: the longest a character can be


def largest_messages() -> list[Message]:
    """The largest valid message of each class: every list and map full, strings at their limit."""
    window: dict[str, Any] = {"device": "d" * 64, "seq": 2**63 - 1, "start": T0, "duration": 3600.0}
    full = [LabelScore(label=EMOJI * 200, score=0.123456789) for _ in range(MAX_LABELS)]
    return [
        AudioChunk(
            device="d" * 64,
            seq=2**63 - 1,
            start=T0,
            rate=384_000,
            width=4,
            channels=8,
            pcm=b"\x01" * MAX_PCM_BYTES,
        ),
        LabelsResult(
            **window, model=EMOJI * 200, labels=full, speech_present=True, inference_ms=1e9
        ),
        LevelsResult(
            **window,
            leq_db=-123.456789012345,
            laeq_db=-123.456789012345,
            lceq_db=-123.456789012345,
            peak_db=-123.456789012345,
            dbfs=-123.456789012345,
            bands={name: -123.456789012345 for name in BAND_NAMES},
            clipped=True,
            calibration=Calibration(gain_db=1.23456789, sensitivity_dbv=-1.23456789, vadc=1.2345),
            uncalibrated=True,
        ),
        NoiseEvent(
            **window,
            threshold_db=65.123456789,
            laeq_db=-123.456789012345,
            lamax_db=-123.456789012345,
            classes=full[:MAX_EVENT_CLASSES],
        ),
        Status(
            device="d" * 64,
            service="s" * 64,
            state="degraded",
            detail=EMOJI * 500,
            counters={f"{i:03d}" + "c" * 61: -(2**63) for i in range(MAX_COUNTERS)},
        ),
    ]


@pytest.mark.parametrize("msg", largest_messages(), ids=lambda m: type(m).__name__)
def test_the_largest_valid_message_fits_its_limits(msg: Message) -> None:
    cls = type(msg)
    packed = msg.encode()
    assert len(packed) <= cls.MAX_PAYLOAD_BYTES <= MAX_PACKET_BYTES
    assert cls.decode(packed) == msg
    if cls.JSON_OK:
        text = msg.encode(JSON)
        assert len(text) <= cls.MAX_PAYLOAD_BYTES
        assert cls.decode(text, JSON) == msg


def test_audio_pcm_is_at_most_16_mib() -> None:
    assert MAX_PCM_BYTES == 16 * 1024 * 1024
    assert MAX_PACKET_BYTES == MAX_PCM_BYTES + 64 * 1024
    big = {"device": "yor", "seq": 0, "start": T0, "rate": 384_000, "width": 4, "channels": 8}
    over = msgpack.packb({**big, "pcm": b"\0" * (MAX_PCM_BYTES + 32)}, use_bin_type=True)
    with pytest.raises(MessageError, match="max_bin_len"):
        AudioChunk.decode(over)
    with pytest.raises(ValueError, match="exceeds"):
        AudioChunk(**big, pcm=b"\0" * (MAX_PCM_BYTES + 32))  # type: ignore[arg-type]


def test_audio_is_msgpack_only() -> None:
    with pytest.raises(MessageError, match="msgpack only"):
        AudioChunk.decode(b'{"device": "yor"}', JSON)


ALL = [AudioChunk, LabelsResult, LevelsResult, LevelsSummary, IndicesResult, NoiseEvent, Status]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("size", [100_000, 8_000, 200])
def test_deep_nesting_is_rejected_in_both_encodings(cls: type[Message], size: int) -> None:
    bombs = [
        (b"\x91" * size + b"\x00", MSGPACK),  # arrays in arrays
        (b"\x81\xa1a" * (size // 3) + b"\x00", None),  # maps in maps
        (b"[" * size, JSON),
        (b"[" * size + b"]" * size, JSON),
        (b'{"a":' * (size // 5) + b"1" + b"}" * (size // 5), JSON),
        (b'{"v": 1, "device": ' + b"[" * size + b"]" * size + b"}", JSON),
    ]
    for payload, ctype in bombs:
        with pytest.raises(MessageError):
            cls.decode(payload, ctype)


def test_json_measures_nesting_outside_strings_only() -> None:
    msg = LabelsResult(
        device="yor",
        seq=1,
        start=T0,
        duration=1.0,
        model='[[[[{{{{"\\',
        labels=[LabelScore(label='x"]]]]\\"[[[' * 10, score=0.5)],
    )
    assert LabelsResult.decode(msg.encode(JSON), JSON) == msg
    with pytest.raises(MessageError, match="unterminated"):
        LabelsResult.decode(b'{"model": "abc\\"}', JSON)


def _header(kind: int, n: int) -> bytes:
    """A msgpack 32-bit header (array 0xdd, map 0xdf, str 0xdb, bin 0xc6) declaring n items."""
    return bytes([kind]) + n.to_bytes(4, "big")


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_declared_length_bombs_are_rejected(cls: type[Message]) -> None:
    key = b"\xa6device"
    for kind in (0xDD, 0xDF, 0xDB, 0xC6):
        for n in (2**32 - 1, cls.MAX_PAYLOAD_BYTES - 100):
            top = b"\x81" + key + _header(kind, n)  # {"device": <n items, then nothing>}
            with pytest.raises(MessageError):
                cls.decode(top)
            with pytest.raises(MessageError):
                cls.decode(_header(kind, n))


def test_str_array_map_and_bin_limits_hold_per_class() -> None:
    base = {"device": "yor", "seq": 0, "start": T0, "duration": 1.0, "model": "m"}
    label = {"label": "Speech", "score": 0.5}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"model": "m" * 1025}, "max_str_len"),
        ({"labels": [label] * (MAX_LABELS + 1)}, "max_array_len"),
        ({"labels": [label], "x" * 1025: 1}, "max_str_len"),
        ({"labels": [label], "pcm": b"\0"}, "max_bin_len"),
        ({"labels": [[[1]]]}, "too many arrays and maps|nested"),
    ]
    for over, reason in cases:
        with pytest.raises(MessageError, match=reason):
            LabelsResult.decode(msgpack.packb({**base, **over}, use_bin_type=True))
    with pytest.raises(MessageError, match="max_map_len"):
        Status.decode(msgpack.packb({"counters": {str(i): i for i in range(MAX_COUNTERS + 1)}}))
    with pytest.raises(MessageError, match="string of"):
        LabelsResult.decode(json.dumps({**base, "model": "m" * 7000}).encode(), JSON)
    with pytest.raises(MessageError, match="container of"):
        LabelsResult.decode(json.dumps({**base, "labels": [0] * 600}).encode(), JSON)
    with pytest.raises(MessageError, match="too many arrays and maps"):
        LevelsResult.decode(json.dumps({"a": [[], [], [], []]}).encode(), JSON)
    with pytest.raises(MessageError, match="too many arrays and maps"):
        # many containers, each within the item limit: the msgpack budget stops it early
        LabelsResult.decode(b"\x81\xa6labels\xdc\x02\x0f" + b"\x91\x90" * 527)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_oversize_payloads_are_rejected_per_topic(cls: type[Message]) -> None:
    payload = b"\x81\xa1a\xc4\x00" + b"\0" * cls.MAX_PAYLOAD_BYTES
    with pytest.raises(MessageError, match=f"{cls.MAX_PAYLOAD_BYTES}"):
        cls.decode(payload)
    with pytest.raises(MessageError, match=f"{cls.MAX_PAYLOAD_BYTES}"):
        cls.decode(payload, JSON)


def test_decoding_costs_memory_in_proportion_to_the_payload() -> None:
    """The worst shapes the limits allow: about ten times the payload at most."""
    nested = b"\x81\xa6labels\xdc\x02\x0d" + (b"\xdc\x02\x0f" + b"\xc0" * 527) * 525
    floats = b"\x81\xa6labels\xdc\x02\x0d" + (b"\xdc\x00\x30" + (b"\xcb" + b"\x3f" * 8) * 48) * 525
    as_json = b'{"labels": [' + b",".join([b"[" + b",".join([b"0"] * 200) + b"]"] * 520) + b"]}"
    for payload, ctype in [(nested, None), (floats, None), (as_json, JSON)]:
        assert len(payload) <= LabelsResult.MAX_PAYLOAD_BYTES
        tracemalloc.start()
        try:
            with pytest.raises(MessageError):
                LabelsResult.decode(payload, ctype)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 10 * len(payload), (len(payload), peak)
    # The largest valid chunk, and an array bomb as large: the PCM is held once or twice.
    audio = largest_messages()[0].encode()
    bomb = b"\xdd" + (MAX_PCM_BYTES - 64).to_bytes(4, "big") + b"\xc0" * (MAX_PCM_BYTES - 64)
    for payload in (audio, bomb):
        tracemalloc.start()
        try:
            with contextlib.suppress(MessageError):
                AudioChunk.decode(payload)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 3 * len(payload), (len(payload), peak)


def test_levels_bands_are_the_known_centres_only() -> None:
    lv = LevelsResult(
        device="yor",
        seq=1,
        start=T0,
        duration=1.0,
        leq_db=54.2,
        bands={"20": 30.0, "31.5": 31.0, "1000": 40.0, "200000": 1.0},
        calibration=Calibration(),
        uncalibrated=True,
    )
    assert LevelsResult.decode(lv.encode()) == lv
    raw = lv.model_dump()
    assert len(BAND_NAMES) == 41 and {"20", "12500", "200000"} <= BAND_NAMES
    for bands, reason in [
        ({"21": 1.0}, "unknown band"),
        ({"1000.0": 1.0}, "unknown band"),
        ({"1000": math.nan}, "bands"),
        ({"1000": math.inf}, "bands"),
        ({"1000": 1e6}, "bands"),
        ({"1000": "40"}, "bands"),
        ({f"{i}": 1.0 for i in range(42)}, "bands"),
        ({f"k{i}": 1.0 for i in range(100_000)}, "max_map_len|exceeds"),
    ]:
        payload = msgpack.packb({**raw, "bands": bands})
        with pytest.raises(MessageError, match=reason):
            LevelsResult.decode(payload)
    # the levels service measures with the same band names
    assert {label for label, _, _ in partition(384_000, 384_000)} == BAND_NAMES


def test_status_counters_are_bounded() -> None:
    ok = Status(device="n", service="levels", state="online", counters={"spool_depth": -1})
    assert Status.decode(ok.encode()) == ok
    raw = ok.model_dump()
    for counters in (
        {"x" * 65: 1},
        {"": 1},
        {"a\x00": 1},
        {"caf\u00e9": 1},
        {"a b": 1},
        {"a": 2**63},
        {"a": 1.5},
    ):
        with pytest.raises(MessageError, match="counters"):
            Status.decode(msgpack.packb({**raw, "counters": counters}))


def test_json_constants_and_huge_numbers_are_rejected() -> None:
    base = {"device": "yor", "seq": 0, "start": T0, "duration": 1.0}
    for text in (
        b'{"v": 1, "leq_db": NaN}',
        b'{"v": 1, "leq_db": -Infinity}',
        b'{"seq": ' + b"9" * 5000 + b"}",
        b'{"seq": 1e999}',
        json.dumps({**base, "seq": 2**63}).encode(),
        b"\xff\xfe{\x00}\x00",  # UTF-16
        b'{"device": "yor"',
    ):
        with pytest.raises(MessageError):
            IndicesResult.decode(text, JSON)


def test_every_counter_a_service_keeps_is_a_valid_status_counter_name() -> None:
    root = Path(__file__).resolve().parents[1]
    names: set[str] = set()
    for path in [*root.glob("services/**/*.py"), root / "shared" / "mqtt.py"]:
        text = path.read_text()
        names |= set(re.findall(r"(?:stats|counters)\[\s*\"([^\"]+)\"\s*\]", text))
        names |= set(re.findall(r"stats\.add\(\s*\"([^\"]+)\"", text))
        names |= {f"rejected_{c}" for c in re.findall(r"Rejection\(.*\"(\w+)\"\)$", text, re.M)}
    assert {"rejected", "handler_errors", "rejected_invalid", "rejected_error"} <= names
    counters = dict.fromkeys(sorted(names), 1)
    assert len(counters) <= MAX_COUNTERS
    assert Status(device="n", service="s", state="online", counters=counters).counters == counters
