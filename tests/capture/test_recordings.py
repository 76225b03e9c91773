"""Start times of recordings: AudioMoth names, header comments, modification times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import PurePath

import pytest

from services.capture.recordings import (
    comment_zone,
    is_recording,
    is_triggered,
    start_time,
    time_from_comment,
    time_from_name,
)

T = datetime(2025, 5, 24, 10, 30, 0, tzinfo=UTC).timestamp()
COMMENT = (
    "Recorded at 10:30:00 24/05/2025 (UTC) by AudioMoth 24F319055FDF1025 at medium gain "
    "while battery was greater than 4.9V and temperature was 13.1C."
)


@pytest.mark.parametrize(
    "name",
    [
        "20250524_103000.WAV",
        "20250524_103000.wav",
        "24F319055FDF1025_20250524_103000.WAV",
        "20250524/103000.WAV",
        "20250524_103000.flac",
    ],
)
def test_audiomoth_file_names(name: str) -> None:
    assert time_from_name(PurePath("/sd") / name) == T


@pytest.mark.parametrize(
    "name", ["recording.wav", "20251324_103000.WAV", "2025052_103000.WAV", "x/103000.WAV"]
)
def test_other_names_give_no_time(name: str) -> None:
    assert time_from_name(PurePath(name)) is None


def test_header_comment_with_and_without_offset() -> None:
    assert time_from_comment(COMMENT) == T
    plus_one = (
        COMMENT.replace("11:30", "").replace("10:30:00", "11:30:00").replace("(UTC)", "(UTC+1)")
    )
    assert time_from_comment(plus_one) == T
    assert (
        time_from_comment(COMMENT.replace("10:30:00", "05:00:00").replace("(UTC)", "(UTC-5:30)"))
        == T
    )
    assert comment_zone(plus_one) == timezone(timedelta(hours=1))
    assert time_from_comment("a nice day") is None
    assert time_from_comment(None) is None
    assert time_from_comment(COMMENT.replace("24/05", "32/05")) is None


def test_preference_name_then_comment_then_mtime() -> None:
    named = PurePath("20250524_103000.WAV")
    other = PurePath("field.wav")
    assert start_time(named, COMMENT, 0.0, 60.0).origin == "name"
    # a recorder set to UTC+1 names its files in local time: the comment says so
    local = PurePath("20250524_113000.WAV")
    assert start_time(local, COMMENT.replace("(UTC)", "(UTC+1)"), 0.0, 1.0).start == T
    assert start_time(other, COMMENT, 0.0, 60.0).start == start_time(named, None, 0.0, 0.0).start
    assert start_time(other, COMMENT, 0.0, 60.0).origin == "comment"
    by_mtime = start_time(other, None, T + 60.0, 60.0)
    assert (by_mtime.start, by_mtime.origin) == (T, "mtime")
    with pytest.raises(ValueError, match="no usable start time"):
        start_time(other, None, 1000.0, 1.0)


def test_recording_suffixes() -> None:
    assert is_recording(PurePath("a.WAV")) and is_recording(PurePath("b.flac"))
    assert not is_recording(PurePath("c.mp3")) and not is_recording(PurePath(".d.wav"))


def test_triggered_recordings_are_recognised() -> None:
    assert is_triggered(PurePath("20250524_103000T.WAV"), None)
    threshold = COMMENT + " Amplitude threshold was 0.1% with 2s minimum trigger duration."
    assert is_triggered(PurePath("renamed.wav"), threshold)
    assert not is_triggered(PurePath("20250524_103000.WAV"), COMMENT)
    assert not is_triggered(PurePath("TEST.WAV"), None)
