"""Render the public MQTT contract (topics, QoS, payload fields, units) as Markdown.

`python -m shared.contract_doc > docs/contract.md` regenerates the page; a test fails when the
page and the message classes disagree, so the contract only changes deliberately.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from shared.messages import (
    MAX_PACKET_BYTES,
    AudioChunk,
    GapReport,
    HomeAssistantState,
    IndicesResult,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    Message,
    NoiseEvent,
    SpeciesResult,
    Status,
)

MESSAGES: list[type[Message]] = [
    AudioChunk,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    IndicesResult,
    NoiseEvent,
    SpeciesResult,
    GapReport,
    Status,
    HomeAssistantState,
]


def type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"map ({annotation.__name__})"
    return getattr(annotation, "__name__", str(annotation))


def _fields(model: type[BaseModel]) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        rows.append(
            f"| `{name}` | {type_name(info.annotation)} | {_required(info)} | "
            f"{info.description or ''} |"
        )
    return rows


def _required(info: FieldInfo) -> str:
    return (
        "yes"
        if info.is_required()
        else f"no (default `{info.get_default(call_default_factory=False)!r}`)"
    )


def _nested(model: type[BaseModel]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for info in model.model_fields.values():
        stack = [info.annotation]
        while stack:
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel) and ann not in found:
                found.append(ann)
            stack.extend(typing.get_args(ann))
    return found


def _summary(cls: type[BaseModel]) -> str:
    first = (cls.__doc__ or "").strip().splitlines()[0]
    return first.split("`: ", 1)[1] if first.startswith("`") and "`: " in first else first


def render() -> str:
    """The whole contract page."""
    out = [
        "# The MQTT contract",
        "",
        "Generated from the message classes in `shared/messages/` by",
        "`python -m shared.contract_doc > docs/contract.md`; a test keeps this page and the code",
        "in step. `{prefix}` defaults to `soundscape` (`SOUNDSCAPE_MQTT_TOPIC_PREFIX`),",
        "`{device}` is the sensor id (`[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`).",
        "",
        "Payloads are msgpack maps (binary fields as msgpack `bin`); results may instead be JSON",
        "when `SOUNDSCAPE_MQTT_RESULTS_FORMAT=json`, announced by the MQTT 5 content type",
        "(`application/msgpack` or `application/json`). Every message has a schema version `v`;",
        "a consumer rejects versions it does not speak. Times are Unix seconds (UTC), levels dB.",
        "",
        "| topic | message | QoS | retained |",
        "|---|---|---|---|",
    ]
    for cls in MESSAGES:
        topic = "{prefix}/{device}/" + cls.LEAF
        retained = "yes" if cls.RETAIN else "never" if cls.QOS == 0 else "no"
        out.append(f"| `{topic}` | {cls.__name__} | {cls.QOS} | {retained} |")
    seen: list[type[BaseModel]] = []
    for cls in MESSAGES:
        out += [
            "",
            f"## {cls.__name__}: `{{prefix}}/{{device}}/{cls.LEAF}`",
            "",
            (cls.__doc__ or "").strip().splitlines()[0],
            "",
            "| field | type | required | meaning |",
            "|---|---|---|---|",
            *_fields(cls),
        ]
        for nested in _nested(cls):
            if nested in seen:
                continue
            seen.append(nested)
            out += [
                "",
                f"### {nested.__name__}",
                "",
                (nested.__doc__ or "").strip(),
                "",
                "| field | type | required | meaning |",
                "|---|---|---|---|",
                *_fields(nested),
            ]
    out += _limits()
    return "\n".join(out) + "\n"


def _size(n: int) -> str:
    mib, kib = divmod(n, 1024 * 1024)
    parts = [f"{mib} MiB"] if mib else []
    if kib:
        parts.append(f"{kib // 1024} KiB" if kib % 1024 == 0 else f"{kib} B")
    return " + ".join(parts)


def _limits() -> list[str]:
    out = [
        "",
        "## Limits",
        "",
        "A payload beyond any of these limits is rejected (logged with its topic and the",
        "reason, counted) before or while it is decoded, in msgpack and JSON alike, so that",
        "decoding a payload costs at most about ten times its size in memory. The largest MQTT",
        f"packet is {MAX_PACKET_BYTES} bytes",
        "(16 MiB of PCM plus headers; the broker's `max_packet_size`). *string* is one string",
        "or map key in UTF-8 bytes (a JSON string may be six times longer before its escapes",
        "are decoded); *items* is the items of one array or map; *containers* counts every",
        "array and map in the payload; *depth* is their nesting (the top map is 1).",
        "",
        "| message | payload | string | bin | items | containers | depth | JSON |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cls in MESSAGES:
        out.append(
            f"| {cls.__name__} | {_size(cls.MAX_PAYLOAD_BYTES)} | {_size(cls.MAX_STR_BYTES)} | "
            f"{_size(cls.MAX_BIN_BYTES) if cls.MAX_BIN_BYTES else 'none'} | {cls.MAX_ITEMS} | "
            f"{cls.MAX_CONTAINERS} | {cls.MAX_DEPTH} | {'yes' if cls.JSON_OK else 'no'} |"
        )
    return out


if __name__ == "__main__":
    print(render(), end="")
