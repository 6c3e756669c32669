"""Option sets several commands share, each handed to the command as one typed value."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from streams.cli.base import IsoTime, SectionOption

F = TypeVar("F", bound=Callable[..., Any])

EVENT_FILES = "event files: JSON lines, or CSV (.csv or --format csv), one row per order line"
REFERENCE = "reference data (CSV; formats in streams/reference.py)"
PATH = click.Path(path_type=Path)


@dataclass(frozen=True)
class FileArgs:
    """How to read an event file (connectors.files.FileOptions before it is checked)."""

    format: Literal["jsonl", "csv"] | None
    kind: Literal["order", "ad_spend", "inventory"] | None
    columns: Path | None
    delimiter: str | None
    timezone: str | None
    encoding: str
    rejects: Path | None


@dataclass(frozen=True)
class ReferenceArgs:
    reporting_currency: str | None
    fx: Path | None
    costs: Path | None
    targets: Path | None
    teams: Path | None


@dataclass(frozen=True)
class KafkaArgs:
    broker: str | None
    topic_prefix: str | None


@dataclass(frozen=True)
class SimulationArgs:
    stores: int
    skus: int
    hours: int
    seed: int
    start: datetime | None
    incident_rate: float | None


def _packed(
    cls: type[Any], name: str, options: list[Callable[[F], F]], **fixed: Any
) -> Callable[[F], F]:
    """Add `options` to a command and hand their values (and `fixed`) to it as one `cls`
    named `name`."""

    def decorate(handler: F) -> F:
        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {f.name: kwargs.pop(f.name) for f in fields(cls) if f.name not in fixed}
            return handler(*args, **kwargs, **{name: cls(**values, **fixed)})

        decorated: Any = wrapper
        for option in reversed(options):
            decorated = option(decorated)
        return decorated  # type: ignore[no-any-return]

    return decorate


def file_options(*, file_format: bool = True) -> Callable[[F], F]:
    """The event-file options; `file_format=False` where --format is the output's."""

    def section(*names: str, **kwargs: Any) -> Callable[[F], F]:
        return click.option(*names, cls=SectionOption, section=EVENT_FILES, **kwargs)

    options = [
        section(
            "--format",
            type=click.Choice(["jsonl", "csv"]),
            help="default: by file suffix",
        ),
        section(
            "--kind",
            type=click.Choice(["order", "ad_spend", "inventory"]),
            help="what every row is (CSV without a `type` column)",
        ),
        section(
            "--columns",
            type=PATH,
            metavar="MAP",
            help="YAML or JSON mapping the export's column names to ours, e.g. {订单号: order_id}",
        ),
        section("--delimiter", help="CSV delimiter (default: read from the header line)"),
        section(
            "--timezone",
            metavar="AREA/CITY",
            help="local time of timestamps written without a zone (else such rows are rejected)",
        ),
        section("--encoding", default="utf-8-sig", help="CSV encoding (default UTF-8)"),
        section(
            "--rejects",
            type=PATH,
            metavar="FILE",
            help="write rejected rows to FILE as CSV (line, reason, the row), to fix and re-import",
        ),
    ]
    if not file_format:  # `scorecard --format` is its output's: its files go by their suffix
        return _packed(FileArgs, "files", options[1:], format=None)
    return _packed(FileArgs, "files", options)


def reference_options(handler: F) -> F:
    def section(*names: str, **kwargs: Any) -> Callable[[F], F]:
        return click.option(*names, cls=SectionOption, section=REFERENCE, **kwargs)

    return _packed(
        ReferenceArgs,
        "reference",
        [
            section(
                "--reporting-currency",
                help="currency of money KPIs (KPIWATCH_REPORTING_CURRENCY, default USD)",
            ),
            section("--fx", type=PATH, help="FX rates: date,currency,rate"),
            section(
                "--costs",
                type=PATH,
                help="unit costs: platform,marketplace,store,sku,unit_cost,currency",
            ),
            section(
                "--targets", type=PATH, help="monthly targets: month,level,...,amount,currency"
            ),
            section("--teams", type=PATH, help="store owners: platform,marketplace,store,team"),
        ],
    )(handler)


def kafka_options(handler: F) -> F:
    return _packed(
        KafkaArgs,
        "kafka",
        [
            click.option("--broker", help="Kafka bootstrap host:port (KPIWATCH_KAFKA_BOOTSTRAP)"),
            click.option("--topic-prefix", help="prefix of every topic (KPIWATCH_TOPIC_PREFIX)"),
        ],
    )(handler)


def simulation_options(handler: F) -> F:
    return _packed(
        SimulationArgs,
        "simulation",
        [
            click.option("--stores", type=int, default=3, help="number of stores (default 3)"),
            click.option("--skus", type=int, default=4, help="SKUs per store (default 4)"),
            click.option("--hours", type=int, default=48, help="hours of traffic (default 48)"),
            click.option("--seed", type=int, default=7, help="random seed (default 7)"),
            click.option(
                "--start",
                type=IsoTime(),
                help="first hour, ISO 8601 with zone (default: 2 days ago, UTC)",
            ),
            click.option(
                "--incident-rate",
                type=float,
                metavar="R",
                help="random incidents (stockout, ACoS spike, silent feed, sales cliff) per "
                "store per day, besides the demo's stockout and ACoS spike; 0 disables "
                "(default 0.05)",
            ),
        ],
    )(handler)
