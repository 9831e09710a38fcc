"""The knob search of the benchmark at matched fluency (:mod:`steer.eval.matched`): the setting of a method's knob
whose continuations cost a given fluency.

:func:`search_knob` brackets the budget by doubling or halving from the knob's start, then narrows the bracket by
interpolating log-ratio against log-knob (a bisection step whenever interpolation would land near an end), until a
setting lands within ``tol`` of the budget or ``max_evals`` settings were tried; it returns the tried setting closest
to the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from steer.eval.methods import Knob


def search_knob(
    evaluate: Callable[[float], float],
    knob: Knob,
    target: float,
    memo: dict[float, float],
    tol: float = 0.05,
    max_evals: int = 8,
) -> float:
    """The setting of ``knob`` whose ``evaluate(x)`` (a ratio that grows with x) is closest to ``target``.

    Args:
        evaluate: x -> ratio (each call is a costly run; results are kept in ``memo``).
        knob: the start and bounds of x.
        target: the ratio to reach.
        memo: {x: ratio} of settings already tried (shared between targets: a second budget reuses the first's).
        tol: stop once a tried setting is within this relative distance of ``target``.
        max_evals: new settings tried at most in this call.

    Returns:
        The tried setting whose ratio is closest to ``target`` (in log ratio).
    """
    if target <= 0:
        raise ValueError(f"target ratio must be positive, got {target}")

    def gap(x: float) -> float:
        r = memo[x]
        return abs(math.log(r / target)) if 0 < r < math.inf else math.inf

    def run(x: float) -> None:
        x = knob.clip(x)
        if x not in memo:
            memo[x] = float(evaluate(x))

    new = 0
    while new < max_evals:
        if memo and min(gap(x) for x in memo) <= math.log1p(tol):
            break
        high = [x for x, r in memo.items() if r >= target]
        above = min(high) if high else None
        low = [x for x, r in memo.items() if r < target and (above is None or x < above)]
        below = max(low) if low else None
        if above is None and below is None:
            x = knob.clip(knob.start)
        elif above is None:
            assert below is not None
            if below >= knob.hi:
                break
            x = knob.clip(below * 2)
        elif below is None:
            if above <= knob.lo:
                break
            x = knob.clip(above / 2)
        else:
            if knob.integer and above - below <= 1:
                break
            ra, rb = memo[above], memo[below]
            lb, la = math.log(below), math.log(above)
            t = 0.5
            if 0 < rb < ra < math.inf:
                t = (math.log(target) - math.log(rb)) / (math.log(ra) - math.log(rb))
            t = min(max(t, 0.2), 0.8)  # bisect rather than creep along one end of the bracket
            x = knob.clip(math.exp(lb + t * (la - lb)))
            if x in (above, below):
                x = knob.clip((above + below) / 2)
                if x in (above, below):
                    break
        if x in memo:
            break
        run(x)
        new += 1
    if not memo:
        run(knob.start)
    return min(memo, key=gap)
