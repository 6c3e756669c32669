"""`kpiwatch silence`: sinks.silence's own command line (add, list, expire, ack)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from streams.cli.base import Command, examples


@click.command(
    "silence",
    cls=Command,
    short_help="add, list and expire silences, acknowledge alerts (kpiwatch silence add --help)",
    help="Add, list and expire silences, acknowledge alerts, in the workers' Redis "
    "(KPIWATCH_REDIS_URL). The arguments are the silence tool's: kpiwatch silence --help.",
    epilog=examples(
        "kpiwatch silence add store=us-1 sku=~A-.* --duration 2h --comment restocking",
        "kpiwatch silence list --expired",
        "kpiwatch silence add --help",
    ),
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("silence_args", nargs=-1, type=click.UNPROCESSED)
def silence(silence_args: tuple[str, ...]) -> int:
    return run(silence_args)


def run(argv: Sequence[str]) -> int:
    """The silence tool on `argv`; Redis out of reach is exit 1 with one line, no traceback."""
    from redis.exceptions import ConnectionError as RedisDown

    from sinks.silence import main as silence_main

    try:
        return silence_main(list(argv))
    except RedisDown as exc:
        print(f"kpiwatch silence: cannot reach Redis: {exc}", file=sys.stderr)
        return 1
