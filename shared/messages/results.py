"""Every result message (QoS 1, not retained), by topic leaf: what ingest stores.

The window results name one analysis window each; a `GapReport` names an interval of lost
audio instead (it can be longer than any window).
"""

from __future__ import annotations

from shared.messages.events import NoiseEvent
from shared.messages.gaps import GapReport
from shared.messages.indices import IndicesResult
from shared.messages.labels import LabelsResult
from shared.messages.levels import LevelsResult, LevelsSummary
from shared.messages.species import SpeciesResult
from shared.messages.window import WindowMessage

#: Every result message, by topic leaf.
RESULT_TYPES: dict[str, type[WindowMessage] | type[GapReport]] = {
    cls.LEAF: cls
    for cls in (
        LabelsResult,
        LevelsResult,
        LevelsSummary,
        IndicesResult,
        NoiseEvent,
        SpeciesResult,
        GapReport,
    )
}
