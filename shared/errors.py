"""Errors the common package raises.

SoundscapeError
 ├── MessageError        a payload or topic that does not decode into its message
 └── ConfigError         a setting or registry entry that cannot be used
"""


class SoundscapeError(Exception):
    """Base of every error this project raises on purpose."""


class MessageError(SoundscapeError, ValueError):
    """A payload or topic was rejected; the text says why, never contains the payload."""


class ConfigError(SoundscapeError):
    """A setting, device registry entry or model location cannot be used."""
