"""Run `kpiwatch worker` with one diagnostic patch, to measure what a cost really is.

Diagnostics only (used by kafka_throughput.py --variant); never a way to run production:
  none            - the worker exactly as shipped
  producer-buffer - faust's ProducerBuffer flushes every 10,000 messages instead of every 100
  no-changelog    - table writes stay in memory and send no changelog (state is NOT durable):
                    the upper bound of any changelog-write optimisation
  linger          - faust producer_linger 50 ms and 1 MiB batches (the default is no linger)
  threaded-producer - faust producer_threaded: the producer runs in its own thread and loop

Usage: python bench/worker_variant.py VARIANT worker --no-console
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def _producer_buffer() -> None:
    from faust.transport.producer import ProducerBuffer

    ProducerBuffer.max_messages = 10_000


def _no_changelog() -> None:
    from faust.tables.table import Table

    def on_key_set(self: Any, key: Any, value: Any) -> None:
        return None

    setattr(Table, "on_key_set", on_key_set)  # noqa: B010 - mypy forbids assigning a method


def _app_settings(**extra: Any) -> None:
    import faust

    import streams.app

    def app(*args: Any, **kwargs: Any) -> Any:
        return faust.App(*args, **{**kwargs, **extra})

    patched = type("FaustWithSettings", (), {"App": staticmethod(app)})
    setattr(streams.app, "faust", patched)  # noqa: B010 - mypy forbids replacing a module


def _none() -> None:
    return None


def _linger() -> None:
    _app_settings(producer_linger=0.05, producer_max_batch_size=1024 * 1024)


def _threaded_producer() -> None:
    _app_settings(producer_threaded=True)


VARIANTS: dict[str, Callable[[], None]] = {
    "none": _none,
    "producer-buffer": _producer_buffer,
    "no-changelog": _no_changelog,
    "linger": _linger,
    "threaded-producer": _threaded_producer,
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in VARIANTS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(VARIANTS)}}} worker [OPTIONS]")
    VARIANTS[sys.argv[1]]()
    from streams.cli import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
