"""One versioned message class per topic. Import them from here."""

from shared.messages.audio import AudioChunk
from shared.messages.base import (
    JSON,
    MAX_PACKET_BYTES,
    MSGPACK,
    Message,
    check_id,
    check_prefix,
)
from shared.messages.events import NoiseEvent
from shared.messages.gaps import GAP_CAUSES, GapCause, GapReport
from shared.messages.homeassistant import EventSummary, HomeAssistantState
from shared.messages.indices import IndicesResult
from shared.messages.labels import LabelScore, LabelsResult
from shared.messages.levels import Calibration, LevelsResult, LevelsSummary
from shared.messages.results import RESULT_TYPES
from shared.messages.species import SpeciesResult, SpeciesScore
from shared.messages.status import Status
from shared.messages.window import WindowMessage

__all__ = [
    "GAP_CAUSES",
    "JSON",
    "MAX_PACKET_BYTES",
    "MSGPACK",
    "RESULT_TYPES",
    "AudioChunk",
    "Calibration",
    "EventSummary",
    "GapCause",
    "GapReport",
    "HomeAssistantState",
    "IndicesResult",
    "LabelScore",
    "LabelsResult",
    "LevelsResult",
    "LevelsSummary",
    "Message",
    "NoiseEvent",
    "SpeciesResult",
    "SpeciesScore",
    "Status",
    "WindowMessage",
    "check_id",
    "check_prefix",
]
