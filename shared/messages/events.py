"""`{prefix}/{device}/events`: noise events linked to their sources. Owned by levels."""

from __future__ import annotations

from pydantic import Field

from shared.messages.common import Decibel
from shared.messages.labels import LabelScore
from shared.messages.window import WindowMessage


class NoiseEvent(WindowMessage):
    """`{prefix}/{device}/events`: LAeq stayed above the device's threshold for long enough."""

    LEAF = "events"

    threshold_db: Decibel = Field(description="Threshold that was exceeded, dB(A)")
    laeq_db: Decibel = Field(description="LAeq over the event, dB(A)")
    lamax_db: Decibel = Field(description="Maximum level during the event, dB(A)")
    classes: list[LabelScore] = Field(
        default_factory=list,
        max_length=20,
        description="Dominant sound classes reported by inference during the event",
    )
