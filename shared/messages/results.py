"""Result messages (QoS 1, not retained): labels, levels, level summaries, indices, events."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.messages.window import WindowMessage


def _clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL byte in text")
    if not value.strip():
        raise ValueError("empty text")
    return value


#: A label or model name: 1-200 characters, no NUL byte (PostgreSQL rejects it).
Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_clean_text)]
#: A level in dB: finite, within what air and a 32-bit ADC can mean.
Decibel = Annotated[float, Field(ge=-400.0, le=400.0)]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class LabelScore(_Part):
    """One AudioSet class and its sigmoid score."""

    label: Text = Field(description="Class display name from the model's id2label")
    score: float = Field(ge=0.0, le=1.0, description="Sigmoid of the logit, 0..1")


class LabelsResult(WindowMessage):
    """`{prefix}/{device}/labels`: the top-k classes of one analysis window."""

    LEAF = "labels"

    model: Text = Field(description="Model id or path that produced the scores")
    labels: list[LabelScore] = Field(
        min_length=1, max_length=527, description="Top-k labels, highest score first"
    )
    speech_present: bool | None = Field(
        None, description="Speech scored above threshold anywhere in the full score vector"
    )
    inference_ms: float | None = Field(None, ge=0, description="Time spent classifying, ms")


class Calibration(_Part):
    """How PCM full scale maps to pascals (scikit-maad's wav2dBSPL parameters)."""

    gain_db: float = Field(25.0, ge=-20, le=80, description="Total gain before the ADC, dB")
    sensitivity_dbv: float = Field(
        -18.0, ge=-80, le=20, description="Microphone sensitivity, dB re 1 V/Pa"
    )
    vadc: float = Field(1.25, gt=0, le=20, description="ADC full-scale voltage, V (peak-to-peak)")


class LevelsResult(WindowMessage):
    """`{prefix}/{device}/levels`: sound levels of one chunk."""

    LEAF = "levels"

    leq_db: Decibel = Field(description="Z-weighted Leq, dB SPL (wav2dBSPL then mean_dB)")
    laeq_db: Decibel | None = Field(None, description="A-weighted Leq, dB(A) SPL")
    lceq_db: Decibel | None = Field(None, description="C-weighted Leq, dB(C) SPL")
    peak_db: Decibel | None = Field(None, description="Z-weighted peak level, dB SPL")
    dbfs: Decibel | None = Field(None, description="RMS level re digital full scale, dBFS")
    bands: dict[str, Decibel] | None = Field(
        None, description="1/3-octave band Leq, dB SPL, keyed by nominal centre frequency in Hz"
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


class NoiseEvent(WindowMessage):
    """`{prefix}/{device}/events`: LAeq stayed above the device's threshold for long enough."""

    LEAF = "events"

    threshold_db: Decibel = Field(description="Threshold that was exceeded, dB(A)")
    laeq_db: Decibel = Field(description="LAeq over the event, dB(A)")
    lamax_db: Decibel = Field(description="Maximum level during the event, dB(A)")
    classes: list[LabelScore] = Field(
        default_factory=list,
        max_length=20,
        description="Dominant sound classes reported by inference during the event",
    )


#: Every result message, by topic leaf.
RESULT_TYPES: dict[str, type[WindowMessage]] = {
    cls.LEAF: cls for cls in (LabelsResult, LevelsResult, LevelsSummary, IndicesResult, NoiseEvent)
}
