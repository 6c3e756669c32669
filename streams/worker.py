"""Start the Faust worker: topics first, then rules and sinks, then the app until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal
from typing import Final

import faust

from connectors.kafka import ensure_topics
from rules.load import load_default, load_paths
from sinks import http
from sinks.base import Sink
from sinks.config import Delivery
from sinks.console import ConsoleSink
from sinks.load import load_setup_path
from sinks.registry import build
from sinks.webhook import WebhookSink
from streams.app import TABLES, build_app
from streams.events import EVENTS_TOPIC, TOPICS
from streams.fxfeed import FxFeed
from streams.heap import Heap
from streams.reference import load_reference
from streams.reload import RuleReloader
from streams.settings import Settings

log = logging.getLogger(__name__)

# The topics a worker creates (before KPIWATCH_TOPIC_PREFIX), besides its tables' changelogs.
WORKER_TOPICS: Final = (
    EVENTS_TOPIC,
    *TOPICS.values(),
    "alerts",
    "alerts-dead-letter",
    "dead-letter",
    "rollups",
    "fx-rates",
)


def run_worker(settings: Settings, *, console: bool = True) -> int:
    """Run until stopped; returns the process exit code."""
    Heap.set_up()
    rules = load_paths(settings.rules) if settings.rules else load_default()
    sinks = build_sinks(settings, console=console)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    names = [settings.topic(name) for name in WORKER_TOPICS]
    loop.run_until_complete(ensure_topics(settings.kafka_bootstrap, names, settings.partitions))
    # Faust would create its changelogs itself, but checks their partition count before the
    # broker's metadata has caught up and then crashes the agent; made here, they are ready.
    loop.run_until_complete(
        ensure_topics(
            settings.kafka_bootstrap,
            changelog_topics(settings),
            settings.partitions,
            compacted=True,
        )
    )
    reference = load_reference(
        settings.reporting_currency,
        fx=settings.fx_file,
        costs=settings.costs_file,
        targets=settings.targets_file,
        teams=settings.teams_file,
    )
    feed = FxFeed(settings.kafka_bootstrap, settings.topic("fx-rates"), reference.fx)
    log.info("fx: %d rate(s) from the fx-rates topic", loop.run_until_complete(feed.catch_up()))
    setup = load_setup_path(settings.sinks_file) if settings.sinks_file is not None else None
    app = build_app(settings, rules, sinks, reference, sinks_setup=setup)
    app.task(feed.follow)
    if setup is not None and setup.schedules:  # scheduled reports (streams/reports/)
        from streams.reports.kafka import worker_scheduler

        processors = app.kpiwatch_processors
        scheduler = worker_scheduler(
            settings, setup, reference, lambda: processors[1].rules.scorecards
        )
        app.task(scheduler.run)
    if settings.rules:  # the shipped rules never change under a running worker
        app.task(RuleReloader(settings.rules, app.kpiwatch_processors).watch)
    log.info("worker %s: %d rule(s), sinks %s", app.conf.id, len(rules), [s.name for s in sinks])
    worker = faust.Worker(app, loop=loop, loglevel="INFO", redirect_stdouts=False)
    with contextlib.suppress(NotImplementedError, AttributeError):
        loop.add_signal_handler(signal.SIGUSR1, log_tasks)
    worker.execute_from_commandline()
    return 0


def log_tasks() -> None:
    """`kill -USR1 <pid>`: log where every task of the worker waits (a stuck worker's why)."""
    tasks = asyncio.all_tasks()
    log.warning("SIGUSR1: %d task(s)", len(tasks))
    for task in tasks:
        stream = io.StringIO()
        task.print_stack(limit=12, file=stream)
        log.warning("%s\n%s", task.get_name(), stream.getvalue())


def build_sinks(settings: Settings, *, console: bool = True) -> list[Sink]:
    """The sinks of KPIWATCH_SINKS_FILE (every problem reported at once), plus the console and
    the KPIWATCH_WEBHOOK_URL shortcut; one HTTP client with explicit timeouts serves them all."""
    setup = load_setup_path(settings.sinks_file) if settings.sinks_file is not None else None
    client = http.new_client(setup.delivery.timeout if setup is not None else Delivery().timeout)
    sinks: list[Sink] = [ConsoleSink()] if console else []
    if setup is not None:
        sinks.extend(build(config, client) for config in setup.sinks)
    if settings.webhook_url is not None:
        sinks.append(WebhookSink(settings.webhook_url, client))
    return sinks


def changelog_topics(settings: Settings) -> list[str]:
    """The changelog topic of every table, named as Faust names them: <app id>-<table>-changelog."""
    app_id = settings.topic(settings.app_id)
    return [f"{app_id}-{table}-changelog" for table in TABLES]
