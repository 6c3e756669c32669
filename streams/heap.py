"""Keep Python's cyclic garbage collector off the engine's state.

The state is millions of small dicts and lists (decoded JSON) that make no reference cycles and
live long. CPython's collector still scans every one of them in a full collection: measured on
200,000 events (bench/), one pause of 0.6 s at 1.7 million objects, growing with the state, and
the young collections it triggers slow the hot path. `settle` collects the young generations
(cheap) and then freezes what survived: frozen objects are still freed by reference counting
when dropped, only cycles among them wait for `sweep`, which the worker runs rarely.
"""

from __future__ import annotations

import gc
import time
from typing import Final

# Young collections every 10,000 allocations (CPython's default is 700): each scans at most
# what was allocated since, so pauses stay in the milliseconds.
THRESHOLDS: Final = (10_000, 20, 20)
SETTLE_EVERY_S: Final = 10.0
SWEEP_EVERY_S: Final = 3600.0


class Heap:
    """When to settle and sweep; `after_batch` is cheap to call after every batch."""

    def __init__(self) -> None:
        self._settled = self._swept = time.monotonic()

    @staticmethod
    def set_up() -> None:
        gc.set_threshold(*THRESHOLDS)

    def after_batch(self) -> None:
        now = time.monotonic()
        if now - self._swept >= SWEEP_EVERY_S:
            self._swept = self._settled = now
            sweep()
        elif now - self._settled >= SETTLE_EVERY_S:
            self._settled = now
            settle()


def settle() -> None:
    gc.collect(1)
    gc.freeze()


def sweep() -> None:
    """A full collection over everything, frozen or not (one long pause), then freeze again."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
