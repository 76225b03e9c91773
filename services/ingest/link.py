"""The broker link of ingest: paho-mqtt with manual acknowledgements.

Why paho and not the shared aiomqtt bus: aiomqtt acknowledges QoS 1 messages before the
application sees them, and ingest must acknowledge a result only once it is in the durable
spool. paho runs its own network thread; this adapter hands every delivery to a callback
(which must not block: the service queues it for its asyncio loop) and sends the PUBACK later,
from whichever thread calls `ack`.

The session is persistent: a fixed client id, clean start off and a session expiry longer than
any expected outage, so the broker queues results while ingest is down and redelivers
unacknowledged ones when it returns. An acknowledgement belongs to the connection the message
came on: after a reconnect the broker resends what was not acknowledged (with the same packet
ids, which it may reuse for other messages once acknowledged), so acks of deliveries from an
earlier connection are dropped; the redelivered copies are spooled again (the spool ignores
duplicates) and acknowledged then.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from shared.messages import MSGPACK, Status
from shared.settings import MqttSettings
from shared.tls import client_tls_context

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One received message and what is needed to acknowledge it."""

    topic: str
    payload: bytes
    content_type: str | None
    mid: int
    qos: int
    connection: int


class Link:
    """A persistent-session MQTT 5 subscriber with manual acks and a retained status."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        node: str,
        topics: Sequence[str],
        session_expiry: int,
        receive_maximum: int,
        on_delivery: Callable[[Delivery], None],
        status: Callable[[str], Status],
    ) -> None:
        self.settings = settings
        self.node = node
        self.topics = list(topics)
        self._on_delivery = on_delivery
        self._status = status
        self._lock = threading.Lock()
        self._connection = 0
        self._connected = False
        #: Deliveries that could not be handed over (logged, acknowledged and dropped).
        self.receive_errors = 0
        #: Set while connected with the subscriptions in place.
        self.connected = threading.Event()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.enable_logger(logging.getLogger("paho.mqtt.ingest"))
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        tls = client_tls_context(settings)
        if tls is not None:
            client.tls_set_context(tls)
        offline = status("offline")
        client.will_set(
            offline.topic(settings.topic_prefix),
            offline.encode(),
            qos=1,
            retain=True,
            properties=_content_type(PacketTypes.WILLMESSAGE),
        )
        # paho takes whole seconds; it doubles the delay up to the maximum.
        client.reconnect_delay_set(
            max(1, round(settings.reconnect_min)), max(1, round(settings.reconnect_max))
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._connect_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        self._connect_props.SessionExpiryInterval = session_expiry
        self._connect_props.ReceiveMaximum = receive_maximum
        self._client = client

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in paho's network thread; it reconnects by itself until `stop`."""
        self._client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive,
            clean_start=False,
            properties=self._connect_props,
        )
        self._client.loop_start()

    def stop(self, offline: Status, wait_s: float = 5.0) -> None:
        """Publish `offline` (a clean disconnect suppresses the will), then disconnect."""
        if self.connected.is_set():
            info = self.publish_status(offline)
            deadline = time.monotonic() + wait_s
            while not info.is_published() and time.monotonic() < deadline:
                time.sleep(0.02)
        self._client.disconnect()
        self._client.loop_stop()

    # --- messages ---------------------------------------------------------------------------
    def ack(self, delivery: Delivery) -> bool:
        """Acknowledge a spooled delivery; False when its connection is gone (it comes again)."""
        if delivery.qos == 0:
            return True
        with self._lock:
            if not self._connected or delivery.connection != self._connection:
                return False
            self._client.ack(delivery.mid, delivery.qos)
            return True

    def publish_status(self, status: Status) -> mqtt.MQTTMessageInfo:
        """Publish a retained status (queued by paho while disconnected)."""
        return self._client.publish(
            status.topic(self.settings.topic_prefix),
            status.encode(),
            qos=1,
            retain=True,
            properties=_content_type(PacketTypes.PUBLISH),
        )

    # --- paho callbacks (network thread) ----------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("broker %s:%s refused ingest: %s", *self._where(), reason)
            return
        with self._lock:
            self._connection += 1
            self._connected = True
        log.info("connected to %s:%s (session present: %s)", *self._where(), flags.session_present)
        client.subscribe([(t, SubscribeOptions(qos=1)) for t in self.topics])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any], props: Any
    ) -> None:
        # Online only once the broker has the subscriptions: what is published from now on
        # reaches ingest (and, with the session, whatever is published while it is away).
        for topic, reason in zip(self.topics, reasons, strict=False):
            if reason.is_failure:
                log.error("broker refused the subscription %s: %s", topic, reason)
        self.publish_status(self._status("online"))
        self.connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        with self._lock:
            self._connection += 1
            self._connected = False
        self.connected.clear()
        if reason.is_failure:
            log.warning("lost the broker %s:%s (%s); reconnecting", *self._where(), reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            ctype = getattr(message.properties, "ContentType", None)
            try:
                topic = message.topic
            except UnicodeDecodeError:
                topic = "<topic that is not UTF-8>"  # rejected (and acknowledged) downstream
            self._on_delivery(
                Delivery(
                    topic,
                    bytes(message.payload),
                    ctype if isinstance(ctype, str) else None,
                    message.mid,
                    message.qos,
                    self._connection,
                )
            )
        except Exception as exc:
            # An exception here would end paho's network thread (ingest would hear nothing
            # more); unacknowledged, the message would come back after every reconnect.
            self.receive_errors += 1
            log.error(
                "could not hand over a delivery (%d so far): %s: %s; acknowledged and dropped",
                self.receive_errors,
                type(exc).__name__,
                exc,
                exc_info=self.receive_errors == 1,
            )
            if message.qos:
                client.ack(message.mid, message.qos)

    def _where(self) -> tuple[str, int]:
        return self.settings.host, self.settings.port


def _content_type(packet_type: int) -> Properties:
    props = Properties(packet_type)  # type: ignore[no-untyped-call]
    props.ContentType = MSGPACK
    return props
