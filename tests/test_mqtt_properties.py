"""`IncomingProperties` decodes every MQTT 5 property exactly as paho's `Properties` does."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket, MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

from shared import mqtt  # noqa: F401  (installs the decoder, as every service does)
from shared.mqtt_properties import IncomingProperties

PRIVATE = {"packetType", "types", "names", "properties"}

#: (packet type, properties to set): every property MQTT 5 has, on a packet it applies to.
CASES: list[tuple[int, dict[str, Any]]] = [
    (PacketTypes.PUBLISH, {}),
    (PacketTypes.PUBLISH, {"ContentType": "application/msgpack"}),
    (
        PacketTypes.PUBLISH,
        {
            "PayloadFormatIndicator": 1,
            "MessageExpiryInterval": 3600,
            "ContentType": "application/json",
            "ResponseTopic": "a/b",
            "CorrelationData": b"\x00\x01",
            "SubscriptionIdentifier": 12,
            "TopicAlias": 7,
            "UserProperty": [("k", "v"), ("k", "w")],
        },
    ),
    (PacketTypes.PUBACK, {"ReasonString": "quota exceeded", "UserProperty": ("a", "b")}),
    (
        PacketTypes.CONNACK,
        {
            "SessionExpiryInterval": 60,
            "AssignedClientIdentifier": "x",
            "ServerKeepAlive": 30,
            "AuthenticationMethod": "m",
            "AuthenticationData": b"d",
            "ResponseInformation": "r",
            "ServerReference": "s",
            "ReceiveMaximum": 100,
            "TopicAliasMaximum": 10,
            "MaximumQoS": 1,
            "RetainAvailable": 1,
            "MaximumPacketSize": 1 << 20,
            "WildcardSubscriptionAvailable": 0,
            "SubscriptionIdentifierAvailable": 1,
            "SharedSubscriptionAvailable": 1,
        },
    ),
]


def attrs(props: Properties) -> dict[str, Any]:
    return {k: v for k, v in vars(props).items() if k not in PRIVATE}


def packed(packet_type: int, values: dict[str, Any]) -> bytes:
    props = Properties(packet_type)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    data: bytes = props.pack()  # type: ignore[no-untyped-call]
    return data


@pytest.mark.parametrize(("packet_type", "values"), CASES)
def test_same_attributes_and_length_as_paho(packet_type: int, values: dict[str, Any]) -> None:
    data = packed(packet_type, values) + b"payload that follows" * 100
    theirs, their_len = Properties(packet_type).unpack(data)  # type: ignore[no-untyped-call]
    ours, our_len = IncomingProperties(packet_type).unpack(data)
    assert our_len == their_len
    assert attrs(ours) == attrs(theirs)
    assert str(ours) == str(theirs)
    assert ours.json() == theirs.json()  # type: ignore[no-untyped-call]
    assert ours.pack() == theirs.pack()  # type: ignore[no-untyped-call]


def test_unpacking_again_forgets_the_previous_packet() -> None:
    props = IncomingProperties(PacketTypes.PUBLISH)
    props.unpack(packed(PacketTypes.PUBLISH, {"ContentType": "a", "UserProperty": ("k", "v")}))
    props.unpack(packed(PacketTypes.PUBLISH, {"TopicAlias": 3}))
    assert attrs(props) == {"TopicAlias": 3}


def raw(*props: bytes) -> bytes:
    body = b"".join(props)
    encoded: bytes = VariableByteIntegers.encode(len(body))  # type: ignore[no-untyped-call]
    return encoded + body


def test_the_same_errors_as_paho() -> None:
    cases: list[tuple[bytes, type[Exception] | tuple[type[Exception], ...]]]
    content_type = b"\x03" + struct.pack("!H", 1) + b"a"
    cases = [
        (raw(content_type, content_type), MQTTException),  # repeated, not repeatable
        (raw(b"\x7f\x00"), KeyError),  # no such property
        (raw(b"\x23" + struct.pack("!H", 0)), MQTTException),  # topic alias 0: out of range
        (raw(b"\x03\x00"), MalformedPacket),  # a string cut short
        (b"\x0a\x03\x00\x05ab", (IndexError, struct.error, MalformedPacket)),  # packet too short
    ]
    for data, error in cases:
        with pytest.raises(error):
            Properties(PacketTypes.PUBLISH).unpack(data)  # type: ignore[no-untyped-call]
        with pytest.raises(error):
            IncomingProperties(PacketTypes.PUBLISH).unpack(data)


def test_paho_decodes_received_publishes_with_it() -> None:
    payload = bytes(range(256)) * 128
    props = packed(PacketTypes.PUBLISH, {"ContentType": "application/msgpack"})
    topic = b"soundscape/dev-1/audio"
    packet = struct.pack("!H", len(topic)) + topic + struct.pack("!H", 9) + props + payload
    decoded = _packet.decode_publish(0x32, packet, MQTTProtocolVersion.MQTTv5)
    assert isinstance(decoded.properties, IncomingProperties)
    assert vars(decoded.properties)["ContentType"] == "application/msgpack"
    assert (decoded.topic, decoded.mid, decoded.qos, decoded.payload) == (topic, 9, 1, payload)
