"""`kpiwatch produce`: an event file onto the Kafka topics."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from rules.errors import InvalidEventError
from streams.cli import inputs
from streams.cli.base import Command, examples
from streams.cli.options import PATH, FileArgs, KafkaArgs, file_options, kafka_options


@click.command(
    "produce",
    cls=Command,
    short_help="validate an event file (JSON lines or CSV) and put it on the Kafka topics",
    help="Create the topics if needed and produce each valid event to its topic, "
    "keyed by store_id. Broker and topic prefix come from KPIWATCH_KAFKA_BOOTSTRAP "
    "and KPIWATCH_TOPIC_PREFIX unless given.",
    epilog=examples(
        "kpiwatch produce events.jsonl",
        "kpiwatch produce orders.csv --kind order --rejects rejects.csv --broker kafka:9092",
        "KPIWATCH_TOPIC_PREFIX=staging. kpiwatch produce events.jsonl",
    ),
)
@click.argument("events", type=PATH, metavar="EVENTS_FILE")
@file_options()
@kafka_options
def produce(events: Path, files: FileArgs, kafka: KafkaArgs) -> int:
    from connectors.kafka import EventProducer, ensure_topics
    from streams.events import EVENTS_TOPIC

    settings = inputs.settings(kafka)
    source = inputs.EventFile(events, files)

    async def run() -> tuple[int, list[InvalidEventError]]:
        names = [settings.topic(EVENTS_TOPIC)]
        await ensure_topics(settings.kafka_bootstrap, names, settings.partitions)
        async with EventProducer(settings.kafka_bootstrap, settings.topic_prefix) as producer:
            return await producer.send_records(source.records())

    try:
        sent, refused = asyncio.run(run())
        for exc in refused:
            source(exc)
    finally:
        source.close()
    print(f"kpiwatch produce: {sent} events sent, {source.count} rejected", file=sys.stderr)
    return 0
