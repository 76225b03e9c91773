"""A paho subscriber for tests: every message on some filters, and the latest per topic."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Watcher:
    """Subscribed to `filters` until `close()`; `latest[topic]` is the last payload seen."""

    def __init__(self, port: int, filters: Iterable[str], host: str = "127.0.0.1") -> None:
        self.filters = list(filters)
        self.lock = threading.Lock()
        self.history: list[tuple[str, bytes]] = []
        self.latest: dict[str, bytes] = {}
        self.ready = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"watch-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._message
        self.client.on_subscribe = lambda *_args: self.ready.set()
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe([(f, 1) for f in self.filters])
        if not self.ready.wait(10):
            raise TimeoutError("no SUBACK")

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.history.append((msg.topic, bytes(msg.payload)))
            self.latest[msg.topic] = bytes(msg.payload)

    def snapshot(self) -> dict[str, bytes]:
        """The latest payload of every topic seen (empty ones included)."""
        with self.lock:
            return dict(self.latest)

    def seen(self) -> list[tuple[str, bytes]]:
        """Every message so far, in order."""
        with self.lock:
            return list(self.history)

    def forget(self) -> None:
        """Start the history afresh (latest payloads stay)."""
        with self.lock:
            self.history.clear()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish and wait for the PUBACK."""
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
