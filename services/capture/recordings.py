"""Start times of recordings: AudioMoth file names and header comments (pure).

AudioMoth names each file by the time its first sample was recorded, `YYYYMMDD_HHMMSS.WAV`
(some firmware prefixes a device id, `<ID>_YYYYMMDD_HHMMSS.WAV`, or files them in a daily
folder, `YYYYMMDD/HHMMSS.WAV`), in the time zone configured on the recorder, UTC by default.
Its WAV header carries a comment such as::

    Recorded at 10:30:00 24/05/2025 (UTC) by AudioMoth 24F319055FDF1025 at medium gain ...
    Recorded at 11:30:00 24/05/2025 (UTC+1) by AudioMoth ...

Order of preference: the file name (in the comment's time zone when the comment gives one,
else UTC), then the comment, then the file's modification time minus its duration (a file is
last modified when its recording ends).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import PurePath

from shared.messages.window import MAX_EPOCH, MIN_EPOCH

#: File suffixes replayed from a folder (case-insensitive).
AUDIO_SUFFIXES = frozenset({".wav", ".flac"})

_NAME = re.compile(r"(?:^|_)(\d{8})_(\d{6})$")
_DAY_DIR = re.compile(r"^\d{8}$")
_TIME_ONLY = re.compile(r"^(\d{6})$")
_COMMENT = re.compile(
    r"Recorded at (\d{2}):(\d{2}):(\d{2}) (\d{2})/(\d{2})/(\d{4}) "
    r"\(UTC(?:([+-])(\d{1,2})(?::(\d{2}))?)?\)"
)


@dataclass(frozen=True, slots=True)
class StartTime:
    """When a recording began, and where that was read from."""

    start: float
    """Unix seconds (UTC) of the first sample."""
    origin: str
    """'name', 'comment' or 'mtime'."""


def comment_zone(comment: str | None) -> timezone | None:
    """The UTC offset an AudioMoth comment states, or None when there is no such comment."""
    m = _COMMENT.search(comment or "")
    if not m:
        return None
    if not m[7]:
        return UTC
    minutes = int(m[8]) * 60 + int(m[9] or 0)
    return timezone(timedelta(minutes=minutes if m[7] == "+" else -minutes))


def time_from_comment(comment: str | None) -> float | None:
    """Start time from an AudioMoth `Recorded at HH:MM:SS DD/MM/YYYY (UTC...)` comment."""
    m = _COMMENT.search(comment or "")
    zone = comment_zone(comment)
    if not m or zone is None:
        return None
    try:
        when = datetime(
            int(m[6]), int(m[5]), int(m[4]), int(m[1]), int(m[2]), int(m[3]), tzinfo=zone
        )
    except ValueError:
        return None
    return when.timestamp()


def time_from_name(path: PurePath, zone: timezone = UTC) -> float | None:
    """Start time from an AudioMoth file name (`YYYYMMDD_HHMMSS`, or `YYYYMMDD/HHMMSS`)."""
    stem = path.stem
    m = _NAME.search(stem)
    if m:
        day, clock = m[1], m[2]
    else:
        t = _TIME_ONLY.match(stem)
        if not t or not _DAY_DIR.match(path.parent.name):
            return None
        day, clock = path.parent.name, t[1]
    try:
        when = datetime.strptime(day + clock, "%Y%m%d%H%M%S").replace(tzinfo=zone)
    except ValueError:
        return None
    return when.timestamp()


def _plausible(t: float | None) -> bool:
    return t is not None and MIN_EPOCH <= t <= MAX_EPOCH


def start_time(path: PurePath, comment: str | None, mtime: float, duration: float) -> StartTime:
    """The start time of a recording, by the order of preference above.

    Raises ValueError when even the modification time is outside 2000-2100.
    """
    from_name = time_from_name(path, comment_zone(comment) or UTC)
    if _plausible(from_name):
        assert from_name is not None
        return StartTime(from_name, "name")
    from_comment = time_from_comment(comment)
    if _plausible(from_comment):
        assert from_comment is not None
        return StartTime(from_comment, "comment")
    end_based = mtime - duration
    if _plausible(end_based):
        return StartTime(end_based, "mtime")
    raise ValueError(f"{path}: no usable start time (name, AudioMoth comment or mtime)")


_TRIGGERED_NAME = re.compile(r"\d{8}_\d{6}T$")


def is_triggered(path: PurePath, comment: str | None) -> bool:
    """True for an AudioMoth triggered recording (amplitude threshold or frequency trigger):
    named `YYYYMMDD_HHMMSST.WAV`, its comment names the minimum trigger duration. Such a
    file has its quiet stretches cut out (each replaced by a short marker block), so its
    samples do not follow the clock from its start time."""
    return bool(_TRIGGERED_NAME.search(path.stem)) or "minimum trigger duration" in (comment or "")


def is_recording(path: PurePath) -> bool:
    """True for the file types a folder replay picks up."""
    return path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith(".")
