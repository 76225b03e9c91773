"""`{prefix}/{device}/indices`: acoustic indices. Owned by the levels service."""

from __future__ import annotations

from pydantic import Field

from shared.messages.window import WindowMessage


class IndicesResult(WindowMessage):
    """`{prefix}/{device}/indices`: acoustic indices (scikit-maad) over a window."""

    LEAF = "indices"

    aci: float | None = Field(None, description="Acoustic Complexity Index")
    adi: float | None = Field(None, description="Acoustic Diversity Index")
    aei: float | None = Field(None, description="Acoustic Evenness Index (Gini)")
    bi: float | None = Field(None, description="Bioacoustic Index")
    ndsi: float | None = Field(
        None, ge=-1, le=1, description="Normalised Difference Soundscape Index"
    )
    ht: float | None = Field(None, ge=0, le=1, description="Temporal entropy")
    hf: float | None = Field(None, ge=0, le=1, description="Spectral entropy")
    events: int | None = Field(None, ge=0, description="Number of acoustic events in the window")
    coverage: float | None = Field(
        None, ge=0, le=1, description="Fraction of the window that had audio"
    )
