"""Home Assistant MQTT discovery: what to announce, and each device's JSON state. No I/O.

For every device of the registry, one Home Assistant device with these entities, each read
from the device's retained `HomeAssistantState` (`{prefix}/{device}/homeassistant`, JSON):

    sensor        laeq          LAeq of the latest summary interval, dB(A)
    sensor        lafmax        LAFmax of the latest summary interval, dB(A)
    sensor        leq           Leq (Z) of the latest chunk, dB
    sensor        top_class     highest-scoring sound class of the latest labels
    sensor        top_score     its score, 0..1
    sensor        status        the device's retained status (diagnostic)
    binary_sensor speech        speech present in the latest labels
    binary_sensor noise_event   the latest chunk is above the noise threshold; attributes:
                                the latest finished event, with its sound classes

Configs are retained on `{discovery}/{component}/{node}/{object}/config`, where `node` is
`{prefix}_{device}` reduced to [A-Za-z0-9_-]. Any config under our node names that the
registry no longer asks for (a removed device, discovery turned off) is cleared with an
empty retained payload when the broker hands it to us, so nothing needs remembering.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from shared.devices import Device, DeviceRegistry
from shared.messages import (
    EventSummary,
    HomeAssistantState,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    NoiseEvent,
    Status,
)

#: Object id -> (component, fields of its config beside the common ones).
ENTITIES: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "laeq": (
        "sensor",
        {
            "name": "LAeq",
            "device_class": "sound_pressure",
            "state_class": "measurement",
            "unit_of_measurement": "dB",
            "value_template": "{{ value_json.laeq_db }}",
        },
    ),
    "lafmax": (
        "sensor",
        {
            "name": "LAFmax",
            "device_class": "sound_pressure",
            "state_class": "measurement",
            "unit_of_measurement": "dB",
            "value_template": "{{ value_json.lafmax_db }}",
        },
    ),
    "leq": (
        "sensor",
        {
            "name": "Leq (last chunk)",
            "device_class": "sound_pressure",
            "state_class": "measurement",
            "unit_of_measurement": "dB",
            "value_template": "{{ value_json.leq_db }}",
        },
    ),
    "top_class": (
        "sensor",
        {
            "name": "Top sound class",
            "icon": "mdi:waveform",
            "value_template": "{{ value_json.top_label }}",
        },
    ),
    "top_score": (
        "sensor",
        {
            "name": "Top sound class score",
            "state_class": "measurement",
            "value_template": "{{ value_json.top_score }}",
        },
    ),
    "status": (
        "sensor",
        {
            "name": "Status",
            "entity_category": "diagnostic",
            "value_template": "{{ value_json.status }}",
        },
    ),
    "speech": (
        "binary_sensor",
        {
            "name": "Speech",
            "device_class": "sound",
            "value_template": "{{ 'ON' if value_json.speech_present else 'OFF' }}",
        },
    ),
    "noise_event": (
        "binary_sensor",
        {
            "name": "Noise event",
            "device_class": "sound",
            "value_template": "{{ 'ON' if value_json.noise_event else 'OFF' }}",
            "json_attributes_template": "{{ (value_json.last_event or {}) | tojson }}",
        },
    ),
}

_NOT_NODE = re.compile(r"[^A-Za-z0-9_-]")


def node_prefix(topic_prefix: str) -> str:
    """The start of every node id of this deployment (its topic prefix, reduced)."""
    return _NOT_NODE.sub("_", topic_prefix) + "_"


def node_id(topic_prefix: str, device: str) -> str:
    """The discovery node id of `device`: `{prefix}_{device}`, reduced to [A-Za-z0-9_-]."""
    return node_prefix(topic_prefix) + _NOT_NODE.sub("_", device)


@dataclass
class DeviceState:
    """What is known of one device, folded from its results."""

    status: str | None = None
    laeq_db: float | None = None
    lafmax_db: float | None = None
    leq_db: float | None = None
    chunk_laeq_db: float | None = None
    top_label: str | None = None
    top_score: float | None = None
    speech_present: bool | None = None
    noise_event: bool = False
    last_event: EventSummary | None = None


@dataclass
class Discovery:
    """Configs and states for the registry's devices."""

    topic_prefix: str
    discovery_prefix: str
    registry: DeviceRegistry
    enabled: bool = True
    states: dict[str, DeviceState] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    _expected: frozenset[str] = field(default=frozenset(), init=False)

    def __post_init__(self) -> None:
        self._expected = frozenset(self.all_configs())

    # --- configs ----------------------------------------------------------------------------
    def config_topic(self, component: str, device: str, object_id: str) -> str:
        """Where one entity's config is retained."""
        node = node_id(self.topic_prefix, device)
        return f"{self.discovery_prefix}/{component}/{node}/{object_id}/config"

    def configs(self, device: Device) -> dict[str, bytes]:
        """Config topic -> JSON payload of every entity of `device`."""
        node = node_id(self.topic_prefix, device.id)
        state = HomeAssistantState.topic_for(self.topic_prefix, device.id)
        block = {
            "identifiers": [node],
            "name": device.name or device.id,
            "manufacturer": "soundscape",
            "model": device.model,
        }
        out = {}
        for object_id, (component, extra) in ENTITIES.items():
            payload = {
                **extra,
                "unique_id": f"{node}_{object_id}",
                "state_topic": state,
                "availability": [
                    {"topic": state, "value_template": "{{ value_json.availability }}"}
                ],
                "device": block,
                "origin": {"name": "soundscape"},
                "qos": 1,
            }
            if "json_attributes_template" in extra:
                payload["json_attributes_topic"] = state
            topic = self.config_topic(component, device.id, object_id)
            out[topic] = json.dumps(payload, sort_keys=True).encode()
        return out

    def all_configs(self) -> dict[str, bytes]:
        """Every config the registry asks for (none when discovery is off)."""
        if not self.enabled:
            return {}
        out: dict[str, bytes] = {}
        for device in self.registry.devices.values():
            out.update(self.configs(device))
        return out

    def stale_config(self, topic: str, payload: bytes) -> bool:
        """True when `topic` is a non-empty config of ours the registry no longer asks for."""
        if not payload:
            return False
        levels = topic.split("/")
        head = self.discovery_prefix.split("/")
        if levels[: len(head)] != head or len(levels) != len(head) + 4 or levels[-1] != "config":
            return False
        if not levels[len(head) + 1].startswith(node_prefix(self.topic_prefix)):
            return False
        return topic not in self._expected

    def stale_state(self, device: str, payload: bytes) -> bool:
        """True when a retained state of a device the registry does not list is on the broker."""
        return bool(payload) and device not in self.registry.devices

    def replace_registry(self, registry: DeviceRegistry) -> list[str]:
        """Use a new registry; the config topics to clear (devices or entities gone)."""
        before = self._expected
        self.registry = registry
        self._expected = frozenset(self.all_configs())
        for device in list(self.states):
            if device not in registry.devices:
                del self.states[device]
                self.dirty.discard(device)
        self.dirty.update(registry.devices)
        return sorted(before - self._expected)

    # --- states -----------------------------------------------------------------------------
    def _state(self, device: str) -> DeviceState | None:
        if device not in self.registry.devices:
            return None
        self.dirty.add(device)
        return self.states.setdefault(device, DeviceState())

    def on_status(self, msg: Status) -> None:
        """A node's retained status: the device's availability when the node is a device."""
        st = self._state(msg.device)
        if st is not None:
            st.status = msg.state

    def on_levels(self, msg: LevelsResult) -> None:
        """One chunk's levels: Leq, and whether a noise event is going on."""
        st = self._state(msg.device)
        if st is None:
            return
        st.leq_db = msg.leq_db
        st.chunk_laeq_db = msg.laeq_db
        level = msg.laeq_db if msg.laeq_db is not None else msg.leq_db
        st.noise_event = level > self.registry.devices[msg.device].noise_threshold_db

    def on_summary(self, msg: LevelsSummary) -> None:
        """An interval's statistics: LAeq and LAFmax."""
        st = self._state(msg.device)
        if st is not None:
            st.laeq_db = msg.laeq_db
            st.lafmax_db = msg.lamax_db

    def on_labels(self, msg: LabelsResult) -> None:
        """A window's labels: the top class and speech."""
        st = self._state(msg.device)
        if st is None:
            return
        top = max(msg.labels, key=lambda item: item.score)
        st.top_label, st.top_score = top.label, top.score
        st.speech_present = msg.speech_present

    def on_event(self, msg: NoiseEvent) -> None:
        """A finished noise event: the noise-event entity's attributes."""
        st = self._state(msg.device)
        if st is not None:
            st.last_event = EventSummary(
                start=msg.start,
                duration=msg.duration,
                laeq_db=msg.laeq_db,
                lamax_db=msg.lamax_db,
                classes=sorted(msg.classes, key=lambda item: -item.score),
            )

    def take_states(self, now: float) -> list[HomeAssistantState]:
        """The state messages of the devices that changed since the last call."""
        out = []
        for device in sorted(self.dirty):
            dev = self.registry.devices.get(device)
            if dev is None:
                continue
            st = self.states.setdefault(device, DeviceState())
            out.append(
                HomeAssistantState(
                    device=device,
                    time=now,
                    availability="online" if st.status in ("online", "degraded") else "offline",
                    status=st.status,  # type: ignore[arg-type]
                    laeq_db=st.laeq_db,
                    lafmax_db=st.lafmax_db,
                    leq_db=st.leq_db,
                    chunk_laeq_db=st.chunk_laeq_db,
                    top_label=st.top_label,
                    top_score=st.top_score,
                    speech_present=st.speech_present,
                    noise_event=st.noise_event,
                    threshold_db=dev.noise_threshold_db,
                    last_event=st.last_event,
                )
            )
        self.dirty.clear()
        return out
