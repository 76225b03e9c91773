"""Device-affine sharding: which of k workers owns a device (pure).

A stage that keeps per-device state (levels: Fast weighting, intervals, noise events) cannot
share its audio through an MQTT shared subscription: the broker would hand one device's
chunks to several workers. Instead every worker subscribes to every device and keeps only
the devices of its shard, decided from the topic's device level before the payload is
decoded, so a foreign chunk costs a string hash and nothing more:

    shard_of(device, k) = BLAKE2b-64(device UTF-8) mod k

The hash is keyed by nothing and salted by nothing (unlike Python's `hash()`), so every
worker, on every machine and after every restart, agrees on the owner; BLAKE2b (not CRC32,
which is linear and skews on ids that differ only in a counter) spreads ids such as
`sim-0001`, `sim-0002`... evenly. Changing k moves devices between workers: their state starts
afresh on the new owner, as after a restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache


@lru_cache(maxsize=65_536)
def device_hash(device: str) -> int:
    """A stable 64-bit hash of a device id (the same on every machine and every run)."""
    digest = hashlib.blake2b(device.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(device: str, shards: int) -> int:
    """The shard, 0 .. shards-1, that owns `device`."""
    if shards < 1:
        raise ValueError("the shard count must be at least 1")
    return device_hash(device) % shards


def device_level(topic: str, prefix: str) -> str | None:
    """The `{device}` level of `{prefix}/{device}/{leaf}`, unchecked; None when `topic` is not
    one level below `prefix`. (The message class still validates the topic when decoding.)"""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    device, sep, leaf = topic[len(head) :].partition("/")
    if not sep or not device or "/" in leaf:
        return None
    return device


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count`: the devices one worker of a per-device stage owns."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count}: needs 0 <= index < count")

    @property
    def whole(self) -> bool:
        """True when this worker owns every device (one shard)."""
        return self.count == 1

    def owns(self, device: str) -> bool:
        """Whether `device` belongs to this shard."""
        return self.whole or shard_of(device, self.count) == self.index

    def owns_topic(self, topic: str, prefix: str) -> bool:
        """Whether the device of `topic` belongs to this shard. A topic without a device
        level is kept (the message class rejects it and counts it)."""
        if self.whole:
            return True
        device = device_level(topic, prefix)
        return device is None or shard_of(device, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
