"""capture: PCM from a microphone (arecord), recordings or a synthetic demo, to the audio topic.

Modules: `core` (the pure pipeline), `clock`, `chunker`, `resample`, `alsa_devices`,
`recordings`, `synthetic` (pure parts); `live`, `replay` (sources); `app` (the service).
"""
