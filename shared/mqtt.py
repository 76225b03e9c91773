"""The MQTT adapter every asyncio service uses: one reconnecting MQTT 5 connection.

- reconnect loop with exponential backoff and jitter;
- a retained last will `offline` on the node's status topic, `online` after connecting and
  republished with the service's counters every `status_interval`;
- an outbox: publishers never touch the client, so a message published while the link is down
  waits (bounded; when full the oldest is dropped and counted) and goes out after reconnecting;
- one windowed sender: up to `publish_window` messages in flight at once (capped by the
  broker's receive maximum), each kept until its PUBACK and sent again, in order, after a
  reconnect (see `shared.publishing`). aiomqtt's QoS 1 publish returns only at the PUBACK:
  awaiting each in turn would send one message per round trip.

aiomqtt acknowledges QoS 1 messages before the handler runs: services that must store a message
before acknowledging it (ingest) use paho-mqtt with manual acks instead (see ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from shared import mqtt_properties
from shared.messages import JSON, MSGPACK, Message, Status
from shared.outbox import Outbox
from shared.publishing import DurableLane, Lane, MemoryLane, Outgoing
from shared.settings import MqttSettings
from shared.tls import client_tls_context

log = logging.getLogger(__name__)

# Received packets' MQTT 5 properties decoded without paho's per-packet tables.
mqtt_properties.install()

#: Longest `detail` text a status carries (the Status message's limit).
MAX_DETAIL = 500
#: What the MQTT 5 spec lets a broker that names no receive maximum take.
NO_RECEIVE_MAXIMUM = 65_535
#: A full outbox logs its first drop, then one warning per this many.
DROP_LOG_EVERY = 1000


@dataclass(frozen=True, slots=True)
class Incoming:
    """A received message, reduced to what handlers need."""

    topic: str
    payload: bytes
    content_type: str | None = None


__all__ = ["Handler", "Incoming", "MqttBus", "Outgoing", "Subscription", "backoff_delays"]


Handler = Callable[[Incoming], Awaitable[None]]
CountersFn = Callable[[], dict[str, int]]


@dataclass
class Subscription:
    """A topic filter and its QoS."""

    topic: str
    qos: int = 0


class _Client(aiomqtt.Client):
    """aiomqtt's client, remembering the receive maximum the broker's CONNACK names (aiomqtt
    and paho drop it; MQTT 5 has a broker disconnect a client with more unacknowledged QoS 1
    messages), telling of PUBACKs that refuse a message (aiomqtt's publish returns as if it
    were accepted), and handing messages to paho without an awaitable per message
    (`send_nowait`; `on_published` then names each one paho wrote (QoS 0) or the broker
    acknowledged (QoS 1))."""

    receive_maximum: int = NO_RECEIVE_MAXIMUM
    on_refused: Callable[[ReasonCode], None] | None = None
    on_published: Callable[[int], None] | None = None

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        value = getattr(properties, "ReceiveMaximum", None)
        if isinstance(value, int) and value > 0:
            self.receive_maximum = value
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        if self.on_refused is not None and reason_code.is_failure:
            self.on_refused(reason_code)
        if self.on_published is not None:
            self.on_published(mid)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    def send_nowait(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties | None
    ) -> paho.MQTTMessageInfo:
        """Queue a message in paho (written from the event loop as the socket allows); raise
        `MqttCodeError` when paho refuses it (no connection). aiomqtt's `publish` would wait
        for it with a task, an event and a timeout of its own, per message."""
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        return info


class _PackedProperties(Properties):
    """PUBLISH properties naming a content type, packed once: paho packs a message's
    properties again for every message, walking every property name MQTT 5 has."""

    def __init__(self, content_type: str) -> None:
        super().__init__(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        self.ContentType = content_type
        object.__setattr__(self, "_packed", bytes(super().pack()))  # type: ignore[no-untyped-call]

    def pack(self) -> bytes:
        packed: bytes = object.__getattribute__(self, "_packed")
        return packed


def _properties(content_type: str | None) -> Properties | None:
    """The PUBLISH properties naming `content_type`, built and packed once per content type
    (paho only reads them when it packs a message)."""
    if not content_type:
        return None
    props = _PROPERTIES.get(content_type)
    if props is None:
        props = _PROPERTIES[content_type] = _PackedProperties(content_type)
    return props


_PROPERTIES: dict[str, Properties] = {}


def backoff_delays(lo: float, hi: float) -> Iterator[float]:
    """Exponential backoff from `lo` to `hi` seconds, with full jitter on the upper half."""
    delay = lo
    while True:
        yield delay / 2 + random.uniform(0, delay / 2)
        delay = min(hi, delay * 2)


@dataclass
class MqttBus:
    """One service's connection to the broker. Create inside the running loop; `await run()`."""

    settings: MqttSettings
    node: str
    service: str
    subscriptions: Sequence[Subscription] = ()
    handler: Handler | None = None
    counters: CountersFn | None = None
    outbox_size: int = 10_000
    #: Where QoS 1 non-retained messages (results) wait, on disk, until their PUBACK; None:
    #: in memory with the rest. Statuses and QoS 0 (audio) always wait in memory.
    durable_outbox: Outbox | None = None
    client_id: str | None = None
    clean_start: bool = True

    #: The service's own view of its health, carried by every heartbeat and reconnect.
    health_state: str = field(default="online", init=False)
    health_detail: str | None = field(default=None, init=False)
    connected: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    stats: Counter[str] = field(default_factory=Counter, init=False)
    #: Most messages in flight on the current connection (publish_window, or less where the
    #: broker's receive maximum is smaller); 0 while disconnected.
    window: int = field(default=0, init=False)
    _memory: MemoryLane = field(init=False)
    _durable: DurableLane | None = field(default=None, init=False)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _idle: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _batch: list[Outgoing] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._memory = MemoryLane(self.outbox_size)
        if self.durable_outbox is not None:
            self._durable = DurableLane(self.durable_outbox, self.settings.publish_window // 4)

    @property
    def _outbox(self) -> deque[Outgoing]:
        """Messages waiting in memory, not yet handed to the client."""
        return self._memory.queued

    @property
    def in_flight(self) -> int:
        """Messages handed to the client and not yet acknowledged (both outboxes)."""
        durable = self._durable.in_flight if self._durable is not None else 0
        return self._memory.in_flight + durable

    @property
    def prefix(self) -> str:
        """The topic prefix every topic starts with."""
        return self.settings.topic_prefix

    # --- publishing -------------------------------------------------------------------------
    def publish(self, msg: Message, content_type: str | None = None) -> None:
        """Queue a message for publishing on its own topic with its own QoS and retain flag."""
        ctype = content_type or (
            JSON if self.settings.results_format == "json" and msg.QOS else MSGPACK
        )
        self.publish_raw(
            Outgoing(
                msg.topic(self.prefix),
                msg.encode(ctype),  # type: ignore[arg-type]
                msg.QOS,
                msg.RETAIN,
                ctype,
            )
        )

    def publish_raw(self, out: Outgoing) -> None:
        """Queue bytes for a topic. A QoS 1 non-retained message goes to the durable outbox
        when there is one, committed before this returns (or at the end of a `batch`); the
        rest waits in memory. Either outbox, when full, drops its oldest (`outbox_dropped`)."""
        if self.durable_outbox is not None and out.qos and not out.retain:
            if self._batch is not None:
                self._batch.append(out)
                return
            self._store([out])
        else:
            self._keep(out)
        self._idle.clear()
        self._wakeup.set()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Results published inside the block reach the durable outbox in one commit when it
        ends (one disk sync for, say, one chunk's results instead of one per result)."""
        if self._batch is not None:  # nested: the outer block commits
            yield
            return
        self._batch = []
        try:
            yield
        finally:
            waiting, self._batch = self._batch, None
            if waiting:
                self._store(waiting)
                self._idle.clear()
                self._wakeup.set()

    def _store(self, outs: list[Outgoing]) -> None:
        assert self.durable_outbox is not None
        try:
            dropped = self.durable_outbox.put(
                [(o.topic, o.payload, o.qos, o.content_type) for o in outs]
            )
        except sqlite3.Error as exc:
            # A full or broken disk must not stop measuring: these go out from memory, and
            # are lost if the process dies before the broker has them.
            self.stats["outbox_failed"] += len(outs)
            log.error(
                "%s: cannot write the outbox %s (%s): %d results kept in memory only",
                self.service,
                self.durable_outbox.path,
                exc,
                len(outs),
            )
            for out in outs:
                self._keep(out)
            return
        if dropped:
            self._dropped(dropped, f"on disk ({self.durable_outbox.path})")

    def _keep(self, out: Outgoing) -> None:
        if self._memory.put(out):
            self._dropped(1, "in memory")

    def _dropped(self, n: int, where: str) -> None:
        before = self.stats["outbox_dropped"]
        self.stats["outbox_dropped"] += n
        if before == 0 or before // DROP_LOG_EVERY != (before + n) // DROP_LOG_EVERY:
            log.warning(
                "%s: outbox %s full: dropped the oldest, %d messages so far",
                self.service,
                where,
                before + n,
            )

    @property
    def pending(self) -> int:
        """Messages waiting in the outboxes (memory and disk), in flight or not."""
        durable = len(self._durable) if self._durable is not None else 0
        return len(self._memory) + durable

    async def drained(self, wait_s: float = 10.0) -> bool:
        """Wait until the outboxes are empty (True) or `wait_s` seconds pass (False)."""
        if self.pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._idle.wait()
        return not self.pending

    # --- status -----------------------------------------------------------------------------
    def status(self, state: str, detail: str | None = None) -> Status:
        """This node's status message with the current counters."""
        counters = dict(self.stats)
        if self.counters is not None:
            counters.update(self.counters())
        return Status(
            device=self.node,
            service=self.service,
            state=state,  # type: ignore[arg-type]
            detail=detail,
            counters=counters,
        )

    def set_status(self, state: str, detail: str | None = None) -> None:
        """Publish a status now (retained); a plain `online` carries the current health."""
        if state == "online":
            state, detail = self.health_state, self.health_detail
        self.publish(self.status(state, detail), MSGPACK)

    def set_health(self, state: str, detail: str | None = None, *, now: bool = False) -> None:
        """Record the service's health (e.g. `degraded` while a microphone is missing) and
        publish it when it changed, or at once when `now` (new counters worth showing)."""
        detail = None if detail is None else detail[:MAX_DETAIL]
        if (state, detail) == (self.health_state, self.health_detail) and not now:
            return
        self.health_state, self.health_detail = state, detail
        if self.connected.is_set():
            self.publish(self.status(state, detail), MSGPACK)

    # --- connection -------------------------------------------------------------------------
    def _client(self) -> _Client:
        s = self.settings
        offline = self.status("offline")
        will = aiomqtt.Will(offline.topic(self.prefix), offline.encode(), qos=1, retain=True)
        connect_props = None
        if not self.clean_start:
            connect_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            connect_props.SessionExpiryInterval = 7 * 24 * 3600
        return _Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will,
            keepalive=s.keepalive,
            clean_start=self.clean_start,
            properties=connect_props,
            tls_context=client_tls_context(s),
            timeout=s.ack_timeout,
            # Never paho's own queue (20 in flight by default): the bus keeps the window.
            max_inflight_messages=s.publish_window,
        )

    async def run(self) -> None:
        """Stay connected until cancelled: subscribe, publish the outbox, dispatch messages."""
        delays = backoff_delays(self.settings.reconnect_min, self.settings.reconnect_max)
        while True:
            try:
                async with self._client() as client:
                    delays = backoff_delays(
                        self.settings.reconnect_min, self.settings.reconnect_max
                    )
                    log.info(
                        "%s connected to %s:%s",
                        self.service,
                        self.settings.host,
                        self.settings.port,
                    )
                    for sub in self.subscriptions:
                        await client.subscribe(sub.topic, qos=sub.qos)
                    self.window = min(self.settings.publish_window, client.receive_maximum)
                    log.info(
                        "%s: up to %d messages in flight (broker's receive maximum %d)",
                        self.service,
                        self.window,
                        client.receive_maximum,
                    )
                    self.set_status("online")
                    self.connected.set()
                    try:
                        async with asyncio.TaskGroup() as tg:
                            tg.create_task(self._send(client))
                            tg.create_task(self._heartbeat())
                            # Always read: that is how a dropped link is noticed at once.
                            tg.create_task(self._receive(client, self.handler))
                    finally:
                        self.connected.clear()
                        self.window = 0
            except* aiomqtt.MqttError as group:
                self.stats["reconnects"] += 1
                delay = next(delays)
                log.warning(
                    "%s: broker %s:%s unreachable (%s); retrying in %.1f s",
                    self.service,
                    self.settings.host,
                    self.settings.port,
                    group.exceptions[0],
                    delay,
                )
                await asyncio.sleep(delay)

    async def _send(self, client: _Client) -> None:
        """Keep up to `window` messages in flight, oldest first (memory, then disk); forget
        each when paho wrote it (QoS 0) or at its PUBACK (QoS 1). The first failed publish
        (a broken link, `ack_timeout` without PUBACK) ends the connection; what was in flight
        goes out again first on the next.

        Each message is handed to paho directly, in order (`_Client.send_nowait`), and its
        token kept by packet id until `on_published` names it: no task per message."""
        client.on_refused = self._refused
        lanes: list[Lane] = [self._memory]
        if self._durable is not None:
            lanes.append(self._durable)
        #: packet id -> (lane, token, deadline); insertion order is send order, so the first
        #: entry has the earliest deadline.
        sent: dict[int, tuple[Lane, int, float]] = {}
        loop = asyncio.get_running_loop()
        timeout = self.settings.ack_timeout
        stats, wakeup = self.stats, self._wakeup

        def published(mid: int) -> None:
            entry = sent.pop(mid, None)
            if entry is not None:
                entry[0].acked(entry[1])
                stats["published"] += 1
                wakeup.set()

        client.on_published = published
        try:
            while True:
                wakeup.clear()
                room = self.window - len(sent)
                if room > 0:
                    deadline = loop.time() + timeout
                    for lane in lanes:
                        for token, out in lane.take(room):
                            room -= 1
                            info = client.send_nowait(
                                out.topic,
                                out.payload,
                                out.qos,
                                out.retain,
                                _properties(out.content_type),
                            )
                            if info.is_published():  # written (or acknowledged) already
                                lane.acked(token)
                                stats["published"] += 1
                            else:
                                sent[info.mid] = (lane, token, deadline)
                if not sent:
                    for lane in lanes:
                        lane.flush()
                    if not self.pending:
                        self._idle.set()
                    await wakeup.wait()
                    continue
                oldest = next(iter(sent.values()))[2]
                if oldest <= loop.time():
                    raise aiomqtt.MqttError(
                        f"no acknowledgement within {timeout:g} s ({len(sent)} in flight)"
                    )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(oldest):
                        await wakeup.wait()
        finally:
            # Cancelled or failed: nothing in flight counts as delivered any more.
            client.on_published = None
            for lane in lanes:
                lane.rewind()

    def _refused(self, reason: ReasonCode) -> None:
        # Not sent again: a refusal (not authorized, too large for the broker) would repeat.
        self.stats["publish_refused"] += 1
        n = self.stats["publish_refused"]
        if n == 1 or n % DROP_LOG_EVERY == 0:
            log.warning(
                "%s: the broker refused a message (%s); %d refused so far",
                self.service,
                reason,
                n,
            )

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.status_interval)
            self.set_status("online")

    async def _receive(self, client: aiomqtt.Client, handler: Handler | None) -> None:
        async for message in client.messages:
            if handler is None:
                continue
            topic = str(message.topic)
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                payload = b"" if payload is None else str(payload).encode()
            ctype = getattr(message.properties, "ContentType", None)
            try:
                await handler(
                    Incoming(topic, bytes(payload), ctype if isinstance(ctype, str) else None)
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # One message must never end the service: handlers reject bad input
                # themselves; anything else they raise is a bug, logged (with its traceback
                # the first time), counted and survived.
                self.stats["handler_errors"] += 1
                first = self.stats["handler_errors"] == 1
                log.error(
                    "%s: handling a message on %s failed (%d so far): %s: %s",
                    self.service,
                    topic[:200],
                    self.stats["handler_errors"],
                    type(exc).__name__,
                    str(exc)[:200],
                    exc_info=first,
                )

    async def close(self, wait_s: float = 2.0) -> None:
        """Best-effort: publish what is queued (a clean `offline` too) before shutdown; what
        the durable outbox still holds is sent at the next start."""
        self.set_status("offline")
        await self.drained(wait_s)
        if self.durable_outbox is not None and len(self.durable_outbox):
            log.info(
                "%s: %d results wait in %s for the next start",
                self.service,
                len(self.durable_outbox),
                self.durable_outbox.path,
            )
