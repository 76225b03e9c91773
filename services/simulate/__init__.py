"""simulate: N sensors' audio through capture's publishing path, to size a server.

Modules: `core` (the pure fleet: device ids, scenes, chunks due in order), `settings`,
`app` (scenes from the demo generator or WAV files, pacing, the MQTT bus).
"""
