"""`{prefix}/{node}/status`: retained health of a device or service (also its last will)."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import Field

from shared.messages.base import DeviceId, Message

#: Most counters one status carries; a counter's name is 1-64 plain ASCII characters.
MAX_COUNTERS = 256
CounterName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/-]{1,64}$")]
#: A counter's value: a PostgreSQL bigint (a level such as spool_depth may be -1).
CounterValue = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class Status(Message):
    """Online/offline and counters. `device` is the sensor id, or the service's node id."""

    LEAF = "status"
    QOS = 1
    RETAIN = True
    MAX_PAYLOAD_BYTES = 32 * 1024
    MAX_STR_BYTES = 2048  # detail: 500 characters of UTF-8
    MAX_ITEMS = MAX_COUNTERS

    service: DeviceId = Field(description="Which service reports: capture, inference, ...")
    state: Literal["online", "offline", "degraded"] = Field(description="Health in one word")
    time: float = Field(default_factory=time.time, description="When this status was made, Unix s")
    detail: str | None = Field(None, max_length=500, description="Why degraded, in words")
    counters: dict[CounterName, CounterValue] = Field(
        default_factory=dict,
        max_length=MAX_COUNTERS,
        description="Monotonic counters: chunks, gaps, rejected, dropped...",
    )
