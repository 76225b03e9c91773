"""`{prefix}/{node}/status`: retained health of a device or service (also its last will)."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from shared.messages.base import DeviceId, Message


class Status(Message):
    """Online/offline and counters. `device` is the sensor id, or the service's node id."""

    LEAF = "status"
    QOS = 1
    RETAIN = True

    service: DeviceId = Field(description="Which service reports: capture, inference, ...")
    state: Literal["online", "offline", "degraded"] = Field(description="Health in one word")
    time: float = Field(default_factory=time.time, description="When this status was made, Unix s")
    detail: str | None = Field(None, max_length=500, description="Why degraded, in words")
    counters: dict[str, int] = Field(
        default_factory=dict, description="Monotonic counters: chunks, gaps, rejected, dropped..."
    )
