"""The key that names one analysis window of one device, carried by every result."""

from __future__ import annotations

from pydantic import Field

from shared.messages.base import Message

#: Latest start time accepted: 2100-01-01T00:00:00Z; earliest: 2000-01-01T00:00:00Z.
MAX_EPOCH = 4_102_444_800.0
MIN_EPOCH = 946_684_800.0
#: Largest sequence number (a PostgreSQL bigint).
MAX_SEQ = 2**63 - 1


class WindowMessage(Message):
    """A message about one window of audio: (device, start, seq) identifies it across restarts."""

    LEAF = "window"

    seq: int = Field(
        ge=0, le=MAX_SEQ, description="Sequence number of the first chunk in the window"
    )
    start: float = Field(
        ge=MIN_EPOCH, le=MAX_EPOCH, description="Start of the window, Unix time in seconds (UTC)"
    )
    duration: float = Field(gt=0, le=3600, description="Length of the window in seconds")

    @property
    def end(self) -> float:
        """End of the window, Unix time in seconds."""
        return self.start + self.duration

    @property
    def window_key(self) -> tuple[str, float, int]:
        """(device, start, seq): the idempotency key of this window's results."""
        return (self.device, self.start, self.seq)
