"""`soundscape homeassistant`: Home Assistant MQTT discovery for every registered device.

Reads the result topics (levels, summary, labels, events) and the retained statuses, folds
each registered device's latest values into its retained JSON state topic
(`{prefix}/{device}/homeassistant`) and, with `SOUNDSCAPE_HA_DISCOVERY=true`, retains one
discovery config per entity under `{discovery_prefix}/...` (see core.py). Configs are
announced at start, again whenever Home Assistant publishes `online` on
`{discovery_prefix}/status`, and for new devices when the registry file changes; a removed
device's configs and state are cleared.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from services.homeassistant.core import Discovery
from services.homeassistant.settings import HomeAssistantSettings
from shared.devices import DeviceRegistry
from shared.errors import ConfigError, MessageError
from shared.messages import (
    JSON,
    HomeAssistantState,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    Message,
    NoiseEvent,
    Status,
)
from shared.mqtt import Incoming, MqttBus, Outgoing, Subscription
from shared.runtime import serve, setup_logging
from shared.settings import MqttSettings, RegistrySettings

log = logging.getLogger(__name__)


class RegistryFile:
    """The registry file, read again when its size or modification time changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def changed(self) -> DeviceRegistry | None:
        """The new registry when the file changed since the last call; else None.
        Raises ConfigError when the changed file is not a valid registry."""
        stamp = self._stamp()
        if stamp == self._seen:
            return None
        self._seen = stamp
        return DeviceRegistry.load(self.path)


class HomeAssistantService:
    """The subscriptions, the state publisher and the registry watcher."""

    def __init__(
        self,
        settings: HomeAssistantSettings,
        mqtt: MqttSettings,
        registry: DeviceRegistry,
        registry_file: Path | None = None,
    ) -> None:
        self.settings = settings
        self.prefix = mqtt.topic_prefix
        self.core = Discovery(
            mqtt.topic_prefix, settings.discovery_prefix, registry, settings.discovery
        )
        self.registry_file = RegistryFile(registry_file)
        self.stats: Counter[str] = Counter()
        self.birth = f"{settings.discovery_prefix}/status"
        self._decoders: dict[str, tuple[type[Message], Callable[[Any], None]]] = {
            LevelsResult.LEAF: (LevelsResult, self.core.on_levels),
            LevelsSummary.LEAF: (LevelsSummary, self.core.on_summary),
            LabelsResult.LEAF: (LabelsResult, self.core.on_labels),
            NoiseEvent.LEAF: (NoiseEvent, self.core.on_event),
            Status.LEAF: (Status, self.core.on_status),
        }
        subs = [Subscription(c.subscription(self.prefix), 1) for c, _ in self._decoders.values()]
        subs += [
            Subscription(HomeAssistantState.subscription(self.prefix), 1),
            Subscription(self.birth, 1),
            Subscription(f"{settings.discovery_prefix}/+/+/+/config", 1),
        ]
        self.bus = MqttBus(
            mqtt,
            node=settings.node_id,
            service="homeassistant",
            subscriptions=subs,
            handler=self.handle,
            counters=self.counters,
        )

    def counters(self) -> dict[str, int]:
        """Counters for the retained status."""
        return {**self.stats, "devices": len(self.core.registry.devices)}

    # --- publishing -------------------------------------------------------------------------
    def announce(self) -> None:
        """Retain every config the registry asks for (again)."""
        for topic, payload in self.core.all_configs().items():
            self.bus.publish_raw(Outgoing(topic, payload, 1, True, JSON))
            self.stats["configs_published"] += 1

    def clear(self, topic: str) -> None:
        """Remove a retained message (an empty retained payload)."""
        self.bus.publish_raw(Outgoing(topic, b"", 1, True))

    def publish_states(self) -> None:
        """The JSON state of every device that changed."""
        for state in self.core.take_states(time.time()):
            self.bus.publish(state, JSON)
            self.stats["states_published"] += 1

    # --- incoming -----------------------------------------------------------------------------
    async def handle(self, msg: Incoming) -> None:
        """Fold one result or status in; answer Home Assistant's birth; clear stale configs."""
        topic = msg.topic
        if topic == self.birth:
            if msg.payload == b"online":
                self.stats["births"] += 1
                log.info("Home Assistant is online: announcing the devices again")
                self.announce()
            return
        if topic.endswith("/config"):
            if self.core.stale_config(topic, msg.payload):
                log.info("removing the stale discovery config %s", topic)
                self.clear(topic)
                self.stats["configs_cleared"] += 1
            return
        leaf = topic.rsplit("/", 1)[-1]
        if leaf == HomeAssistantState.LEAF:
            try:
                device = HomeAssistantState.device_of(self.prefix, topic)
            except MessageError:
                return
            if self.core.stale_state(device, msg.payload):
                self.clear(topic)
                self.stats["states_cleared"] += 1
            return
        if not msg.payload:  # a retained message being cleared
            return
        cls, fold = self._decoders[leaf]
        try:
            decoded = cls.from_mqtt(self.prefix, topic, msg.payload, msg.content_type)
        except MessageError as exc:
            self.stats["rejected"] += 1
            log.warning("rejected message on %s: %s", topic, exc)
            return
        fold(decoded)

    # --- workers ----------------------------------------------------------------------------
    async def states(self) -> None:
        """Publish changed states every `publish_interval` seconds."""
        while True:
            self.publish_states()
            await asyncio.sleep(self.settings.publish_interval)

    async def registry(self) -> None:
        """Follow the registry file: announce new devices, clear removed ones."""
        while True:
            await asyncio.sleep(self.settings.registry_interval)
            try:
                registry = self.registry_file.changed()
            except ConfigError as exc:
                self.stats["registry_errors"] += 1
                log.error("registry changed but cannot be used (keeping the old one): %s", exc)
                continue
            if registry is None:
                continue
            self.stats["registry_reloads"] += 1
            gone = set(self.core.registry.devices) - set(registry.devices)
            for topic in self.core.replace_registry(registry):
                self.clear(topic)
                self.stats["configs_cleared"] += 1
            for device in sorted(gone):
                self.clear(HomeAssistantState.topic_for(self.prefix, device))
                self.stats["states_cleared"] += 1
            log.info("registry: %d devices (%d removed)", len(registry.devices), len(gone))
            self.announce()

    async def run(self) -> None:
        """Serve until SIGINT/SIGTERM."""
        self.announce()
        await serve(self.bus, self.states(), self.registry())


def main(argv: list[str] | None = None) -> int:
    """Entry point of `soundscape homeassistant`."""
    parser = argparse.ArgumentParser(
        prog="soundscape homeassistant",
        description="Home Assistant MQTT discovery and JSON state topics for every registered "
        "device. Settings: SOUNDSCAPE_HA_* (docs/integrations.md).",
    )
    parser.add_argument("--devices-file", type=Path, help="TOML device registry")
    parser.add_argument("--discovery", action="store_true", default=None, help="announce")
    parser.add_argument("--node-id", help="node id of the retained status")
    args = parser.parse_args(argv)
    overrides = {
        k: v for k, v in (("discovery", args.discovery), ("node_id", args.node_id)) if v is not None
    }
    try:
        settings = HomeAssistantSettings(**overrides)
        mqtt = MqttSettings()
        path = args.devices_file or RegistrySettings().devices_file
        registry = DeviceRegistry.load(path)
    except (ValidationError, ConfigError) as exc:
        print(f"soundscape homeassistant: {exc}", file=sys.stderr)
        return 2
    setup_logging()
    log.info(
        "homeassistant: %d devices, discovery %s under %s",
        len(registry.devices),
        "on" if settings.discovery else "off",
        settings.discovery_prefix,
    )

    async def _run() -> None:
        await HomeAssistantService(settings, mqtt, registry, path).run()

    asyncio.run(_run())
    return 0
