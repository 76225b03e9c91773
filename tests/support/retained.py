"""Clear the retained messages a test caused, so the shared broker keeps none of them.

tests/conftest.py does this after every test that used a topic prefix on a broker; the
helpers here are for tests that must clear earlier (e.g. before counting what is retained).
"""

from __future__ import annotations

import threading
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
    """Publish an empty retained payload on each node's status topic."""
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


def clear_retained(port: int, prefix: str, host: str = "127.0.0.1", wait_s: float = 10.0) -> int:
    """Publish an empty retained payload on every retained topic under `prefix`; how many.

    The broker sends a subscription's retained messages before anything published after the
    SUBACK, so a marker published then and received back means every retained one is in."""
    topics: set[str] = set()
    marker = f"{prefix}/clear-{uuid.uuid4().hex[:12]}"
    done = threading.Event()
    client = _client()

    def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == marker:
            done.set()
        elif msg.retain and msg.payload:
            topics.add(msg.topic)

    client.on_message = on_message
    client.on_subscribe = lambda c, *a: c.publish(marker, b"", qos=1)
    client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/#", qos=1)
    client.connect(host, port)
    client.loop_start()
    try:
        if not done.wait(wait_s):
            raise TimeoutError(f"could not list the retained messages under {prefix}")
        for topic in sorted(topics):
            client.publish(topic, b"", qos=1, retain=True).wait_for_publish(wait_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return len(topics)
