"""Random jitter for the workers' back-offs, from a generator of their own: the workers run
beside request handling (and in the tests beside Hypothesis drawing examples, which fails a run
whose global `random` state moved while it drew), and the global state is not theirs to advance.
"""

from __future__ import annotations

import random

jitter = random.Random()
