"""The Kafka runtime: a Faust app whose agents run the shared pipeline over the event topics.

Two agents, each over one Faust table (memory store, compacted changelog topic):
  process-events  the `events` topic (and the per-kind topics of the first contract), in
                  batches per partition: a partition's stores' state in the `state` table
  rollups         the `rollups` topic: cross-store scopes in the `rollup-state` table
A batch is written to its changelog partition in the order that makes it atomic
(streams.durable) by a producer of our own, then its outputs (alerts, rollup messages, dead
letters) are sent, then its input is acknowledged. A worker that starts on a partition, first
or after another worker died, completes a batch cut short and sends the last batch's outputs
again; messages the state already holds are skipped. So a crash at any point loses nothing and
counts nothing twice, and the alerts a crash might repeat are dropped by the sinks' idempotency
keys. Bad input is dead-lettered per event with its reason and source offset; the stream goes on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import faust
import pydantic_core
from aiokafka import AIOKafkaProducer

from rules.errors import InvalidEventError
from rules.evaluate import Evaluation
from rules.load import RuleSet
from sinks.base import Sink
from sinks.load import SinksSetup
from streams import metrics
from streams.durable import mark_sent, recover, write_batch
from streams.events import EVENTS_TOPIC, TOPICS, EventKind, decode_message
from streams.kpi import Stores
from streams.notify import install_notifier
from streams.pipeline import Message, Output, Pipeline
from streams.query import StateReader, is_rollup, kpi_rows
from streams.reference import Reference
from streams.rollup import RollupPipeline
from streams.settings import Settings
from streams.state import DEFAULT_CACHE_BYTES, RS, StateStore

log = logging.getLogger(__name__)

STATE_TABLE: Final = "state"
ROLLUP_TABLE: Final = "rollup-state"
TABLES: Final = (STATE_TABLE, ROLLUP_TABLE)
# Messages per batch, and how long a batch waits to fill: state is written once per key per
# batch, so bigger batches write less; the wait bounds the latency it adds at low load.
BATCH_MESSAGES: Final = 2000
BATCH_WITHIN: Final = 0.05


class Producer:
    """The worker's own producer: idempotent (ordered per partition, no duplicates on retry)
    and awaited per batch, which Faust's buffered producer does not offer. Started by a Faust
    task once the loop runs; the agents wait for it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._started = asyncio.Event()

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1024 * 1024,
        )
        await producer.start()
        self._producer = producer
        self._started.set()

    async def ready(self) -> AIOKafkaProducer:
        await self._started.wait()
        if self._producer is None:  # pragma: no cover - set before the event
            raise RuntimeError("producer not started")
        return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class KafkaChangelog:
    """streams.durable.Changelog on the worker's producer."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._pending: list[Any] = []

    async def send(self, partition: int, key: str, value: bytes | None) -> None:
        producer = await self.producer.ready()
        future = await producer.send(self.topic, value, key=key.encode(), partition=partition)
        self._pending.append(future)
        metrics.MESSAGES_WRITTEN.labels(kind="changelog").inc()

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            await future


class Outputs:
    """Sends what batches produce, to their topics, and waits for the broker."""

    def __init__(self, producer: Producer, settings: Settings) -> None:
        self.producer = producer
        self.alerts = settings.topic("alerts")
        self.rollups = settings.topic("rollups")
        self.dead = settings.topic("dead-letter")
        self._pending: list[Any] = []

    async def send(self, outputs: dict[str, Any]) -> None:
        for alert in outputs.get("alerts", ()):
            key = alert["fingerprint"].encode()
            await self._send(self.alerts, pydantic_core.to_json(alert), key, None, "alerts")
        for partition, message in enumerate(outputs.get("rollups", ())):
            value = pydantic_core.to_json(message)
            key = str(message["src"]).encode()
            await self._send(self.rollups, value, key, partition, "rollups")
        for record in outputs.get("dead", ()):
            key = record.get("key")
            await self._send(
                self.dead,
                pydantic_core.to_json(record),
                None if key is None else key.encode(),
                None,
                "dead-letter",
            )

    async def _send(
        self, topic: str, value: bytes, key: bytes | None, partition: int | None, kind: str
    ) -> None:
        producer = await self.producer.ready()
        self._pending.append(await producer.send(topic, value, key=key, partition=partition))
        metrics.MESSAGES_WRITTEN.labels(kind=kind).inc()

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            await future


@dataclass
class Decoded:
    """A partition's share of a batch, decoded: messages to process, dead letters, and the
    input offsets they take the state to."""

    messages: list[Message] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    events: int = 0


class EventsProcessor:
    """The process-events agent's work: a batch of Kafka events, per partition, made durable."""

    def __init__(
        self,
        table: Any,
        rules: RuleSet,
        reference: Reference,
        settings: Settings,
        producer: Producer,
        changelog_topic: str,
    ) -> None:
        self.table = table
        self._rules = rules
        self.reference = reference
        self.settings = settings
        self.stores = Stores(reference)
        self.changelog = KafkaChangelog(producer, changelog_topic)
        self.outputs = Outputs(producer, settings)
        self.kinds: dict[str, EventKind | None] = {settings.topic(EVENTS_TOPIC): None}
        self.kinds.update({settings.topic(name): kind for kind, name in TOPICS.items()})
        self.runners: dict[int, Pipeline] = {}
        self.cache_bytes = max(DEFAULT_CACHE_BYTES // settings.partitions, 16 * 2**20)

    @property
    def rules(self) -> RuleSet:
        return self._rules

    @rules.setter
    def rules(self, rules: RuleSet) -> None:
        self._rules = rules
        for pipeline in self.runners.values():
            pipeline.rules = rules

    async def runner(self, partition: int) -> Pipeline:
        found = self.runners.get(partition)
        if found is None:
            store = StateStore(self.table.data, self.cache_bytes)
            recovered = await recover(store, partition, self.changelog)
            if recovered.rolled_forward:
                log.warning(
                    "partition %d: completed a batch cut short (%d keys)",
                    partition,
                    recovered.rolled_forward,
                )
            await self.outputs.send(recovered.outputs)
            await self.outputs.flush()
            found = Pipeline(
                store,
                self._rules,
                self.reference,
                partition=partition,
                rollup_partitions=self.settings.partitions,
                stores=self.stores,
            )
            found.judge.observe = _gauge
            self.runners[partition] = found
        return found

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget partitions another worker now owns (their keys too: Faust recovers them
        afresh from the changelog if they come back)."""
        gone = set(partitions) & set(self.runners)
        for partition in gone:
            del self.runners[partition]
        _drop_partitions(self.table, gone)

    async def batch(self, events: Sequence[Any]) -> None:
        started = time.perf_counter()
        by_partition: dict[int, list[Any]] = {}
        for event in events:
            by_partition.setdefault(event.message.partition, []).append(event)
        sent: list[tuple[int, int, dict[str, Any]]] = []
        counted = 0
        for partition, group in by_partition.items():
            pipeline = await self.runner(partition)
            decoded = self.decode(pipeline, partition, group)
            counted += decoded.events
            output, poisoned = self.process(pipeline, decoded)
            meta = pipeline.state.meta()
            meta["pos"].update(decoded.positions)
            outputs = {
                "alerts": [alert.model_dump(mode="json") for alert in output.alerts],
                "rollups": output.rollups,
                "dead": [*decoded.dead, *poisoned, *_late(output, decoded)],
            }
            await write_batch(pipeline.store, partition, self.changelog, meta, outputs)
            sent.append((partition, meta["seq"], outputs))
        await self.changelog.flush()
        for _, _, outputs in sent:
            self.observe(outputs)
            await self.outputs.send(outputs)
        await self.outputs.flush()
        for partition, seq, _ in sent:
            await mark_sent(self.runners[partition].store, partition, self.changelog, seq)
        for event in events:
            event.ack()
        if counted:
            metrics.PROCESSING.labels(topic="events").observe(
                (time.perf_counter() - started) / counted
            )

    def decode(self, pipeline: Pipeline, partition: int, group: Sequence[Any]) -> Decoded:
        decoded = Decoded()
        applied = pipeline.state.meta()["pos"]
        for event in group:
            message = event.message
            topic, offset = message.topic, message.offset
            if offset < applied.get(topic, 0):
                decoded.skipped += 1  # held by the state already (read again after a restart)
                continue
            decoded.positions[topic] = offset + 1
            where = f"{topic}/{partition}/{offset}"
            found = decode_message(message.value, where, self.kinds.get(topic))
            metrics.EVENTS_IN.labels(topic=topic).inc(len(found))
            decoded.events += len(found)
            valid = [e for e in found if not isinstance(e, InvalidEventError)]
            for index, error in enumerate(found):
                if isinstance(error, InvalidEventError):
                    decoded.dead.append(dead_letter_record(message, error.reason, index, found))
            if valid:
                sources = [
                    f"{where}#{i}" if len(found) > 1 else where
                    for i, e in enumerate(found)
                    if not isinstance(e, InvalidEventError)
                ]
                decoded.messages.append(Message(valid, where, sources))
        if decoded.skipped:
            metrics.SKIPPED.inc(decoded.skipped)
        return decoded

    def process(self, pipeline: Pipeline, decoded: Decoded) -> tuple[Output, list[dict[str, Any]]]:
        """Run the batch; a message that makes the pipeline fail (a bug, never bad input) is
        dead-lettered and the batch runs again without it, so one cannot stall a partition."""
        faults: dict[int, str] = {}
        while True:
            kept = [m for i, m in enumerate(decoded.messages) if i not in faults]
            try:
                output = pipeline.process(kept)
            except Exception:
                log.exception(
                    "partition %d: a batch failed; finding the message", pipeline.partition
                )
                pipeline.store.discard()
                pipeline.state.forget_indexes()
                index, failure = self._culprit(pipeline, decoded.messages, set(faults))
                faults[index] = failure
                log.error("%s dead-lettered: %s", decoded.messages[index].source, failure)
                continue
            poisoned = [_poisoned(decoded.messages[i], failure) for i, failure in faults.items()]
            return output, poisoned

    def _culprit(
        self, pipeline: Pipeline, messages: list[Message], poison: set[int]
    ) -> tuple[int, str]:
        try:
            for index, message in enumerate(messages):
                if index in poison:
                    continue
                try:
                    pipeline.process([message])
                except Exception as exc:
                    return index, f"processing failed: {exc!r}"
            return next(i for i in range(len(messages)) if i not in poison), "processing failed"
        finally:
            pipeline.store.discard()
            pipeline.state.forget_indexes()

    def observe(self, outputs: dict[str, Any]) -> None:
        for alert in outputs["alerts"]:
            status = f"{alert['status']}-muted" if alert.get("muted") else alert["status"]
            metrics.ALERTS.labels(rule=alert["rule"], status=status).inc()
        for record in outputs["dead"]:
            metrics.DEAD_LETTERED.labels(topic=record["topic"]).inc()


class RollupsProcessor:
    """The rollups agent's work: source messages per rollup partition, made durable."""

    def __init__(
        self,
        table: Any,
        rules: RuleSet,
        reference: Reference,
        settings: Settings,
        producer: Producer,
        changelog_topic: str,
    ) -> None:
        self.table = table
        self._rules = rules
        self.reference = reference
        self.settings = settings
        self.changelog = KafkaChangelog(producer, changelog_topic)
        self.outputs = Outputs(producer, settings)
        self.runners: dict[int, RollupPipeline] = {}

    @property
    def rules(self) -> RuleSet:
        return self._rules

    @rules.setter
    def rules(self, rules: RuleSet) -> None:
        self._rules = rules
        for pipeline in self.runners.values():
            pipeline.rules = rules

    async def runner(self, partition: int) -> RollupPipeline:
        found = self.runners.get(partition)
        if found is None:
            store = StateStore(self.table.data)
            recovered = await recover(store, partition, self.changelog)
            await self.outputs.send(recovered.outputs)
            await self.outputs.flush()
            found = RollupPipeline(
                store,
                self._rules,
                self.reference,
                partition=partition,
                sources=self.settings.partitions,
                idle_after=self.settings.rollup_idle_s,
            )
            found.judge.observe = _gauge
            self.runners[partition] = found
        return found

    def revoke(self, partitions: Iterable[int]) -> None:
        gone = set(partitions) & set(self.runners)
        for partition in gone:
            del self.runners[partition]
        _drop_partitions(self.table, gone)

    async def batch(self, events: Sequence[Any]) -> None:
        by_partition: dict[int, list[Any]] = {}
        for event in events:
            by_partition.setdefault(event.message.partition, []).append(event)
        sent: list[tuple[int, int, dict[str, Any]]] = []
        for partition, group in by_partition.items():
            pipeline = await self.runner(partition)
            applied = pipeline.state.meta()["pos"]
            messages, positions = [], {}
            for event in group:
                message = event.message
                if message.offset < applied.get(message.topic, 0):
                    continue
                positions[message.topic] = message.offset + 1
                try:
                    messages.append(pydantic_core.from_json(message.value))
                except ValueError:
                    log.error(
                        "rollup message %s/%s is not JSON; skipped", partition, message.offset
                    )
            output = pipeline.process(messages)
            meta = pipeline.state.meta()
            meta["pos"].update(positions)
            outputs = {"alerts": [a.model_dump(mode="json") for a in output.alerts]}
            await write_batch(pipeline.store, partition, self.changelog, meta, outputs)
            sent.append((partition, meta["seq"], outputs))
        await self.changelog.flush()
        for _, _, outputs in sent:
            for alert in outputs["alerts"]:
                status = f"{alert['status']}-muted" if alert.get("muted") else alert["status"]
                metrics.ALERTS.labels(rule=alert["rule"], status=status).inc()
            await self.outputs.send(outputs)
        await self.outputs.flush()
        for partition, seq, _ in sent:
            await mark_sent(self.runners[partition].store, partition, self.changelog, seq)
        for event in events:
            event.ack()


def _drop_partitions(table: Any, partitions: set[int]) -> None:
    if not partitions:
        return
    prefixes = tuple(f"{p}{RS}" for p in partitions)
    data = table.data
    for key in [k for k in list(data.keys()) if isinstance(k, str) and k.startswith(prefixes)]:
        data.pop(key, None)


def _late(output: Output, decoded: Decoded) -> list[dict[str, Any]]:
    return [
        {
            "reason": exc.reason,
            "source": exc.source,
            "topic": exc.source.split("/", 1)[0],
            "dead_lettered_at": datetime.now(UTC).isoformat(),
        }
        for exc in output.rejected
    ]


def _poisoned(message: Message, failure: str) -> dict[str, Any]:
    return {
        "reason": failure,
        "source": message.source,
        "topic": message.source.split("/", 1)[0],
        "events": [event.model_dump(mode="json") for event in message.events],
        "dead_lettered_at": datetime.now(UTC).isoformat(),
    }


def dead_letter_record(
    message: Any, reason: str, index: int = 0, found: Sequence[Any] = ()
) -> dict[str, Any]:
    """What a dead-lettered event looks like: the reason, where it came from (topic, partition,
    offset and, in a message of several events, its index), and the message's bytes."""
    value: bytes | None = message.value
    text: str | None
    try:
        text = value.decode() if value is not None else None
    except UnicodeDecodeError:
        text = None
    record: dict[str, Any] = {
        "reason": reason,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "value": text,
        "value_base64": base64.b64encode(value).decode() if value is not None else None,
        "dead_lettered_at": datetime.now(UTC).isoformat(),
    }
    if len(found) > 1:
        record["index"] = index
    key = message.key
    if isinstance(key, bytes):
        with contextlib.suppress(UnicodeDecodeError):
            record["key"] = key.decode()
    return record


def _gauge(evaluation: Evaluation) -> None:
    """The KPI value a rule just looked at, as a Prometheus gauge (undefined removes the
    series). The snapshot's value, not the judged one: a guard not met still has a value."""
    kpi = evaluation.rule.kpi.name
    metrics.KPI_GAUGES.set(
        evaluation.rule.name, kpi, evaluation.snapshot.labels, evaluation.snapshot.values.get(kpi)
    )


def build_app(
    settings: Settings,
    rules: RuleSet,
    sinks: Sequence[Sink],
    reference: Reference | None = None,
    sinks_setup: SinksSetup | None = None,
) -> Any:
    """The Faust app with its topics, tables and agents (faust has no types: hence Any)."""
    reference = reference or Reference()
    app = faust.App(
        settings.topic(settings.app_id),
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
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
    inputs = [settings.topic(EVENTS_TOPIC), *(settings.topic(n) for n in TOPICS.values())]
    source = app.topic(*inputs, value_serializer="raw", key_serializer="raw")
    alerts_topic = app.topic(settings.topic("alerts"), value_serializer="raw", key_serializer="raw")
    rollups_topic = app.topic(
        settings.topic("rollups"), value_serializer="raw", key_serializer="raw"
    )

    def table(name: str) -> Any:
        # Keys are str and values the JSON bytes streams.state wrote, on the changelog as they
        # are (a table's own changelog topic would JSON-encode them again).
        changelog = app.topic(
            f"{app.conf.id}-{name}-changelog",
            key_type=str,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            compacting=True,
            acks=False,
            internal=True,
            maxsize=131_072,
            allow_empty=True,
        )
        return app.Table(
            name,
            default=None,
            partitions=settings.partitions,
            key_type=str,
            value_type=bytes,
            changelog_topic=changelog,
        )

    state_table, rollup_table = table(STATE_TABLE), table(ROLLUP_TABLE)
    producer = Producer(settings)
    app_id = settings.topic(settings.app_id)
    events = EventsProcessor(
        state_table, rules, reference, settings, producer, f"{app_id}-{STATE_TABLE}-changelog"
    )
    rollups = RollupsProcessor(
        rollup_table, rules, reference, settings, producer, f"{app_id}-{ROLLUP_TABLE}-changelog"
    )
    # The worker's rule reloader (streams.reload) swaps the rules of both; faust.App has no
    # slot for such an attribute in its type, hence the ignore.
    app.kpiwatch_processors = (events, rollups)  # type: ignore[attr-defined]
    rollups_name = settings.topic("rollups")

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", ())
        events.revoke({tp.partition for tp in revoked if tp.topic in inputs})
        rollups.revoke({tp.partition for tp in revoked if tp.topic == rollups_name})

    async def on_shutdown(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await producer.stop()

    async def start_producer() -> None:
        await producer.start()

    app.on_partitions_revoked.connect(on_revoked)
    app.on_before_shutdown.connect(on_shutdown)
    app.task(start_producer)

    @app.agent(source, name="process-events")
    async def process_events(stream: Any) -> None:
        async for batch in stream.noack().noack_take(BATCH_MESSAGES, within=BATCH_WITHIN):
            await events.batch(batch)

    @app.agent(rollups_topic, name="rollups")
    async def process_rollups(stream: Any) -> None:
        async for batch in stream.noack().noack_take(BATCH_MESSAGES, within=BATCH_WITHIN):
            await rollups.batch(batch)

    # The notify agent, /silences and the lag gauge (streams/notify.py).
    install_notifier(app, alerts_topic, settings, sinks, sinks_setup)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body, content_type = metrics.exposition()
        response = web.bytes(body, content_type="text/plain")
        # aiohttp refuses parameters in content_type; Prometheus wants its `version=` one.
        response.headers["Content-Type"] = content_type
        return response

    def reader() -> StateReader:
        return StateReader(StateStore(state_table.data), StateStore(rollup_table.data), reference)

    @app.page("/kpis")
    async def kpis_page(web: Any, request: Any) -> Any:
        """KPI values of this worker's partitions: ?by=store,sku&window=24h&at=ISO-TIME."""
        query = request.query
        try:
            rows = kpi_rows(
                reader(), query.get("by", "store"), query.get("window", "1d"), query.get("at")
            )
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)
        return web.json({"kpis": rows, "rollup": is_rollup(query.get("by", "store"))})

    @app.page("/state")
    async def state_page(web: Any, request: Any) -> Any:
        """This worker's state as one canonical document, for debugging and comparison."""
        return web.json(reader().dump())

    return app
