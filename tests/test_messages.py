"""Message round-trips, topics, and hostile payloads rejected with a clear reason."""

from __future__ import annotations

import json
import math

import msgpack
import numpy as np
import pytest

from shared.errors import MessageError
from shared.messages import (
    JSON,
    AudioChunk,
    Calibration,
    LabelScore,
    LabelsResult,
    LevelsResult,
    Status,
)

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
