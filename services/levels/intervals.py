"""Cutting a stream of chunks into intervals aligned on multiples of their length in Unix time."""

from __future__ import annotations

import math


def split(start: float, rate: int, n: int, length: float) -> list[tuple[int, int, int]]:
    """(interval number, first sample, end sample) of each piece of a chunk.

    Sample j of a chunk starting at `start` lies at `start + j / rate` and belongs to interval
    `floor(t / length)`; a 1 s chunk that straddles a minute boundary gives two pieces.
    """
    pieces = []
    first = 0
    while first < n:
        t = start + first / rate
        k = math.floor(t / length + 1e-9)
        boundary = (k + 1) * length
        end = min(n, max(first + 1, math.ceil((boundary - start) * rate - 1e-6)))
        pieces.append((k, first, end))
        first = end
    return pieces
