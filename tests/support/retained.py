"""Clearing the retained statuses a test caused, so the shared broker keeps none of them."""

from __future__ import annotations

from collections.abc import Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from shared.messages import Status


def clear_statuses(port: int, prefix: str, nodes: Iterable[str]) -> None:
    """Publish an empty retained payload on each node's status topic (from a client that
    leaves no status of its own)."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
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
