"""The common package: messages, topics, codec, settings, device registry and MQTT adapter."""

__version__ = "0.1.0"
