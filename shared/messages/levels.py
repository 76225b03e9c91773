"""`{prefix}/{device}/levels` and `/summary`: sound levels. Owned by the levels service."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import AfterValidator, Field, model_validator

from shared.messages.bands import BAND_NAMES
from shared.messages.common import Decibel, Part
from shared.messages.window import WindowMessage


def _known_bands(bands: dict[str, float] | None) -> dict[str, float] | None:
    if bands is not None:
        unknown = [name for name in bands if name not in BAND_NAMES]
        if unknown:
            raise ValueError(
                f"{len(unknown)} unknown band(s), e.g. {unknown[0][:20]!r}: keys are nominal "
                "1/3-octave centres from '20' to '200000' Hz"
            )
    return bands


class Calibration(Part):
    """How PCM full scale maps to pascals (scikit-maad's wav2dBSPL parameters)."""

    gain_db: float = Field(25.0, ge=-20, le=80, description="Total gain before the ADC, dB")
    sensitivity_dbv: float = Field(
        -18.0, ge=-80, le=20, description="Microphone sensitivity, dB re 1 V/Pa"
    )
    vadc: float = Field(1.25, gt=0, le=20, description="ADC full-scale voltage, V (peak-to-peak)")


class LevelsResult(WindowMessage):
    """`{prefix}/{device}/levels`: sound levels of one chunk."""

    LEAF = "levels"
    MAX_ITEMS = 64  # the 41 bands

    leq_db: Decibel = Field(description="Z-weighted Leq, dB SPL (wav2dBSPL then mean_dB)")
    laeq_db: Decibel | None = Field(None, description="A-weighted Leq, dB(A) SPL")
    lceq_db: Decibel | None = Field(None, description="C-weighted Leq, dB(C) SPL")
    peak_db: Decibel | None = Field(None, description="Z-weighted peak level, dB SPL")
    dbfs: Decibel | None = Field(None, description="RMS level re digital full scale, dBFS")
    bands: Annotated[dict[str, Decibel] | None, AfterValidator(_known_bands)] = Field(
        None,
        max_length=len(BAND_NAMES),
        description="1/3-octave band Leq, dB SPL, keyed by nominal centre frequency in Hz "
        "('20' ... '200000')",
    )
    clipped: bool = Field(False, description="At least one sample hit digital full scale")
    calibration: Calibration = Field(description="Calibration used for this result")
    uncalibrated: bool = Field(description="True when default calibration values were used")


class LevelsSummary(WindowMessage):
    """`{prefix}/{device}/summary`: Fast-weighted statistics over an interval (default 60 s)."""

    LEAF = "summary"

    laeq_db: Decibel = Field(description="A-weighted Leq over the interval, dB(A)")
    lamax_db: Decibel = Field(description="Maximum Fast A-weighted level, dB(A)")
    lamin_db: Decibel = Field(description="Minimum Fast A-weighted level, dB(A)")
    l10_db: Decibel = Field(description="Fast A-weighted level exceeded 10% of the time, dB(A)")
    l50_db: Decibel = Field(description="Fast A-weighted level exceeded 50% of the time, dB(A)")
    l90_db: Decibel = Field(description="Fast A-weighted level exceeded 90% of the time, dB(A)")
    coverage: float = Field(ge=0, le=1, description="Fraction of the interval that had audio")
    uncalibrated: bool = Field(description="True when default calibration values were used")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not (self.l10_db >= self.l50_db >= self.l90_db):
            raise ValueError("statistical levels must satisfy L10 >= L50 >= L90")
        return self
