"""The Kafka runtime: a Faust app whose agents run the shared pipeline over the event topics.

State (dedupe, ledger, KPI buckets, inventory, alert lifecycle) lives in Faust tables backed by
changelog topics, so a restarted worker recovers it. Bad input is dead-lettered with its reason
and source offset; the stream goes on.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import faust

from rules.alerts import Alert
from rules.errors import InvalidEventError
from rules.evaluate import Evaluation
from rules.load import RuleSet
from sinks.base import Sink
from sinks.load import SinksSetup
from streams import metrics
from streams.events import TOPICS, EventKind, decode
from streams.kpi import State, rollup_key
from streams.notify import install_notifier
from streams.pipeline import Pipeline
from streams.query import is_rollup, kpi_rows
from streams.reference import Reference
from streams.settings import Settings

log = logging.getLogger(__name__)

TABLES = ("seen", "ledger", "buckets", "inventory", "alerts", "marks")
ROLLUP_TABLES = {"rollups": "rollups", "alerts": "rollup-alerts"}


def build_app(
    settings: Settings,
    rules: RuleSet,
    sinks: Sequence[Sink],
    reference: Reference | None = None,
    sinks_setup: SinksSetup | None = None,
) -> Any:
    """The Faust app with its topics, tables and agents (faust has no types: hence Any)."""
    app = faust.App(
        settings.topic(settings.app_id),
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        # Every table write is a changelog message; batching them measured +50% events/s
        # (bench/kafka_throughput.py). Faust's default is to send each one at once.
        producer_linger=0.05,
        producer_max_batch_size=1 << 20,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        broker_session_timeout=settings.session_timeout_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        consumer_group_instance_id=settings.instance_id,
        datadir=str(settings.data_dir),
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
    )
    kinds: dict[str, EventKind] = {settings.topic(name): kind for kind, name in TOPICS.items()}
    source = app.topic(*kinds, value_serializer="raw", key_serializer="raw")
    alerts_topic = app.topic(settings.topic("alerts"), value_serializer="raw", key_serializer="raw")
    dead_letter = app.topic(
        settings.topic("dead-letter"), value_serializer="raw", key_serializer="raw"
    )
    rollups_topic = app.topic(
        settings.topic("rollups"), value_serializer="raw", key_serializer="raw"
    )

    def table(name: str) -> Any:
        # Changelog-backed; keys and values go to the changelog as JSON (faust's default).
        return app.Table(name, default=None, partitions=settings.partitions, key_type=str)

    state = State(**{name: table(name) for name in TABLES})
    # Cross-store scopes live in their own tables, written only by the rollup agent, so each
    # table is co-partitioned with exactly one source topic.
    rollup_state = State(**{field: table(name) for field, name in ROLLUP_TABLES.items()})
    pipeline = Pipeline(state, rules, reference)
    rollup_pipeline = Pipeline(rollup_state, rules, reference)
    for each in (pipeline, rollup_pipeline):
        each.observe = _gauge
    # The worker's rule reloader (streams.reload) swaps the rules of both; faust.App has no
    # slot for such an attribute in its type, hence the ignore.
    app.kpiwatch_pipelines = (pipeline, rollup_pipeline)  # type: ignore[attr-defined]

    @app.agent(source, name="process-events")
    async def process_events(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            where = f"{message.topic}/{message.partition}/{message.offset}"
            metrics.EVENTS_IN.labels(topic=message.topic).inc()
            try:
                decoded = decode(event.value, where, kinds[message.topic])
                started = time.perf_counter()
                output = pipeline.process(decoded, message.partition)
                metrics.PROCESSING.labels(topic=message.topic).observe(
                    time.perf_counter() - started
                )
            except InvalidEventError as exc:
                await _dead_letter(dead_letter, message, exc.reason)
                continue
            except Exception as exc:
                # A bug must not stall the partition behind one event: park it and go on.
                log.exception("processing %s failed", where)
                await _dead_letter(dead_letter, message, f"processing failed: {exc!r}")
                continue
            await _send_alerts(alerts_topic, output.alerts)
            for delta in output.rollups:
                await rollups_topic.send(
                    key=rollup_key(delta).encode(), value=json.dumps(delta).encode()
                )

    @app.agent(rollups_topic, name="rollups")
    async def process_rollups(stream: Any) -> None:
        async for event in stream.events():
            try:
                alerts = rollup_pipeline.process_rollup(
                    json.loads(event.value), event.message.partition
                )
            except Exception as exc:
                # Same rule as for input events: park what cannot be processed, keep going.
                log.exception("rollup %s/%s failed", event.message.partition, event.message.offset)
                await _dead_letter(dead_letter, event.message, f"rollup failed: {exc!r}")
                continue
            await _send_alerts(alerts_topic, alerts)

    # The notify agent, /silences and the lag gauge (streams/notify.py).
    install_notifier(app, alerts_topic, settings, sinks, sinks_setup)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body, content_type = metrics.exposition()
        response = web.bytes(body, content_type="text/plain")
        # aiohttp refuses parameters in content_type; Prometheus wants its `version=` one.
        response.headers["Content-Type"] = content_type
        return response

    @app.page("/kpis")
    async def kpis_page(web: Any, request: Any) -> Any:
        """KPI values of this worker's partitions: ?by=store,sku&window=24h&at=ISO-TIME."""
        query = request.query
        try:
            rows = kpi_rows(
                rollup_state if is_rollup(query.get("by", "store")) else state,
                pipeline.reference,
                query.get("by", "store"),
                query.get("window", "1d"),
                query.get("at"),
            )
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)
        return web.json({"kpis": rows})

    @app.page("/state")
    async def state_page(web: Any, request: Any) -> Any:
        """Raw table contents, for debugging and for comparing the two runtimes."""
        return web.json(
            {
                "buckets": dict(state.buckets.items()),
                "inventory": dict(state.inventory.items()),
                "rollups": dict(rollup_state.rollups.items()),
            }
        )

    return app


def _gauge(evaluation: Evaluation) -> None:
    """The KPI value a rule just looked at, as a Prometheus gauge (undefined removes the
    series). The snapshot's value, not the judged one: a guard not met still has a value."""
    kpi = evaluation.rule.kpi.name
    metrics.KPI_GAUGES.set(
        evaluation.rule.name, kpi, evaluation.snapshot.labels, evaluation.snapshot.values.get(kpi)
    )


async def _send_alerts(topic: Any, alerts: Sequence[Alert]) -> None:
    for alert in alerts:
        if alert.muted:  # inside a mute calendar: counted and kept in the lifecycle, not sent
            metrics.ALERTS.labels(rule=alert.rule, status=f"{alert.status}-muted").inc()
            continue
        metrics.ALERTS.labels(rule=alert.rule, status=alert.status).inc()
        await topic.send(key=alert.fingerprint.encode(), value=alert.model_dump_json().encode())


async def _dead_letter(topic: Any, message: Any, reason: str) -> None:
    log.warning(
        "dead-lettered %s/%s/%s: %s", message.topic, message.partition, message.offset, reason
    )
    metrics.DEAD_LETTERED.labels(topic=message.topic).inc()
    await topic.send(
        key=message.key,
        value=dead_letter_record(
            message.topic, message.partition, message.offset, message.value, reason
        ),
    )


def dead_letter_record(
    topic: str, partition: int, offset: int, value: bytes | None, reason: str
) -> bytes:
    """What a dead-lettered event looks like: the reason, where it came from, and its bytes."""
    text: str | None
    try:
        text = value.decode() if value is not None else None
    except UnicodeDecodeError:
        text = None
    record: dict[str, Any] = {
        "reason": reason,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "value": text,
        "value_base64": base64.b64encode(value).decode() if value is not None else None,
        "dead_lettered_at": datetime.now(UTC).isoformat(),
    }
    return json.dumps(record).encode()
