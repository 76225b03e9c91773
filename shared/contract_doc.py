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
    AudioChunk,
    GapReport,
    IndicesResult,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    Message,
    NoiseEvent,
    Status,
)

MESSAGES: list[type[Message]] = [
    AudioChunk,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    IndicesResult,
    NoiseEvent,
    GapReport,
    Status,
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
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
