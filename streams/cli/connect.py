"""`kpiwatch connect`: run a marketplace connector, producing to Kafka."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from rules.errors import KpiwatchError
from streams.cli import inputs
from streams.cli.base import Command, examples
from streams.cli.options import PATH, KafkaArgs, kafka_options
from streams.sourcenames import SECTIONS

_NAMES = ", ".join(f"{name} (section {key}:)" for name, key in SECTIONS.items())


@click.command(
    "connect",
    cls=Command,
    short_help="run a marketplace connector: poll its API / receive its pushes, produce to Kafka",
    help="Run SOURCE as the section of FILE for it describes, until stopped "
    "(Ctrl-C or SIGTERM). Polled cursors are saved in Redis (KPIWATCH_REDIS_URL) only "
    "after Kafka acknowledged the page, so a restart resumes without losing data; "
    "secrets come from the environment or files named in FILE. Sources: "
    f"{_NAMES}. Example configs: deploy/kpiwatch/connect.example.yaml.",
    epilog=examples(
        "kpiwatch connect amazon-sp --config connect.yaml",
        "kpiwatch connect shopify --config connect.yaml --listen 0.0.0.0:8081",
        "kpiwatch connect amazon-ads --config connect.yaml --once",
    ),
)
@click.argument("source", type=click.Choice(sorted(SECTIONS)), metavar="SOURCE")
@click.option("--config", type=PATH, required=True, metavar="FILE")
@click.option(
    "--once",
    is_flag=True,
    help="one pass over every polled source, then exit (1 if a pass failed); for cron",
)
@click.option(
    "--listen",
    default="127.0.0.1:8081",
    metavar="HOST:PORT",
    help="where webhook/push receivers listen (default 127.0.0.1:8081)",
)
@click.option(
    "--metrics",
    default="127.0.0.1:9108",
    metavar="HOST:PORT",
    help="Prometheus metrics address (default 127.0.0.1:9108; port 0: none)",
)
@click.option("--redis", metavar="URL", help="Redis for cursors (KPIWATCH_REDIS_URL)")
@kafka_options
def connect(
    source: str,
    config: Path,
    once: bool,
    listen: str,
    metrics: str,
    redis: str | None,
    kafka: KafkaArgs,
) -> int:
    from streams.connect import Options
    from streams.connect import connect as run

    options = Options(once, *_address(listen, "--listen"), *_address(metrics, "--metrics"))
    return asyncio.run(run(source, config, inputs.settings(kafka, redis_url=redis), options))


def _address(value: str, option: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise KpiwatchError(f"{option}: expected HOST:PORT, got {value!r}")
    return host, int(port)
