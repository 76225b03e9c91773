"""`{prefix}/{device}/events`: noise events linked to their sources. Owned by levels."""

from __future__ import annotations

from pydantic import Field

from shared.messages.common import Decibel
from shared.messages.labels import LabelScore
from shared.messages.window import WindowMessage

#: Most sound classes one noise event names.
MAX_EVENT_CLASSES = 20


class NoiseEvent(WindowMessage):
    """`{prefix}/{device}/events`: LAeq stayed above the device's threshold for long enough."""

    LEAF = "events"
    MAX_PAYLOAD_BYTES = 32 * 1024
    MAX_CONTAINERS = MAX_EVENT_CLASSES + 2

    threshold_db: Decibel = Field(description="Threshold that was exceeded, dB(A)")
    laeq_db: Decibel = Field(description="LAeq over the event, dB(A)")
    lamax_db: Decibel = Field(description="Maximum level during the event, dB(A)")
    classes: list[LabelScore] = Field(
        default_factory=list,
        max_length=MAX_EVENT_CLASSES,
        description="Dominant sound classes reported by inference during the event",
    )
