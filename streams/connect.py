"""`kpiwatch connect SOURCE --config FILE`: run one marketplace connector until stopped.

Polled sources run `connectors.base.poll_forever` (or one pass each with `--once`): every page
goes to Kafka and only once the broker acknowledged it is its cursor saved in Redis, so a
restart resumes after the last page that is safe, and a page replayed after a crash produces
the same event ids, which the engine counts once. Receivers (webhooks, pushes) are served on
`--listen`. Records a connector cannot map are dead-lettered with their reason.

Progress is visible as Prometheus metrics on `--metrics-port` (the last successful sync per
source and store is what an SRE alerts on when a feed goes quiet) and as log lines with -v.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from pydantic import ValidationError

from connectors.api import make_client
from connectors.base import Page, RunStats, Source, poll_forever, run_source
from connectors.checkpoint import RedisCheckpoints
from connectors.kafka import Coalescer, EventProducer, ensure_topics
from rules.errors import ConfigError, InvalidEventError, Problem, ServiceError
from rules.fileconfig import unresolved
from rules.yamlfile import line_of, parse_yaml, plain, problems_of, read_text
from streams.events import EVENTS_TOPIC, Event
from streams.metrics import BrokerWatch
from streams.settings import Settings
from streams.sources import SOURCES, Built, Context, Section, SourceKind

log = logging.getLogger(__name__)

DEAD_LETTER: Final = "dead-letter"
PUSH_LINGER_S: Final = 0.1


# --- The config file ----------------------------------------------------------------------


def load_section(
    path: Path, name: str, environ: Mapping[str, str] | None = None
) -> tuple[SourceKind, Section]:
    """The section of `path` for source `name`, validated, secrets read; every problem at once
    (file and line) in a ConfigError."""
    kind = SOURCES.get(name)
    if kind is None:
        known = ", ".join(sorted(SOURCES))
        raise ConfigError([Problem(str(path), None, f"unknown source {name!r} (known: {known})")])
    text = read_text(path)
    return kind, _section(text, str(path), kind, os.environ if environ is None else environ)


def _section(text: str, source: str, kind: SourceKind, environ: Mapping[str, str]) -> Section:
    document = parse_yaml(text, source, top_key=kind.key)
    known = {k.key for k in SOURCES.values()}
    problems = [
        Problem(
            source,
            line_of(document, (key,)),
            f"{key}: not a source section (known: {', '.join(sorted(known))})",
        )
        for key in (document if isinstance(document, dict) else {})
        if key not in known
    ]
    if not isinstance(document, dict) or kind.key not in document:
        # Where the sections start (a misspelt one is reported above, on its own line).
        line = line_of(document, (kind.key,)) or 1
        problems.append(Problem(source, line, f"no '{kind.key}:' section in the file"))
        raise ConfigError(problems)
    try:
        section = kind.model.model_validate(plain(document[kind.key]))
    except ValidationError as exc:
        raise ConfigError(problems + problems_of(exc, document, (kind.key,), source)) from exc
    for where, missing in unresolved(section, environ, (kind.key,)):
        name = ".".join(str(part) for part in where)
        problems.append(Problem(source, line_of(document, where), f"{name}: {missing}"))
    if problems:
        raise ConfigError(problems)
    return section


# --- Metrics ------------------------------------------------------------------------------


class ConnectorMetrics:
    """Prometheus series of one connector process (its own registry: no worker series here)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.last_success = Gauge(
            "kpiwatch_connector_last_success_timestamp_seconds",
            "When a source last finished a page (or a receiver handed off events) without error.",
            ["source", "store"],
            registry=self.registry,
        )
        self.events = Counter(
            "kpiwatch_connector_events_total",
            "Events produced to Kafka.",
            ["source", "store"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "kpiwatch_connector_rejected_total",
            "Platform records that could not be mapped, dead-lettered with their reason.",
            ["source"],
            registry=self.registry,
        )
        self.pages = Counter(
            "kpiwatch_connector_pages_total",
            "API pages read and checkpointed.",
            ["source"],
            registry=self.registry,
        )
        self.failures = Counter(
            "kpiwatch_connector_pass_failures_total",
            "Passes that failed after retries (the next pass resumes from the checkpoint).",
            ["source"],
            registry=self.registry,
        )

    def page(self, source: Source, page: Page) -> None:
        """A page is saved: count it and stamp the source's store as in sync."""
        # Its rejected records are counted where they are dead-lettered (Producing.rejected).
        self.pages.labels(source.name).inc()
        self.last_success.labels(source.name, store_of(source.name)).set(time.time())
        log.info(
            "%s: page saved, %d event(s), %d rejected",
            source.name,
            len(page.events),
            len(page.rejected),
        )

    def failed(self, source: Source, error: Exception) -> None:
        self.failures.labels(source.name).inc()

    def produced(self, source: str, events: Sequence[Event]) -> None:
        stores: dict[str, int] = {}
        for event in events:
            stores[event.store_id] = stores.get(event.store_id, 0) + 1
        for store, count in stores.items():
            self.events.labels(source, store).inc(count)


def store_of(source_name: str) -> str:
    """`amazon_sp:orders:us-1` -> `us-1` (source names end with the store they serve)."""
    return source_name.rsplit(":", 1)[-1]


# --- Running ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    once: bool = False
    listen_host: str = "127.0.0.1"
    listen_port: int = 8081
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9108


class Producing:
    """The sink every source and receiver shares: events to their topics, rejected records to
    the dead-letter topic, each returning once Kafka acknowledged."""

    def __init__(
        self, producer: EventProducer, settings: Settings, metrics: ConnectorMetrics, name: str
    ) -> None:
        self._producer, self._settings, self._metrics, self._name = (
            producer,
            settings,
            metrics,
            name,
        )
        # Pushes come an event at a time: a store's events of ~100 ms share a message.
        self._pushes = Coalescer(producer.send_acknowledged, linger=PUSH_LINGER_S)
        # At 0 from the start, so that "no failure" is a 0 on a dashboard, not a gap.
        metrics.rejected.labels(name)
        metrics.failures.labels(name)

    async def events(self, events: Sequence[Event]) -> None:
        try:
            await self._producer.send_batch(events)
        except KafkaError as exc:
            # A failed pass, not a dead process: the cursor stays, the next pass retries.
            raise ServiceError(f"Kafka did not take {len(events)} event(s): {exc!r}") from exc
        self._metrics.produced(self._name, events)

    async def received(self, events: Sequence[Event]) -> None:
        """A receiver's hand-off: also the receiver's 'last successful sync' per store."""
        try:
            await self._pushes.submit(events)
        except KafkaError as exc:
            # A receiver's failed pass: the platform retries the push.
            self._metrics.failures.labels(self._name).inc()
            raise ServiceError(f"Kafka did not take {len(events)} event(s): {exc!r}") from exc
        self._metrics.produced(self._name, events)
        for store in {event.store_id for event in events}:
            self._metrics.last_success.labels(self._name, store).set(time.time())

    async def rejected(self, error: InvalidEventError) -> None:
        log.warning("rejected %s: %s", error.source, error.reason)
        self._metrics.rejected.labels(self._name).inc()
        record = {
            "reason": error.reason,
            "source": error.source,
            "connector": self._name,
            "dead_lettered_at": datetime.now(UTC).isoformat(),
        }
        await self._producer.send_raw(
            self._settings.topic(DEAD_LETTER), json.dumps(record).encode()
        )


async def connect(name: str, config: Path, settings: Settings, options: Options) -> int:
    """Run source `name` as `config` describes; the process exit code (2: the file is wrong,
    every problem printed with file:line)."""
    try:
        kind, section = load_section(config, name)
    except ConfigError as exc:
        # The command's generic report would call these "problem(s) in the rules".
        print(f"kpiwatch connect: {len(exc.problems)} problem(s) in {config}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    if not settings.redis_url:
        raise ServiceError(
            "kpiwatch connect keeps its cursors in Redis: set KPIWATCH_REDIS_URL "
            "(e.g. redis://127.0.0.1:6379/0)"
        )
    names = [settings.topic(t) for t in (EVENTS_TOPIC, DEAD_LETTER)]
    await ensure_topics(settings.kafka_bootstrap, names, settings.partitions)
    metrics = ConnectorMetrics()
    watching: asyncio.Task[None] | None = None
    if options.metrics_port and not options.once:
        start_http_server(options.metrics_port, options.metrics_host, registry=metrics.registry)
        broker = BrokerWatch(metrics.registry, settings.kafka_bootstrap)
        watching = asyncio.create_task(broker.watch())
    checkpoints = RedisCheckpoints.from_url(settings.redis_url)
    try:
        async with (
            make_client() as client,
            EventProducer(settings.kafka_bootstrap, settings.topic_prefix) as producer,
        ):
            producing = Producing(producer, settings, metrics, name)
            context = Context(
                client, checkpoints, producing.events, producing.rejected, producing.received
            )
            built = await kind.build(section, context)
            try:
                if options.once:
                    return await _once(built, context, metrics)
                return await _forever(built, section, context, metrics, options)
            finally:
                for close in built.closers:
                    await close()
    finally:
        if watching is not None:
            watching.cancel()
        await checkpoints.close()


async def _once(built: Built, context: Context, metrics: ConnectorMetrics) -> int:
    """One pass over every polled source; 1 if any failed (its checkpoint is where it stopped)."""
    if not built.sources:
        log.error("this source only receives pushes; --once has nothing to poll")
        return 2
    failed = 0
    for source in built.sources:
        stats = RunStats()
        try:
            await run_source(
                source,
                context.sink,
                context.checkpoints,
                on_rejected=context.on_rejected,
                stats=stats,
                on_page=metrics.page,
                feed=built.feeds.get(source.name),
            )
        except ServiceError as exc:
            failed += 1
            log.error("%s: pass failed: %s", source.name, exc)
        print(
            f"kpiwatch connect: {source.name}: {stats.pages} page(s), {stats.events} event(s), "
            f"{stats.rejected} rejected",
            flush=True,
        )
    return 1 if failed else 0


async def _forever(
    built: Built, section: Section, context: Context, metrics: ConnectorMetrics, options: Options
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if len(built.receivers) > 1:  # pragma: no cover - no source has two yet
        raise ServiceError("a source with more than one receiver needs one port each")
    runners = [await _serve(r.app(), options) for r in built.receivers]
    tasks = [
        asyncio.create_task(
            poll_forever(
                source,
                context.sink,
                context.checkpoints,
                interval=section.poll_interval,
                on_rejected=context.on_rejected,
                on_page=metrics.page,
                on_failure=metrics.failed,
                feed=built.feeds.get(source.name),
            ),
            name=source.name,
        )
        for source in built.sources
    ]
    tasks += [asyncio.create_task(c.run(), name=type(c).__name__) for c in built.consumers]
    for source in built.sources:
        metrics.failures.labels(source.name)
    log.info(
        "connect: %d polled source(s), %d receiver(s) on %s:%d; metrics on %s:%d",
        len(tasks),
        len(runners),
        options.listen_host,
        options.listen_port,
        options.metrics_host,
        options.metrics_port,
    )
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for task in done - {stopping}:
        # poll_forever only ends on a bug; a half-dead connector would look alive, so stop
        # and let the supervisor restart us from the checkpoints.
        log.error("%s stopped: %r", task.get_name(), task.exception())
        code = 1
    for task in (stopping, *tasks):
        task.cancel()
    await asyncio.gather(stopping, *tasks, return_exceptions=True)
    for runner in runners:
        await runner.cleanup()
    return code


async def _serve(app: web.Application, options: Options) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, options.listen_host, options.listen_port).start()
    return runner
