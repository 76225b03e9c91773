"""Field types shared by the result messages."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


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


class Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
