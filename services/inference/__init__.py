"""inference: AudioSet labels for every window of audio (AST via transformers or ONNX, or YAMNet).

Pure parts: `core` (windows, queue, top-k, results), `positions` (AST on a window's own
length), `yamnet_features` (YAMNet's log-mel in numpy). Backends: `backends`. I/O: `service`
(MQTT adapter) and `app` (command line). Tools: `export` (AST -> ONNX, int8) and
`yamnet_fetch` (the YAMNet model file).
"""
