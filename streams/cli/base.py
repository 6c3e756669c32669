"""click classes every kpiwatch command shares: help in sections, argparse-style usage, types."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

import click


class _Formatter(click.HelpFormatter):
    """`usage: kpiwatch ...`, in lower case as it has always been printed."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, "usage: " if prefix is None else prefix)


class _Context(click.Context):
    formatter_class = _Formatter


class SectionOption(click.Option):
    """An option listed under its own heading in --help (an argparse argument group)."""

    def __init__(self, *args: Any, section: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


def _unabbreviated(command: click.Command, ctx: click.Context, args: list[str]) -> list[str]:
    """`--win 7d` as `--window 7d`: a unique prefix of a long option names it, as argparse
    allowed, so that scripts written against the argparse CLI keep working."""
    names = [n for p in command.get_params(ctx) for n in (*p.opts, *p.secondary_opts)]
    longs = [n for n in names if n.startswith("--")]
    out: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            return out + args[index:]
        name, equals, value = arg.partition("=")
        if name.startswith("--") and name not in names:
            matches = [n for n in longs if n.startswith(name)]
            if len(matches) == 1:
                arg = f"{matches[0]}{equals}{value}"
        out.append(arg)
    return out


class Command(click.Command):
    context_class = _Context

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _unabbreviated(self, ctx, args))

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str | None, list[tuple[str, str]]] = {None: []}  # the command's own first
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(getattr(param, "section", None), []).append(record)
        for title, records in sections.items():
            if not records:
                continue
            with formatter.section(title or "Options"):
                formatter.write_dl(records)


class Group(click.Group):
    context_class = _Context
    command_class = Command
    group_class = type  # subgroups are Groups too

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Only the group's own options, before the command name: the rest is the command's.
        split = next((i for i, a in enumerate(args) if not a.startswith("-")), len(args))
        return super().parse_args(ctx, _unabbreviated(self, ctx, args[:split]) + args[split:])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Commands in the order they were added (the order of the journey), not sorted.
        rows = [
            (name, command.get_short_help_str(limit=formatter.width))
            for name, command in self.commands.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class IsoDay(click.ParamType):
    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not a day such as 2026-11-30", param, ctx)


class IsoTime(click.ParamType):
    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time", param, ctx)


def one_of(*names: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A callback refusing an option given together with another of `names` (argparse's
    mutually exclusive group)."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            given = ctx.meta.setdefault(f"kpiwatch.one_of.{names}", [])
            if given:
                raise click.UsageError(
                    f"argument {param.opts[0]}: not allowed with argument {given[0]}", ctx
                )
            given.append(param.opts[0])
        return value

    return check


def examples(*lines: str) -> str:
    """An `Examples:` epilog whose lines click prints as written."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def paths(values: Sequence[Any]) -> list[Any] | None:
    """A repeatable option's values, or None when it was not given (the default applies)."""
    return list(values) or None
