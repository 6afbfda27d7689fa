"""Numbers as text, the same in notebooks, sentences, the report and the knob explorer.

One blank for a value that is no number (None, NaN, an infinity, a string or a bool):
:data:`BLANK`, ``n/a``. The knob explorer once showed ``–`` where the rest said ``n/a``;
a reader now meets one word for "no value" everywhere.

- :func:`number`: significant digits, the default for any measured quantity;
- :func:`signed_percent`: a relative change (a fraction) as a whole signed percent;
- :func:`percent_change`: the same, from the old and the new value;
- :func:`percent`: a share (a fraction) as a percent with fixed decimals;
- :func:`formatted`: any other format spec (fixed decimals, exponents) with the same blank.
"""

from __future__ import annotations

import math
from typing import Any

BLANK = "n/a"


def finite_value(x: Any) -> float | None:
    """``x`` as a finite float, or None for anything else (None, NaN, ±inf, text, bools)."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def formatted(x: Any, spec: str) -> str:
    """``format(x, spec)`` for a finite number (``".2f"``, ``".1e"``, ``"+.1%"``), else
    :data:`BLANK`."""
    v = finite_value(x)
    return BLANK if v is None else format(v, spec)


def number(x: Any, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits (``0.0123``, ``1.23e+04``), or :data:`BLANK`."""
    return formatted(x, f".{digits}g")


def signed_percent(fraction: Any) -> str:
    """A relative change as a whole signed percent: 0.123 -> ``+12 %``, or :data:`BLANK`."""
    v = finite_value(fraction)
    return BLANK if v is None else f"{100 * v:+.0f} %"


def percent_change(old: Any, new: Any) -> str:
    """The change from ``old`` to ``new`` relative to ``|old|``, as :func:`signed_percent`:
    (1, 1.5) -> ``+50 %``; :data:`BLANK` when either is no number or ``old`` is 0."""
    a, b = finite_value(old), finite_value(new)
    return BLANK if a is None or b is None or a == 0 else signed_percent((b - a) / abs(a))


def percent(fraction: Any, decimals: int = 1) -> str:
    """A share as a percent with ``decimals`` decimals: 0.7093 -> ``70.9 %``, or :data:`BLANK`."""
    v = finite_value(fraction)
    return BLANK if v is None else f"{100 * v:.{decimals}f} %"
