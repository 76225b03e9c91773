"""Clear the retained messages a test caused, so the shared broker keeps none of them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from shared.messages import Status


def _client() -> mqtt.Client:
    return mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"clear-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5,
    )


def clear_statuses(port: int, prefix: str, nodes: Iterable[str]) -> None:
    """Publish an empty retained payload on each node's status topic (from a client that
    leaves no status of its own)."""
    client = _client()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for node in nodes:
            client.publish(
                Status.topic_for(prefix, node), b"", qos=1, retain=True
            ).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def clear_retained(port: int, prefix: str, settle_s: float = 0.5, host: str = "127.0.0.1") -> int:
    """Publish an empty retained payload on every retained topic under `prefix`; how many."""
    topics: set[str] = set()
    subscribed = threading.Event()
    client = _client()

    def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.retain and msg.payload:
            topics.add(msg.topic)

    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/#", qos=0)
    client.connect(host, port)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise TimeoutError("could not subscribe to clear retained messages")
        time.sleep(settle_s)  # retained messages arrive right after the SUBACK
        for topic in sorted(topics):
            client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    return len(topics)
