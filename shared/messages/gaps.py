"""`{prefix}/{device}/gaps`: audio of a device that a service lost, as an interval and a cause.

Every service that loses audio says so with one of these (QoS 1, not retained), and ingest
stores it in the `gaps` table, so a gap is data (when, how long, why, where) rather than
silence in the charts or a counter in a retained status.
"""

from __future__ import annotations

from typing import Literal, Self, get_args

from pydantic import Field, model_validator

from shared.messages.base import DeviceId, Message
from shared.messages.window import MAX_EPOCH, MIN_EPOCH

#: Why audio was lost. Each is produced by exactly one place in the code (see docs/ingest.md).
GapCause = Literal[
    "capture_lost_samples",
    "capture_restart",
    "capture_stall",
    "audio_missing",
    "service_down",
    "levels_overload",
    "inference_overload",
    "inference_failed",
]
#: Every cause a GapReport may carry, in documentation order.
GAP_CAUSES: tuple[str, ...] = get_args(GapCause)


class GapReport(Message):
    """`{prefix}/{device}/gaps`: audio of `device` between `start` and `end` that `node` lost.

    `count` says how much was lost inside the interval, in the unit of the cause: samples for
    the capture causes, chunks for `audio_missing`, `service_down` and `levels_overload`,
    analysis windows for the inference causes (not set when unknown).
    """

    LEAF = "gaps"
    QOS = 1
    RETAIN = False

    start: float = Field(
        ge=MIN_EPOCH,
        le=MAX_EPOCH,
        description="Start of the lost audio, Unix time in seconds (UTC)",
    )
    end: float = Field(
        ge=MIN_EPOCH, le=MAX_EPOCH, description="End of the lost audio, Unix time in seconds (UTC)"
    )
    cause: GapCause = Field(description="Why it was lost (see docs/ingest.md, gaps table)")
    node: DeviceId = Field(
        description="Node id of the service that lost it (the device for capture)"
    )
    count: int | None = Field(
        None,
        ge=0,
        le=2**62,
        description="How much was lost in the interval: samples (capture), chunks (levels, "
        "audio_missing, service_down) or windows (inference); null when unknown",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self

    @property
    def seconds(self) -> float:
        """Length of the interval, seconds."""
        return self.end - self.start
