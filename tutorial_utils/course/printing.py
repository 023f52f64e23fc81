"""Numbers as the notebooks' checked cells print them: the same text on any honest machine.

Another CPU, a GPU or another thread count changes float results by about 1e-7 relative per
operation (1e-6 to 1e-5 after a few layers). A checked cell must print nothing that such a change
can flip (``tests/test_numerics_perturbation.py`` re-runs the notebooks under one), so:

* a lesson number is printed with few decimals (:func:`fixed`), and a value that rounds to zero
  prints as zero, never ``-0.00`` (the sign of a rounded zero is the machine's rounding);
* a statistic of noise-level effects (the sign of a 1e-5 effect, the order of near-ties) is not
  printed in a checked cell; :func:`named_entries` names only entries clearly above the noise.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

__all__ = ["fixed", "named_entries"]


def fixed(value: Any, decimals: int = 2, width: int = 0, sign: bool = False) -> str:
    """``value`` with ``decimals`` decimals (right-aligned in ``width``); ``sign`` prints ``+`` on
    positives. A value that rounds to zero prints ``0.00`` (`` 0.00`` with ``sign``, so columns
    stay aligned), whatever the sign of the unrounded value."""
    v = float(value)
    if math.isfinite(v) and round(v, decimals) == 0:
        v = 0.0
    text = f"{v:{'+' if sign else ''}.{decimals}f}"
    if sign and v == 0.0:
        text = " " + text[1:]
    return f"{text:>{width}}"


def named_entries(entries: Iterable[tuple[str, float]], min_abs: float = 0.02,
                  decimals: int = 2) -> str:
    """``"a1.h5 +0.32, a1.h1 +0.16"``: the entries (name, value) whose ``|value| >= min_abs``,
    in the order given; ``"none with |value| >= 0.02"`` when there is none. Entries below
    ``min_abs`` are left out because their order among near-zero values is the machine's
    rounding, not a finding."""
    kept = [f"{name} {fixed(v, decimals, sign=True).strip()}" for name, v in entries
            if abs(float(v)) >= min_abs]
    return ", ".join(kept) or f"none with |value| >= {min_abs:g}"
