"""`kpiwatch alerts resend`: dead-lettered alerts sent again, once their sink is back."""

from __future__ import annotations

import asyncio
import sys

import click

from streams.cli import inputs
from streams.cli.base import Group, examples
from streams.cli.options import KafkaArgs, kafka_options


@click.group(
    "alerts",
    cls=Group,
    short_help="alerts the sinks gave up on: resend them",
    epilog=examples(
        "kpiwatch alerts resend --dry-run",
        "kpiwatch alerts resend --sink ops-dingtalk --since 2h",
    ),
)
def alerts() -> None:
    """Alerts the sinks gave up on: resend them."""


@alerts.command(
    "resend",
    short_help="send dead-lettered alerts again, once their sink is back",
    help="Read the alerts-dead-letter topic (where a worker puts the alerts a sink "
    "still refused after every retry) and send each record's alerts again through that "
    "sink, with the worker's sinks file (KPIWATCH_SINKS_FILE, KPIWATCH_WEBHOOK_URL), retry "
    "policy and rate limits. Nothing is sent twice: alerts the workers' dedupe ledger in "
    "Redis knows as delivered are dropped, what is sent goes into that ledger, and each "
    "record sent is marked in Redis as re-sent (30 days), so running the command again "
    "sends nothing again; a record that fails again stays for the next run. A transition "
    "older than one of its fingerprint already delivered is skipped as superseded, so a "
    "firing never lands after its own resolve. One line per record on stdout, a summary "
    "on stderr; exit 1 if a record could not be sent.",
    epilog=examples(
        "kpiwatch alerts resend --dry-run",
        "kpiwatch alerts resend --sink ops-dingtalk --since 2h",
        "kpiwatch alerts resend --since 2026-11-30T08:00:00+08:00 --redis-url redis://redis:6379/0",
    ),
)
@kafka_options
@click.option("--redis-url", help="the workers' Redis (KPIWATCH_REDIS_URL)")
@click.option("--sink", metavar="NAME", help="only the records of this sink")
@click.option(
    "--since",
    metavar="WHEN",
    help="only records dead-lettered since WHEN: 30m, 2h, 1d ago, or an ISO time with zone",
)
@click.option("--dry-run", is_flag=True, help="list what would be sent; send and mark nothing")
def resend(
    kafka: KafkaArgs, redis_url: str | None, sink: str | None, since: str | None, dry_run: bool
) -> int:
    from redis.exceptions import RedisError

    from streams.resend import parse_since
    from streams.resend import resend as run

    settings = inputs.settings(kafka, redis_url=redis_url)
    try:
        after = parse_since(since) if since else None
        tally = asyncio.run(run(settings, sink=sink, since=after, dry_run=dry_run, out=sys.stdout))
    except ValueError as exc:
        print(f"kpiwatch alerts resend: {exc}", file=sys.stderr)
        return 2
    except RedisError as exc:
        print(f"kpiwatch alerts resend: Redis: {exc}; nothing more was sent", file=sys.stderr)
        return 1
    print(f"kpiwatch alerts resend: {tally.summary(dry_run)}", file=sys.stderr)
    return 1 if tally.failed else 0
