"""The roles that vary, as Protocols. Implementations live beside the services that use them;
tests use hand-written fakes of the same Protocols."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import numpy as np

from shared.messages import LabelScore, Message


class AudioSource(Protocol):
    """Yields raw PCM blocks of any size, in order, with the wall time of the first frame."""

    rate: int
    width: int
    channels: int

    def blocks(self) -> AsyncIterator[tuple[float, bytes]]:
        """(wall time of the block's first frame, PCM bytes) for each block read."""
        ...


class Classifier(Protocol):
    """Turns windows of mono float audio into per-class scores."""

    model_id: str
    labels: Sequence[str]
    sample_rate: int

    def scores(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Sigmoid scores, shape (len(windows), len(labels)), for 1-D float32 windows."""
        ...


class TopK(Protocol):
    """Picks the labels to publish from a score vector."""

    def __call__(self, scores: np.ndarray, k: int) -> list[LabelScore]: ...


class Publisher(Protocol):
    """Something that publishes messages on their own topics (the MQTT bus, or a test fake)."""

    def publish(self, msg: Message, content_type: str | None = None) -> None: ...
