"""`soundscape notify`: noise events and troubled nodes, sent through Apprise.

Subscribes to every device's `events` and every node's retained `status`; what to send is
decided by core.py (quiet periods, first-seen states), and sender.py delivers it from worker
threads with retries, so neither a slow target nor a dead one holds up anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from services.notify.core import NotifyCore
from services.notify.sender import Policy, Sender
from services.notify.settings import NotifySettings
from shared.devices import DeviceRegistry
from shared.errors import ConfigError, MessageError
from shared.messages import NoiseEvent, Status
from shared.metrics import ServiceMetrics
from shared.mqtt import Incoming, MqttBus, Subscription
from shared.runtime import serve, setup_logging
from shared.settings import MqttSettings, RegistrySettings

log = logging.getLogger(__name__)


class NotifyService:
    """The subscriptions, the decisions and the sender."""

    def __init__(
        self, settings: NotifySettings, mqtt: MqttSettings, registry: DeviceRegistry
    ) -> None:
        self.prefix = mqtt.topic_prefix
        self.node = settings.node_id
        self.core = NotifyCore(registry, settings.quiet_seconds, settings.events, settings.statuses)
        self.metrics = ServiceMetrics("notify", settings.node_id)
        timing = self.metrics.histogram("soundscape_notify_send_seconds").observe
        policy = Policy(
            settings.queue_size, settings.retries, settings.retry_min, settings.retry_max
        )
        self.sender = Sender(settings.targets(), policy, timing)
        self.metrics.queue("notifications", self.sender.depth)
        self.rejected = 0
        self.bus = MqttBus(
            mqtt,
            node=settings.node_id,
            service="notify",
            subscriptions=[
                Subscription(NoiseEvent.subscription(self.prefix), 1),
                Subscription(Status.subscription(self.prefix), 1),
            ],
            handler=self.handle,
            counters=self.counters,
        )

    def counters(self) -> dict[str, int]:
        """Counters for the retained status: decisions, deliveries, rejections."""
        out = {**self.core.stats, **self.sender.counters()}
        out["rejected"] = self.rejected
        out["targets"] = len(self.sender.targets)
        return out

    async def handle(self, msg: Incoming) -> None:
        """Decide about one event or status; hand what is to be sent to the sender."""
        if not msg.payload:  # a retained status being cleared
            return
        try:
            if msg.topic.endswith("/" + NoiseEvent.LEAF):
                note = self.core.on_event(
                    NoiseEvent.from_mqtt(self.prefix, msg.topic, msg.payload, msg.content_type)
                )
            else:
                status = Status.from_mqtt(self.prefix, msg.topic, msg.payload, msg.content_type)
                if status.device == self.node:  # its own `offline` on the way out
                    return
                note = self.core.on_status(status)
        except MessageError as exc:
            self.rejected += 1
            log.warning("rejected message on %s: %s", msg.topic, exc)
            return
        if note is not None:
            log.info("notifying: %s", note.title)
            self.sender.submit(note)

    async def run(self) -> None:
        """Serve until SIGINT/SIGTERM; queued notifications get a few seconds at the end."""
        self.sender.start()
        try:
            # No worker of its own: everything happens in the handler, until a signal.
            await serve(self.bus, _forever(), metrics=self.metrics)
        finally:
            await asyncio.to_thread(self.sender.stop)


async def _forever() -> None:
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point of `soundscape notify`."""
    parser = argparse.ArgumentParser(
        prog="soundscape notify",
        description="Notifications through Apprise for noise events and nodes going offline "
        "or degraded. Settings: SOUNDSCAPE_NOTIFY_* (docs/integrations.md).",
    )
    parser.add_argument("--devices-file", type=Path, help="TOML device registry (names)")
    parser.add_argument("--node-id", help="node id of the retained status")
    args = parser.parse_args(argv)
    overrides = {"node_id": args.node_id} if args.node_id else {}
    try:
        settings = NotifySettings(**overrides)
        mqtt = MqttSettings()
        registry = DeviceRegistry.load(args.devices_file or RegistrySettings().devices_file)
    except (ValidationError, ConfigError) as exc:
        print(f"soundscape notify: {exc}", file=sys.stderr)
        return 2
    if not settings.targets():
        print("soundscape notify: set SOUNDSCAPE_NOTIFY_URLS (Apprise URLs)", file=sys.stderr)
        return 2
    setup_logging()

    async def _run() -> None:
        await NotifyService(settings, mqtt, registry).run()

    try:
        asyncio.run(_run())
    except ConfigError as exc:
        print(f"soundscape notify: {exc}", file=sys.stderr)
        return 2
    return 0
