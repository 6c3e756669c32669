"""`kpiwatch worker`: the Kafka runtime (Faust worker)."""

from __future__ import annotations

from pathlib import Path

import click

from streams.cli import inputs
from streams.cli.base import Command, examples, paths
from streams.cli.options import PATH, KafkaArgs, kafka_options


@click.command(
    "worker",
    cls=Command,
    short_help="run the Kafka runtime (Faust worker)",
    help="Consume the event topics, keep KPI tables, evaluate rules and deliver alerts "
    "to the alerts topic, the console and (if KPIWATCH_WEBHOOK_URL is set) a JSON "
    "webhook. Metrics on http://WEB_HOST:WEB_PORT/metrics. Stop with Ctrl-C or "
    "SIGTERM.",
    epilog=examples(
        "kpiwatch worker",
        "kpiwatch worker --broker kafka:9092 --rules rules/library --web-port 6067",
        "KPIWATCH_REDIS_URL=redis://redis:6379/0 kpiwatch worker --instance-id worker-1"
        " --no-console",
    ),
)
@kafka_options
@click.option(
    "--rules",
    "rule_paths",
    type=PATH,
    multiple=True,
    metavar="PATH",
    help="rule file or folder (repeatable; default: KPIWATCH_RULES or shipped)",
)
@click.option("--web-port", type=int, help="HTTP port (default 6066)")
@click.option("--instance-id", help="static group membership id for this worker")
@click.option("--no-console", is_flag=True, help="do not print alerts on stdout")
def worker(
    kafka: KafkaArgs,
    rule_paths: tuple[Path, ...],
    web_port: int | None,
    instance_id: str | None,
    no_console: bool,
) -> int:
    from streams.worker import run_worker

    settings = inputs.settings(
        kafka, rules=paths(rule_paths), web_port=web_port, instance_id=instance_id
    )
    return run_worker(settings, console=not no_console)
