"""Numbers as text, the same in notebooks, sentences, the report and the knob explorer.

One blank for a number that is missing (None), not a number or infinite: :data:`BLANK`
(``n/a``), so that a reader meets one word for "no value" everywhere.
"""

from __future__ import annotations

import math

BLANK = "n/a"


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def number(x: float | None, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits (``0.0123``, ``1.23e+04``), or :data:`BLANK`."""
    return f"{x:.{digits}g}" if _finite(x) else BLANK


def signed_percent(fraction: float | None) -> str:
    """A relative change as a whole signed percent: 0.123 -> ``+12 %``, or :data:`BLANK`."""
    return f"{100 * fraction:+.0f} %" if _finite(fraction) else BLANK
