"""`kpiwatch produce-fx`: FX rates onto the fx-rates topic, for running workers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from streams.cli import inputs
from streams.cli.base import Command, examples
from streams.cli.options import PATH, KafkaArgs, kafka_options


@click.command(
    "produce-fx",
    cls=Command,
    short_help="publish FX rates from a CSV file to the fx-rates topic (running workers use them)",
    help="Check FX_FILE (date,currency,rate: 1 currency = rate reporting currency "
    "from that date) and put each rate on the fx-rates topic. Running workers read money "
    "in the reporting currency with it from then on, for every day it is in effect.",
    epilog=examples(
        "kpiwatch produce-fx fx.csv",
        "kpiwatch produce-fx fx.csv --broker kafka:9092 --topic-prefix staging.",
    ),
)
@click.argument("fx", type=PATH, metavar="FX_FILE")
@kafka_options
def produce_fx(fx: Path, kafka: KafkaArgs) -> int:
    from connectors.kafka import ensure_topics
    from streams.fxfeed import publish
    from streams.reference import FX_COLUMNS, csv_rows, load_reference

    settings = inputs.settings(kafka)
    load_reference(settings.reporting_currency, fx=fx)  # every bad row, with its line
    rows = [row for _, row in csv_rows(fx, FX_COLUMNS)]
    topic = settings.topic("fx-rates")

    async def run() -> int:
        await ensure_topics(settings.kafka_bootstrap, [topic], settings.partitions)
        return await publish(settings.kafka_bootstrap, topic, rows)

    print(f"kpiwatch produce-fx: {asyncio.run(run())} rate(s) sent to {topic}", file=sys.stderr)
    return 0
