"""The `kpiwatch` command: one module per command, built on click; `main` runs it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click

from rules.errors import ConfigError, KpiwatchError
from streams.cli.base import Group, examples
from streams.heap import Heap


@click.group(
    "kpiwatch",
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"]},  # argparse's, kept
    help="Real-time KPI alerts for e-commerce sellers. Start with `kpiwatch demo`.",
    epilog=examples(
        "kpiwatch demo",
        "kpiwatch replay events.jsonl --fx fx.csv",
        "kpiwatch -v worker --rules rules/library",
        "kpiwatch COMMAND --help",
    ),
)
@click.option("-v", "--verbose", is_flag=True, help="log progress to stderr")
def kpiwatch(verbose: bool) -> None:
    Heap.set_up()
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _add_commands() -> None:
    # After `kpiwatch` exists: the command modules import this package's helper modules.
    from streams.cli.alerts import alerts
    from streams.cli.connect import connect
    from streams.cli.demo import demo
    from streams.cli.kpis import kpis
    from streams.cli.produce import produce
    from streams.cli.produce_fx import produce_fx
    from streams.cli.replay import replay
    from streams.cli.report import report
    from streams.cli.rules import rules
    from streams.cli.scorecard import scorecard
    from streams.cli.silence import silence
    from streams.cli.simulate import simulate
    from streams.cli.worker import worker

    # In the order of --help: reading files, then the Kafka runtime, then operating it.
    for command in (
        demo,
        replay,
        kpis,
        scorecard,
        report,
        simulate,
        produce,
        produce_fx,
        worker,
        connect,
        silence,
        alerts,
        rules,
    ):
        kpiwatch.add_command(command)


_add_commands()


def main(argv: Sequence[str] | None = None) -> int:
    """Run `kpiwatch` on `argv` (default: the process's); returns the exit code. A usage error
    exits 2 (SystemExit, as argparse did), a failure is one line on stderr and 1 (2 for rule
    problems), never a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["silence"]:
        # The silence tool has its own parser and its own --help: hand it everything.
        from streams.cli.silence import run

        return run(args[1:])
    try:
        return _invoke(args)
    except ConfigError as exc:
        print(f"kpiwatch: {len(exc.problems)} problem(s) in the rules:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except KpiwatchError as exc:
        print(f"kpiwatch: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `kpiwatch replay ... | head`
        return 0


def _invoke(args: list[str]) -> int:
    try:
        with kpiwatch.make_context("kpiwatch", args) as ctx:
            code: int = kpiwatch.invoke(ctx)
    except click.exceptions.Exit as exc:  # --help
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:  # usage errors: exit 2 with the usage line
        exc.show()
        raise SystemExit(exc.exit_code) from None
    return code
