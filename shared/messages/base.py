"""Base class of every message: topic ownership, encoding and validation.

A message is a frozen pydantic model. Its class knows the leaf of its topic
(`{prefix}/{device}/{leaf}`), its QoS and whether it is retained; no other code
builds topic strings. Payloads are msgpack maps (binary fields as msgpack `bin`);
results can also travel as JSON, announced with the MQTT 5 content type.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar, Final, Literal, Self

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import MessageError

ContentType = Literal["application/msgpack", "application/json"]
MSGPACK: Final = "application/msgpack"
JSON: Final = "application/json"

#: Device and node ids are one MQTT topic level: no wildcards, no slashes, no spaces.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)
DeviceId = Annotated[str, Field(pattern=ID_PATTERN, description="Sensor or node id")]

#: Largest payload any service will try to decode (a 60 s chunk at 384 kHz, 32-bit, stereo fits).
MAX_PAYLOAD_BYTES = 200 * 1024 * 1024
#: Largest MQTT packet: 16 MiB of PCM plus headers (the broker's max_packet_size equals it).
MAX_PACKET_BYTES = 16 * 1024 * 1024 + 64 * 1024


def check_id(value: str, what: str = "id") -> str:
    """Return `value` if it is a valid device or node id, else raise MessageError."""
    if not _ID_RE.match(value):
        raise MessageError(f"invalid {what} {value!r}: expected 1-64 of [A-Za-z0-9_.-]")
    return value


def check_prefix(prefix: str) -> str:
    """A topic prefix: one or more plain levels, no wildcards, no leading or trailing slash."""
    levels = prefix.split("/")
    if not prefix or any(not lvl or "+" in lvl or "#" in lvl or "\0" in lvl for lvl in levels):
        raise MessageError(f"invalid topic prefix {prefix!r}")
    return prefix


def _reject_ext(code: int, data: bytes) -> Any:
    raise MessageError(f"msgpack extension type {code} is not accepted")


class Message(BaseModel):
    """A versioned, frozen message that owns its topic and its encoding."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    #: The last topic level, e.g. "audio" in soundscape/yor/audio.
    LEAF: ClassVar[str]
    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = False

    v: int = Field(1, description="Schema version of this message")
    device: DeviceId

    # --- topics -----------------------------------------------------------------------------
    @classmethod
    def topic_for(cls, prefix: str, device: str) -> str:
        """The topic this message is published on for `device`."""
        return f"{check_prefix(prefix)}/{check_id(device, 'device')}/{cls.LEAF}"

    @classmethod
    def subscription(cls, prefix: str, device: str | None = None) -> str:
        """A subscription filter for this message, for one device or all (`+`)."""
        dev = "+" if device is None else check_id(device, "device")
        return f"{check_prefix(prefix)}/{dev}/{cls.LEAF}"

    @classmethod
    def device_of(cls, prefix: str, topic: str) -> str:
        """The device level of `topic`, if `topic` is this message's topic under `prefix`."""
        head = check_prefix(prefix) + "/"
        tail = "/" + cls.LEAF
        if not (topic.startswith(head) and topic.endswith(tail)):
            raise MessageError(f"topic {topic!r} is not a {cls.LEAF} topic under {prefix!r}")
        return check_id(topic[len(head) : len(topic) - len(tail)], "device in topic")

    def topic(self, prefix: str) -> str:
        """The topic of this message."""
        return self.topic_for(prefix, self.device)

    # --- encoding ---------------------------------------------------------------------------
    def encode(self, content_type: ContentType = MSGPACK) -> bytes:
        """Serialise to msgpack (default) or JSON."""
        if content_type == JSON:
            return self.model_dump_json().encode()
        packed: bytes = msgpack.packb(self.model_dump(mode="python"), use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, payload: bytes, content_type: str | None = None) -> Self:
        """Decode and validate a payload; raise MessageError with the reason otherwise."""
        if not isinstance(payload, bytes | bytearray):
            raise MessageError(f"payload is {type(payload).__name__}, expected bytes")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise MessageError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        data: Any
        try:
            if content_type == JSON:
                data = json.loads(payload)
            elif content_type in (None, "", MSGPACK):
                data = msgpack.unpackb(
                    payload, raw=False, strict_map_key=True, ext_hook=_reject_ext
                )
            else:
                raise MessageError(f"unsupported content type {content_type!r}")
        except MessageError:
            raise
        except (
            ValueError,
            TypeError,
            msgpack.ExtraData,
            msgpack.FormatError,
            msgpack.StackError,
        ) as exc:
            raise MessageError(f"undecodable {cls.LEAF} payload: {type(exc).__name__}") from exc
        if not isinstance(data, dict):
            raise MessageError(f"{cls.LEAF} payload is a {type(data).__name__}, expected a map")
        version = data.get("v", 1)
        if version != cls.model_fields["v"].default:
            raise MessageError(
                f"{cls.LEAF} schema version {version!r} is not supported "
                f"(this service speaks {cls.model_fields['v'].default})"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise MessageError(f"invalid {cls.LEAF} message: {_summary(exc)}") from exc

    @classmethod
    def from_mqtt(
        cls, prefix: str, topic: str, payload: bytes, content_type: str | None = None
    ) -> Self:
        """Decode a message received on `topic`, checking that its device matches the topic."""
        device = cls.device_of(prefix, topic)
        msg = cls.decode(payload, content_type)
        if msg.device != device:
            raise MessageError(f"device {msg.device!r} in payload does not match topic {topic!r}")
        return msg


def _summary(exc: ValidationError) -> str:
    """A short, payload-free description of a validation error."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
