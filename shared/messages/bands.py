"""The 1/3-octave bands a levels message may carry (IEC 61260-1, base-10 band centres).

Band x has its centre at fm = 1000 * 10^(x/10) Hz and edges fm * 10^(+-1/20); it is named by
its nominal centre frequency ('20', '31.5', '1000', '12500'). Bands run from 20 Hz (x = -17) up
to the band that holds the Nyquist frequency of the highest sample rate a chunk may have.
"""

from __future__ import annotations

from shared.messages.audio import MAX_RATE

#: Lowest band: x = -17, 20 Hz.
LOWEST_X = -17
_NOMINAL = (10.0, 12.5, 16.0, 20.0, 25.0, 31.5, 40.0, 50.0, 63.0, 80.0)


def nominal(x: int) -> str:
    """Nominal centre frequency of band x as text: '20', '31.5', '1000', '12500'."""
    decade, step = divmod(x, 10)
    value = _NOMINAL[step] * 10.0 ** (decade + 2)
    return f"{round(value, 1):g}" if value < 100 else f"{round(value):d}"


def exact_centre(x: int) -> float:
    """Exact base-10 centre frequency of band x, Hz."""
    return float(1000.0 * 10 ** (x / 10))


def lower_edge(x: int) -> float:
    """Lower edge of band x, Hz."""
    return exact_centre(x) * 10 ** (-1 / 20)


def _highest_x(rate: int) -> int:
    x = LOWEST_X
    while lower_edge(x + 1) < rate / 2:
        x += 1
    return x


#: Highest band: the one that holds the Nyquist frequency at MAX_RATE (192 kHz: 200 kHz band).
HIGHEST_X = _highest_x(MAX_RATE)
#: Every band name a levels message may carry.
BAND_NAMES: frozenset[str] = frozenset(nominal(x) for x in range(LOWEST_X, HIGHEST_X + 1))
