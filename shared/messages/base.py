"""Base class of every message: topic ownership, encoding and validation.

A message is a frozen pydantic model. Its class knows the leaf of its topic
(`{prefix}/{device}/{leaf}`), its QoS and whether it is retained; no other code
builds topic strings. Payloads are msgpack maps (binary fields as msgpack `bin`);
results can also travel as JSON, announced with the MQTT 5 content type.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar, Final, Literal, NoReturn, Self

import msgpack
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import MessageError

ContentType = Literal["application/msgpack", "application/json"]
MSGPACK: Final = "application/msgpack"
JSON: Final = "application/json"

#: Device and node ids are one MQTT topic level: no wildcards, no slashes, no spaces.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)
DeviceId = Annotated[str, Field(pattern=ID_PATTERN, description="Sensor or node id")]

#: Largest MQTT packet any component sends or accepts: an audio chunk's 16 MiB of PCM plus its
#: fields, topic and properties (the broker's `max_packet_size` is the same number).
MAX_PACKET_BYTES: Final = 16 * 1024 * 1024 + 64 * 1024
#: Longest msgpack ext value read at all (a timestamp is 4-12 bytes); every ext is then refused.
MAX_EXT_BYTES: Final = 16
#: How much longer a JSON string may be than its decoded UTF-8 text (\uXXXX escapes).
JSON_ESCAPE_FACTOR: Final = 6


def short(value: object, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters: hostile text never floods a log line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_id(value: str, what: str = "id") -> str:
    """Return `value` if it is a valid device or node id, else raise MessageError."""
    if not _ID_RE.match(value):
        raise MessageError(f"invalid {what} {short(value)}: expected 1-64 of [A-Za-z0-9_.-]")
    return value


def check_prefix(prefix: str) -> str:
    """A topic prefix: one or more plain levels, no wildcards, no leading or trailing slash."""
    levels = prefix.split("/")
    if not prefix or any(not lvl or "+" in lvl or "#" in lvl or "\0" in lvl for lvl in levels):
        raise MessageError(f"invalid topic prefix {short(prefix)}")
    return prefix


def _reject_ext(code: int, data: bytes) -> Any:
    raise MessageError(f"msgpack extension type {code} is not accepted")


def _reject_constant(name: str) -> NoReturn:
    raise MessageError(f"JSON constant {name} is not accepted")


class _Budget:
    """Counts the arrays and maps msgpack builds and stops it beyond the message's limit."""

    __slots__ = ("leaf", "left")

    def __init__(self, leaf: str, containers: int) -> None:
        self.leaf = leaf
        self.left = containers

    def take(self, container: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise MessageError(f"{self.leaf} payload has too many arrays and maps")
        return container


#: Bytes that are not JSON brackets (deleted before the nesting is measured).
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: Nesting step of each byte: +1 for an opening bracket, -1 for a closing one.
_STEP = np.zeros(256, dtype=np.int32)
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1


class Message(BaseModel):
    """A versioned, frozen message that owns its topic and its encoding."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    #: The last topic level, e.g. "audio" in soundscape/yor/audio.
    LEAF: ClassVar[str]
    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = False

    #: Decoding limits, checked before or while a payload is decoded (so a payload costs a
    #: bounded multiple of its size in memory): the whole payload, one string or map key (UTF-8
    #: bytes), one msgpack bin, the items of one array or map, the arrays and maps in all,
    #: and their nesting (the top map is depth 1).
    MAX_PAYLOAD_BYTES: ClassVar[int] = 16 * 1024
    MAX_STR_BYTES: ClassVar[int] = 1024
    MAX_BIN_BYTES: ClassVar[int] = 0
    MAX_ITEMS: ClassVar[int] = 32
    MAX_CONTAINERS: ClassVar[int] = 4
    MAX_DEPTH: ClassVar[int] = 3
    #: Whether the message may travel as JSON (results and status); audio is msgpack only.
    JSON_OK: ClassVar[bool] = True

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
            raise MessageError(
                f"topic {short(topic)} is not a {cls.LEAF} topic under {short(prefix)}"
            )
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
        """Decode and validate a payload; raise MessageError with the reason otherwise.

        Never raises anything else, whatever the payload: sizes, string lengths, item counts
        and nesting are bounded by the class's limits before or while decoding.
        """
        if not isinstance(payload, bytes | bytearray):
            raise MessageError(f"payload is {type(payload).__name__}, expected bytes")
        if len(payload) > cls.MAX_PAYLOAD_BYTES:
            raise MessageError(
                f"{cls.LEAF} payload of {len(payload)} bytes exceeds {cls.MAX_PAYLOAD_BYTES}"
            )
        data: Any
        # Nesting no deeper than the containers decoded: msgpack's own limits (items per
        # container, containers in all) leave only the depth to walk for, and only when more
        # containers than MAX_DEPTH were decoded.
        shallow = False
        try:
            if content_type == JSON:
                data = cls._load_json(bytes(payload))
            elif content_type in (None, "", MSGPACK):
                data, containers = cls._load_msgpack(payload)
                shallow = containers <= cls.MAX_DEPTH
            else:
                raise MessageError(f"unsupported content type {short(content_type, 60)}")
        except MessageError:
            raise
        except (
            ValueError,
            TypeError,
            RecursionError,
            msgpack.ExtraData,
            msgpack.FormatError,
            msgpack.StackError,
        ) as exc:
            raise MessageError(
                f"undecodable {cls.LEAF} payload: {type(exc).__name__} {str(exc)[:100]}".rstrip()
            ) from exc
        if not isinstance(data, dict):
            raise MessageError(f"{cls.LEAF} payload is a {type(data).__name__}, expected a map")
        if not shallow:
            cls._check_shape(data)
        version = data.get("v", 1)
        if version != cls.model_fields["v"].default:
            raise MessageError(
                f"{cls.LEAF} schema version {short(version, 40)} is not supported "
                f"(this service speaks {cls.model_fields['v'].default})"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise MessageError(f"invalid {cls.LEAF} message: {_summary(exc)}") from exc
        except RecursionError as exc:  # bounded above; kept so that nothing else escapes
            raise MessageError(f"invalid {cls.LEAF} message: nested too deeply") from exc

    @classmethod
    def _load_msgpack(cls, payload: bytes | bytearray) -> tuple[Any, int]:
        """The decoded payload and how many arrays and maps it holds."""
        budget = _Budget(cls.LEAF, cls.MAX_CONTAINERS)
        data = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            ext_hook=_reject_ext,
            list_hook=budget.take,
            object_hook=budget.take,
            max_str_len=cls.MAX_STR_BYTES,
            max_bin_len=cls.MAX_BIN_BYTES,
            max_array_len=cls.MAX_ITEMS,
            max_map_len=cls.MAX_ITEMS,
            max_ext_len=MAX_EXT_BYTES,
        )
        return data, cls.MAX_CONTAINERS - budget.left

    @classmethod
    def _load_json(cls, payload: bytes) -> Any:
        """Measure strings, brackets and nesting on the raw text first; then decode it."""
        if not cls.JSON_OK:
            raise MessageError(f"{cls.LEAF} payloads are msgpack only, not JSON")
        # Escaped backslashes, then escaped quotes, go: what is left of a string has no quote.
        parts = payload.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')
        if len(parts) % 2 == 0:
            raise MessageError(f"undecodable {cls.LEAF} payload: unterminated JSON string")
        longest = max((len(p) for p in parts[1::2]), default=0)
        if longest > cls.MAX_STR_BYTES * JSON_ESCAPE_FACTOR:
            raise MessageError(f"{cls.LEAF} payload has a string of {longest} bytes")
        brackets = b"".join(parts[0::2]).translate(None, _NOT_BRACKETS)
        containers = brackets.count(b"[") + brackets.count(b"{")
        if containers > cls.MAX_CONTAINERS:
            raise MessageError(f"{cls.LEAF} payload has too many arrays and maps")
        if brackets:
            depth = int(np.cumsum(_STEP[np.frombuffer(brackets, dtype=np.uint8)]).max())
            if depth > cls.MAX_DEPTH:
                raise MessageError(f"{cls.LEAF} payload is nested {depth} deep")
        return json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)

    @classmethod
    def _check_shape(cls, data: dict[Any, Any]) -> None:
        """Nesting and item counts of decoded data (bounded already: this walk is short)."""
        stack: list[tuple[Any, int]] = [(data, 1)]
        while stack:
            item, depth = stack.pop()
            if len(item) > cls.MAX_ITEMS:
                raise MessageError(f"{cls.LEAF} payload has a container of {len(item)} items")
            values = item.values() if type(item) is dict else item
            if depth >= cls.MAX_DEPTH:  # only scalars below: checked at C speed
                kinds = set(map(type, values))
                if list in kinds or dict in kinds:
                    raise MessageError(
                        f"{cls.LEAF} payload is nested more than {cls.MAX_DEPTH} deep"
                    )
                continue
            stack.extend([(v, depth + 1) for v in values if type(v) is list or type(v) is dict])

    @classmethod
    def from_mqtt(
        cls, prefix: str, topic: str, payload: bytes, content_type: str | None = None
    ) -> Self:
        """Decode a message received on `topic`, checking that its device matches the topic."""
        device = cls.device_of(prefix, topic)
        msg = cls.decode(payload, content_type)
        if msg.device != device:
            raise MessageError(
                f"device {msg.device!r} in payload does not match topic {short(topic)}"
            )
        return msg


def _summary(exc: ValidationError) -> str:
    """A short, payload-free description of a validation error."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:3]:
        loc = ".".join(str(p)[:40] for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg'][:120]}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
