"""MQTT 5 properties of received packets, decoded without paho's per-packet set-up.

paho builds a `Properties` object for every PUBLISH and PUBACK it receives, and its
constructor builds three tables (27 property names, their types, the packets each applies
to) anew each time; decoding then walks all 27 names for every property it finds and slices
the whole remaining packet (a 32 kB audio chunk) once per property. Measured in a service
receiving 300 sensors' audio and publishing one QoS 1 result per chunk (cProfile), that was
about a seventh of the process's CPU.

`IncomingProperties` is paho's class with the tables shared (they are constants: paho never
changes them), name lookups by dictionary, and `unpack` reading only the properties' own
bytes. It decodes exactly what paho's does (same attributes, same values, the same errors for
a repeated property or an unknown identifier: tested against paho's own on every property
MQTT 5 has). `install()` makes paho's packet decoder (`paho.mqtt._packet`, which looks the
class up by name for each packet) use it; packets built to send are unchanged.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt
from paho.mqtt import _packet
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

__all__ = ["IncomingProperties", "install"]

_TEMPLATE = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
_TYPES: list[str] = _TEMPLATE.types
_NAMES: dict[str, int] = _TEMPLATE.names
_KINDS: dict[int, tuple[int, list[int]]] = _TEMPLATE.properties
#: identifier -> attribute name (the property's name without spaces)
_ATTR: dict[int, str] = {ident: name.replace(" ", "") for name, ident in _NAMES.items()}
_IDENT: dict[str, int] = {attr: ident for ident, attr in _ATTR.items()}
_MULTIPLE = frozenset({11, 38})  # Subscription Identifier, User Property
_PRIVATE = frozenset({"packetType", "types", "names", "properties"})


class IncomingProperties(Properties):
    """paho's `Properties`, cheaper to create, clear and unpack (see the module)."""

    def __init__(self, packetType: int) -> None:
        d = self.__dict__
        d["packetType"] = packetType
        d["types"] = _TYPES
        d["names"] = _NAMES
        d["properties"] = _KINDS

    def getIdentFromName(self, compressedName: str) -> int:
        return _IDENT.get(compressedName, -1)

    def allowsMultiple(self, compressedName: str) -> bool:
        return _IDENT.get(compressedName, -1) in _MULTIPLE

    def clear(self) -> None:
        d = self.__dict__
        for key in [k for k in d if k not in _PRIVATE]:
            del d[key]

    def unpack(self, buffer: Any) -> tuple[IncomingProperties, int]:
        self.clear()
        propslen, vbilen = VariableByteIntegers.decode(buffer)  # type: ignore[no-untyped-call]
        end = vbilen + propslen
        if propslen == 0:
            return self, end
        props = bytes(buffer[vbilen:end])
        if len(props) < propslen:
            raise IndexError("properties run past the packet")
        d = self.__dict__
        pos = 0
        while pos < propslen:
            identifier, n = VariableByteIntegers.decode(props[pos : pos + 4])  # type: ignore[no-untyped-call]
            pos += n
            kind = _KINDS[identifier][0]  # KeyError for an unknown one, as paho's
            value, n = self.readProperty(props[pos:], kind, propslen - pos)  # type: ignore[no-untyped-call]
            pos += n
            attr = _ATTR[identifier]
            if identifier not in _MULTIPLE and attr in d:
                raise MQTTException(f"Property '{attr}' must not exist more than once")
            # paho's own __setattr__: it checks the value's range and that the property
            # applies to this packet type, and appends to the lists of repeatable ones.
            setattr(self, attr, value)
        return self, end


def install() -> None:
    """Have paho decode received packets' properties with `IncomingProperties` (once)."""
    if not paho.mqtt.__version__.startswith("2."):
        return  # another major version: its internals may differ; keep paho's own
    _packet.Properties = IncomingProperties  # type: ignore[attr-defined]
