"""`{prefix}/{device}/homeassistant`: one device's latest results as JSON, for Home Assistant.

The result topics are msgpack (or JSON for tools that ask for it); Home Assistant's MQTT
entities read JSON with templates. `soundscape homeassistant` folds each registered device's
results into this one small retained JSON message, which every discovered entity reads
(`value_json.laeq_db`, ...). Owned by the homeassistant service.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from shared.messages.base import Message
from shared.messages.common import Decibel, Part, Text
from shared.messages.events import MAX_EVENT_CLASSES
from shared.messages.labels import LabelScore


class EventSummary(Part):
    """The latest finished noise event of a device (from its `events` topic)."""

    start: float = Field(description="Start of the event, Unix s")
    duration: float = Field(ge=0, description="Length of the event, s")
    laeq_db: Decibel = Field(description="LAeq over the event, dB(A)")
    lamax_db: Decibel = Field(description="Maximum level during the event, dB(A)")
    classes: list[LabelScore] = Field(
        default_factory=list,
        max_length=MAX_EVENT_CLASSES,
        description="Dominant sound classes during the event, highest first",
    )


class HomeAssistantState(Message):
    """`{prefix}/{device}/homeassistant`: latest values of one device, JSON, retained."""

    LEAF = "homeassistant"
    QOS = 1
    RETAIN = True
    MAX_PAYLOAD_BYTES = 32 * 1024
    MAX_CONTAINERS = MAX_EVENT_CLASSES + 3
    MAX_DEPTH = 4

    time: float = Field(default_factory=time.time, description="When this state was made, Unix s")
    availability: Literal["online", "offline"] = Field(
        description="`online` while the device's retained status is online or degraded"
    )
    status: Literal["online", "degraded", "offline"] | None = Field(
        None, description="The device's retained status state; null: none seen"
    )
    laeq_db: Decibel | None = Field(None, description="LAeq of the latest summary interval, dB(A)")
    lafmax_db: Decibel | None = Field(
        None, description="LAFmax (maximum Fast A level) of the latest summary interval, dB(A)"
    )
    leq_db: Decibel | None = Field(None, description="Z-weighted Leq of the latest chunk, dB")
    chunk_laeq_db: Decibel | None = Field(None, description="LAeq of the latest chunk, dB(A)")
    top_label: Text | None = Field(None, description="Highest-scoring class of the latest labels")
    top_score: float | None = Field(None, ge=0, le=1, description="Score of `top_label`, 0..1")
    speech_present: bool | None = Field(
        None, description="Speech in the latest labels; null: the model cannot say"
    )
    noise_event: bool = Field(
        False,
        description="True while the latest chunk's LAeq is above the device's noise threshold",
    )
    threshold_db: Decibel = Field(description="The device's noise threshold, dB(A)")
    last_event: EventSummary | None = Field(
        None, description="The latest finished noise event; null: none since the service started"
    )
