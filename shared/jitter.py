"""Back-off and jitter for the workers, from a random generator of their own: the workers run
beside request handling (and in the tests beside Hypothesis drawing examples, which fails a run
whose global `random` state moved while it drew), and the global state is not theirs to advance.
"""

from __future__ import annotations

import random

__all__ = ["backoff_seconds", "jitter", "jittered"]

jitter = random.Random()


def backoff_seconds(
    failures: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Exponential back-off with jitter: between half and all of min(cap, base * 2^(n-1))."""
    delay = min(cap, base * float(2 ** max(0, min(failures - 1, 30))))
    return delay / 2 + (rng or jitter).uniform(0, delay / 2)


def jittered(seconds: float, spread: float, rng: random.Random | None = None) -> float:
    """`seconds` scaled by a random factor in [1 - spread, 1 + spread]."""
    return seconds * (rng or jitter).uniform(1 - spread, 1 + spread)
