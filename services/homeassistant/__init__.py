"""`soundscape homeassistant`: Home Assistant MQTT discovery and JSON state topics."""
