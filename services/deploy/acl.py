"""The broker's access control list, rendered from the topic prefix (`config/broker/acl`).

Nothing here names a prefix: `soundscape init --prefix P` renders the file for P. The service
accounts come from services/deploy/accounts.py and the topic leaves from the message classes,
so a new result type or a renamed prefix cannot leave the ACL behind.

- Every client may read statuses and write its own (`{prefix}/%u/status`): a service's node
  id must therefore be its user name.
- A device (user name = device id) writes only its own audio, status and results: a sensor
  that measures itself sends its results across its bridge under its own name.
- inference and inference-1 ... inference-N read audio (in the `inference` shared group, and
  in the `birdnet` group of BirdNET workers) and write labels, species (and gaps); levels
  reads audio and labels and writes its results; ingest and reader read results only, never
  audio; health reads statuses and the broker's uptime.
"""

from __future__ import annotations

from typing import Final

from services.deploy.accounts import MAX_INFERENCE_WORKERS, inference_workers
from shared.messages import (
    RESULT_TYPES,
    AudioChunk,
    GapReport,
    HomeAssistantState,
    LabelsResult,
    NoiseEvent,
    SpeciesResult,
    Status,
    check_prefix,
)

#: Gap reports (`{prefix}/{device}/gaps`): written by whoever lost audio, stored by ingest.
GAPS_LEAF: Final = GapReport.LEAF

#: What inference writes (besides gaps): AudioSet labels and BirdNET species.
INFERENCE_LEAVES: Final[tuple[str, ...]] = (LabelsResult.LEAF, SpeciesResult.LEAF)

#: What levels publishes (everything in RESULT_TYPES but what inference writes).
LEVELS_LEAVES: Final[tuple[str, ...]] = tuple(
    sorted(leaf for leaf in RESULT_TYPES if leaf not in INFERENCE_LEAVES)
)

#: Home Assistant's default discovery prefix (HomeAssistantSettings.discovery_prefix); a
#: deployment that changes it edits these lines of the ACL.
HA_DISCOVERY: Final = "homeassistant"

#: The shared-subscription group inference workers split audio in (InferenceSettings.share_group).
SHARE_GROUP: Final = "inference"
#: The group of BirdNET workers (`InferenceSettings` default for the birdnet backend).
BIRDNET_SHARE_GROUP: Final = "birdnet"


def result_leaves() -> list[str]:
    """Every result leaf a device or service may publish and ingest stores, gaps included."""
    return sorted(RESULT_TYPES)


def _inference_block(user: str, prefix: str) -> list[str]:
    audio = f"{prefix}/+/{AudioChunk.LEAF}"
    return [
        f"user {user}",
        f"topic read {audio}",
        f"topic read $share/{SHARE_GROUP}/{audio}",
        f"topic read $share/{BIRDNET_SHARE_GROUP}/{audio}",
        *(f"topic write {prefix}/+/{leaf}" for leaf in INFERENCE_LEAVES),
        f"topic write {prefix}/+/{GAPS_LEAF}",
        "",
    ]


def render_acl(prefix: str) -> str:
    """The ACL file for topic prefix `prefix`."""
    p = check_prefix(prefix)
    leaves = result_leaves()
    lines = [
        "# Rendered by `soundscape init` for the topic prefix below: do not edit, re-render.",
        f"# Topic prefix: {p}. %u is the MQTT user name (a device's user is its device id).",
        "",
        "# Everyone reads statuses (health checks, dashboards) and writes only its own.",
        f"pattern read {p}/+/{Status.LEAF}",
        f"pattern write {p}/%u/{Status.LEAF}",
        "",
        "# A device writes its own audio and, when it measures itself, its own results.",
        f"pattern write {p}/%u/{AudioChunk.LEAF}",
        *(f"pattern write {p}/%u/{leaf}" for leaf in leaves),
        "",
        "# inference (all-in-one) and inference-1 ... inference-"
        f"{MAX_INFERENCE_WORKERS} (server workers on the shared subscription).",
    ]
    for user in ["inference", *inference_workers(MAX_INFERENCE_WORKERS)]:
        lines += _inference_block(user, p)
    lines += [
        "# levels: reads audio and labels (for noise events), writes its results and gaps.",
        "user levels",
        f"topic read {p}/+/{AudioChunk.LEAF}",
        f"topic read {p}/+/{LabelsResult.LEAF}",
        *(f"topic write {p}/+/{leaf}" for leaf in LEVELS_LEAVES),
        "",
        "# ingest: results only, never audio; the broker's counters of dropped messages.",
        "user ingest",
        *(f"topic read {p}/+/{leaf}" for leaf in leaves),
        "topic read $SYS/broker/#",
        "",
        "# homeassistant: results in; JSON states and Home Assistant discovery configs out.",
        "user homeassistant",
        *(f"topic read {p}/+/{leaf}" for leaf in leaves),
        f"topic readwrite {p}/+/{HomeAssistantState.LEAF}",
        f"topic readwrite {HA_DISCOVERY}/#",
        "",
        "# notify: noise events in (statuses: pattern above); sends through Apprise, not MQTT.",
        "user notify",
        f"topic read {p}/+/{NoiseEvent.LEAF}",
        "",
        "# reader: read-only result consumers (other tools, Home Assistant), never audio;",
        "# Home Assistant also reads discovery configs and announces itself (birth, will).",
        "user reader",
        *(f"topic read {p}/+/{leaf}" for leaf in leaves),
        f"topic read {p}/+/{HomeAssistantState.LEAF}",
        f"topic read {HA_DISCOVERY}/#",
        f"topic write {HA_DISCOVERY}/status",
        "",
        "# health: every container's health check; statuses (pattern above) and uptime.",
        "user health",
        "topic read $SYS/broker/uptime",
        "",
    ]
    return "\n".join(lines)
