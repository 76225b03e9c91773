"""The roles that vary across services, as Protocols. Implementations live beside the services
that use them; tests use hand-written fakes of the same Protocols.

Capture's sources (`services/capture/app.py: Source`) have a protocol of their own, since they
speak in capture's pipeline events (restarts, file boundaries), not in plain PCM blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import numpy as np

from shared.messages import Message


class Classifier(Protocol):
    """Turns windows of mono float audio into per-class scores."""

    model_id: str
    labels: Sequence[str]
    sample_rate: int

    def scores(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Sigmoid scores, shape (len(windows), len(labels)), for 1-D float32 windows."""
        ...


class Publisher(Protocol):
    """Something that publishes messages on their own topics (the MQTT bus, or a test fake)."""

    def publish(self, msg: Message, content_type: str | None = None) -> None: ...

    def batch(self) -> AbstractContextManager[None]:
        """Messages published inside the block are stored durably together when it ends."""
        ...
