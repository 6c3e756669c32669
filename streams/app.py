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
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import faust
import pydantic_core
from aiokafka import AIOKafkaProducer
from aiokafka.errors import IllegalStateError
from faust.types import TP

from rules.errors import InvalidEventError
from rules.evaluate import Evaluation
from rules.load import RuleSet
from sinks.base import Sink
from sinks.load import SinksSetup
from streams import faststore, metrics, reportmetrics
from streams.durable import mark_sent, recover, write_batch
from streams.events import EVENTS_TOPIC, TOPICS, EventKind, decode_message
from streams.health import install_health
from streams.heap import Heap
from streams.kpi import Stores
from streams.notify import install_notifier
from streams.pipeline import Message, Output, Pipeline
from streams.query import StateReader, is_rollup, kpi_rows
from streams.reference import Reference
from streams.rollup import RollupPipeline
from streams.scorecards import scorecard_rows
from streams.settings import Settings
from streams.state import DEFAULT_CACHE_BYTES, RS, StateStore

log = logging.getLogger(__name__)

STATE_TABLE: Final = "state"
ROLLUP_TABLE: Final = "rollup-state"
TABLES: Final = (STATE_TABLE, ROLLUP_TABLE)
# Messages per batch, and how long a batch waits to fill: state is written once per key per
# batch, so bigger batches write less; the wait bounds the latency it adds at low load.
BATCH_MESSAGES: Final = 1000
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


class Inputs:
    """What a partition's state holds decides what is read, not Faust's commits: the input
    topics are declared without acks (Faust neither tracks nor commits them; its stream acks
    messages it skips at a rebalance, which would otherwise commit past data no batch held),
    and after each durable batch the offsets its marker holds are committed. A partition that
    starts past them (offsets committed by something else, or messages Faust fetched and
    dropped at a rebalance) is sought back to them; one the state holds nothing of yet is read
    from the topic's first offset (a fresh group has no committed offset for Faust to seek
    back to, so messages it drops while it recovers would otherwise go unseen)."""

    GAP_WAIT: Final = 10.0  # how long a gap may stay before it is taken as real (retention)
    RESEEK: Final = 0.5  # seconds between seeks while a gap stays (see _gap)

    def __init__(self, app: Any) -> None:
        self.app = app
        # (topic, partition) -> (offset sought, when the gap is taken as real, last seek)
        self._seeking: dict[tuple[str, int], tuple[int, float, float]] = {}
        self._first: dict[tuple[str, int], int] = {}

    def owned(self) -> set[tuple[str, int]]:
        """The partitions this worker holds now: only they are processed (a batch can
        outlive them)."""
        return {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}

    async def admit(
        self, partition: int, events: Sequence[Any], held: dict[str, int]
    ) -> tuple[list[Any], int]:
        """The events to process, in order: none the state already holds, none past a gap.
        Returns them and how many were skipped as held."""
        expected = dict(held)
        kept, skipped = [], 0
        for event in events:
            topic, offset = event.message.topic, event.message.offset
            want = expected.get(topic)
            if want is None:
                want = expected[topic] = await self._first_offset(topic, partition)
            if offset < want:
                skipped += 1
                continue
            if offset > want and not await self._gap(topic, partition, want, offset):
                continue
            self._seeking.pop((topic, partition), None)
            expected[topic] = offset + 1
            kept.append(event)
        return kept, skipped

    async def _first_offset(self, topic: str, partition: int) -> int:
        """The first offset the topic holds now: where a partition the state holds nothing of
        starts (asked once per partition; after its first batch the state holds a position)."""
        key = (topic, partition)
        if key not in self._first:
            tp = TP(topic, partition)
            earliest = await self.app.consumer.earliest_offsets(tp)
            self._first[key] = int(earliest.get(tp) or 0)
        return self._first[key]

    async def _gap(self, topic: str, partition: int, want: int, offset: int) -> bool:
        """True when a gap is to be accepted (the messages are gone), False to drop the message
        while the consumer reads again from where the state is. The seek is repeated while
        messages past the gap keep coming: Faust's drain loop raises its read offset again for
        messages fetched before the seek, and then drops the re-read ones below it."""
        key = (topic, partition)
        now = time.monotonic()
        seeking = self._seeking.get(key)
        if seeking is None or seeking[0] != want:
            log.warning(
                "%s/%d: read from %d but the state holds up to %d; reading again",
                topic,
                partition,
                offset,
                want,
            )
            seeking = (want, now + self.GAP_WAIT, -math.inf)
        if now < seeking[1]:
            if now - seeking[2] >= self.RESEEK:
                await self.app.consumer.seek(TP(topic, partition), want)
                seeking = (want, seeking[1], now)
            self._seeking[key] = seeking
            return False
        log.error(
            "%s/%d: offsets %d..%d are gone from the topic (retention?); going on",
            topic,
            partition,
            want,
            offset - 1,
        )
        self._first.pop(key, None)
        return True

    async def reseek(self) -> None:
        """Seek again each partition whose gap stays though nothing past it comes (a timer):
        `_gap` seeks again only when a message arrives, but Faust may drop every re-read one
        (see there), and on a partition whose end was fetched no other message would come: it
        would stall until new input arrived, with its last messages unprocessed."""
        owned, now = self.owned(), time.monotonic()
        for key, (want, until, last) in list(self._seeking.items()):
            if key not in owned:
                self._seeking.pop(key, None)
            elif now - last >= self.RESEEK:
                with contextlib.suppress(IllegalStateError):  # revoked meanwhile
                    await self.app.consumer.seek(TP(*key), want)
                self._seeking[key] = (want, until, now)

    async def commit(self, positions: dict[int, dict[str, int]]) -> None:
        offsets = {
            TP(topic, partition): offset
            for partition, held in positions.items()
            for topic, offset in held.items()
        }
        if offsets:
            # Faust's own commit path (it drops partitions this worker no longer holds).
            await self.app.consumer._commit(offsets)


@dataclass
class Decoded:
    """A partition's share of a batch, decoded: messages to process and dead letters."""

    messages: list[Message] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0


class Processor:
    """An agent's work on one table: batches of Kafka events, per partition, made durable
    (streams.durable), their outputs sent, their offsets committed. A revocation waits for the
    batch in hand, so a worker never writes for a partition another one owns."""

    def __init__(
        self,
        table: Any,
        rules: RuleSet,
        reference: Reference,
        settings: Settings,
        producer: Producer,
        changelog: str,
        inputs: Inputs,
    ) -> None:
        self.table = table
        self._rules = rules
        self.reference = reference
        self.settings = settings
        self.changelog = KafkaChangelog(producer, changelog)
        self.outputs = Outputs(producer, settings)
        self.inputs = inputs
        self.lock = asyncio.Lock()
        self.runners: dict[int, Any] = {}
        # Revoked at a rebalance and not assigned again yet: no batch writes for them.
        self.revoked: set[int] = set()
        self.gauges = Gauges()
        self.heap = Heap()

    @property
    def rules(self) -> RuleSet:
        return self._rules

    @rules.setter
    def rules(self, rules: RuleSet) -> None:
        self._rules = rules
        for pipeline in self.runners.values():
            pipeline.rules = rules

    async def batch(self, events: Sequence[Any]) -> None:
        async with self.lock:
            held = await self._run(events)
        await self.inputs.commit(held)
        self.heap.after_batch()

    async def _run(self, events: Sequence[Any]) -> dict[int, dict[str, int]]:
        by_partition: dict[int, list[Any]] = {}
        owned = self.inputs.owned()
        for event in events:
            message = event.message
            mine = (message.topic, message.partition) in owned
            if mine and message.partition not in self.revoked:
                by_partition.setdefault(message.partition, []).append(event)
        sent: list[tuple[int, int, dict[str, Any]]] = []
        held: dict[int, dict[str, int]] = {}
        for partition, group in by_partition.items():
            pipeline = await self.runner(partition)
            meta = pipeline.state.meta()
            kept, skipped = await self.inputs.admit(partition, group, meta["pos"])
            if skipped:
                metrics.SKIPPED.inc(skipped)
            if not kept:
                continue
            outputs = self.process(pipeline, partition, kept)
            await self.dead_letter(outputs.pop("dead", []))
            meta = pipeline.state.meta()
            for event in kept:
                meta["pos"][event.message.topic] = event.message.offset + 1
            await write_batch(pipeline.store, partition, self.changelog, meta, outputs)
            sent.append((partition, meta["seq"], outputs))
            held[partition] = dict(meta["pos"])
        self.gauges.flush()
        await self.changelog.flush()
        for _, _, outputs in sent:
            observe(outputs)
            await self.outputs.send(outputs)
        await self.outputs.flush()
        for partition, seq, _ in sent:
            await mark_sent(self.runners[partition].store, partition, self.changelog, seq)
        return held

    async def dead_letter(self, records: list[dict[str, Any]]) -> None:
        """Send a batch's dead letters and wait for the broker, before the batch is written:
        they stay out of its marker, which must fit in one Kafka message however many bad
        events the batch held. A crash before the marker sends them again (at least once)."""
        if records:
            observe({"dead": records})
            await self.outputs.send({"dead": records})
            await self.outputs.flush()

    async def runner(self, partition: int) -> Any:
        """The partition's pipeline; the first time after an assignment, the partition's
        table is brought to whole batches and the last batch's outputs are sent again."""
        found = self.runners.get(partition)
        if found is None:
            store = StateStore(self.table.data, self.cache_bytes)
            recovered = await recover(store, partition, self.changelog)
            if recovered.rolled_forward:
                log.warning(
                    "%s partition %d: rewrote %d key(s) of a batch cut short",
                    self.table.name,
                    partition,
                    recovered.rolled_forward,
                )
            await self.outputs.send(recovered.outputs)
            await self.outputs.flush()
            found = self.runners[partition] = self.make(store, partition)
        return found

    async def revoke(self, partitions: Iterable[int]) -> None:
        """Write nothing more for these partitions, once the batch in hand is written. A
        rebalance revokes every partition a worker holds (Kafka's eager protocol), before the
        new assignment says which stay: `assign` forgets only the others."""
        async with self.lock:
            self.revoked |= set(partitions)

    async def assign(self, partitions: Iterable[int]) -> None:
        """After a rebalance: forget the revoked partitions another worker now owns (their keys
        too: Faust recovers them afresh from the changelog if they come back); keep the state
        of those assigned again, which nobody else wrote meanwhile (streams/faststore.py does
        not read them again)."""
        async with self.lock:
            gone = self.revoked - set(partitions)
            self.revoked.clear()
            for partition in gone & set(self.runners):
                del self.runners[partition]
            _drop_partitions(self.table, gone)

    cache_bytes = DEFAULT_CACHE_BYTES

    def make(self, store: StateStore, partition: int) -> Any:
        raise NotImplementedError

    def process(self, pipeline: Any, partition: int, events: list[Any]) -> dict[str, Any]:
        raise NotImplementedError


class EventsProcessor(Processor):
    """process-events: a partition's stores."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.stores = Stores(self.reference)
        topic = self.settings.topic
        self.kinds: dict[str, EventKind | None] = {topic(EVENTS_TOPIC): None}
        self.kinds.update({topic(name): kind for kind, name in TOPICS.items()})
        self.cache_bytes = max(DEFAULT_CACHE_BYTES // self.settings.partitions, 16 * 2**20)

    def make(self, store: StateStore, partition: int) -> Pipeline:
        pipeline = Pipeline(
            store,
            self._rules,
            self.reference,
            partition=partition,
            rollup_partitions=self.settings.partitions,
            stores=self.stores,
        )
        pipeline.judge.observe = self.gauges
        return pipeline

    def process(self, pipeline: Any, partition: int, events: list[Any]) -> dict[str, Any]:
        started = time.perf_counter()
        decoded = self.decode(partition, events)
        output, poisoned = self.run_isolated(pipeline, decoded)
        if decoded.events:
            metrics.PROCESSING.labels(topic="events").observe(
                (time.perf_counter() - started) / decoded.events
            )
        return {
            "alerts": [alert.model_dump(mode="json") for alert in output.alerts],
            "rollups": output.rollups,
            "dead": [*decoded.dead, *poisoned, *_late(output)],
        }

    def decode(self, partition: int, events: Sequence[Any]) -> Decoded:
        decoded = Decoded()
        counted: dict[str, int] = {}
        for event in events:
            message = event.message
            where = f"{message.topic}/{partition}/{message.offset}"
            found = decode_message(message.value, where, self.kinds.get(message.topic))
            counted[message.topic] = counted.get(message.topic, 0) + len(found)
            decoded.events += len(found)
            valid, sources = [], []
            for index, item in enumerate(found):
                if isinstance(item, InvalidEventError):
                    decoded.dead.append(dead_letter_record(message, item.reason, index, found))
                else:
                    valid.append(item)
                    sources.append(f"{where}#{index}" if len(found) > 1 else where)
            if valid:
                decoded.messages.append(Message(valid, where, sources))
        for topic, count in counted.items():
            metrics.EVENTS_IN.labels(topic=topic).inc(count)
            metrics.DEAD_LETTERED.labels(topic=topic)  # a share of 0, not "no data"
        return decoded

    def run_isolated(
        self, pipeline: Pipeline, decoded: Decoded
    ) -> tuple[Output, list[dict[str, Any]]]:
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
                index, failure = _culprit(pipeline, decoded.messages, set(faults))
                faults[index] = failure
                log.error("%s dead-lettered: %s", decoded.messages[index].source, failure)
                continue
            poisoned = [_poisoned(decoded.messages[i], failure) for i, failure in faults.items()]
            return output, poisoned


def _culprit(pipeline: Pipeline, messages: list[Message], poison: set[int]) -> tuple[int, str]:
    """The first message that fails on its own (the batch state is thrown away after)."""
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


class RollupsProcessor(Processor):
    """rollups: cross-store scopes, from the store partitions' rollup messages."""

    def make(self, store: StateStore, partition: int) -> RollupPipeline:
        pipeline = RollupPipeline(
            store,
            self._rules,
            self.reference,
            partition=partition,
            sources=self.settings.partitions,
            idle_after=self.settings.rollup_idle_s,
        )
        pipeline.judge.observe = self.gauges
        return pipeline

    def process(self, pipeline: Any, partition: int, events: list[Any]) -> dict[str, Any]:
        messages = []
        for event in events:
            try:
                messages.append(pydantic_core.from_json(event.message.value))
            except ValueError:
                log.error(
                    "rollup message %d/%d is not JSON; skipped", partition, event.message.offset
                )
        output = pipeline.process(messages)
        metrics.ROLLUP_MESSAGES.labels(outcome="applied").inc(output.applied)
        metrics.ROLLUP_MESSAGES.labels(outcome="duplicate").inc(output.duplicates)
        return {"alerts": [a.model_dump(mode="json") for a in output.alerts]}


def observe(outputs: dict[str, Any]) -> None:
    for alert in outputs.get("alerts", ()):
        status = f"{alert['status']}-muted" if alert.get("muted") else alert["status"]
        metrics.ALERTS.labels(rule=alert["rule"], status=status).inc()
    for record in outputs.get("dead", ()):
        metrics.DEAD_LETTERED.labels(topic=record["topic"]).inc()


def _drop_partitions(table: Any, partitions: set[int]) -> None:
    if not partitions:
        return
    prefixes = tuple(f"{p}{RS}" for p in partitions)
    data = table.data
    for key in [k for k in list(data.keys()) if isinstance(k, str) and k.startswith(prefixes)]:
        data.pop(key, None)


def _late(output: Output) -> list[dict[str, Any]]:
    return [
        {
            "reason": exc.reason,
            "source": exc.source,
            **_origin(exc.source),
            "dead_lettered_at": datetime.now(UTC).isoformat(),
        }
        for exc in output.rejected
    ]


def _origin(source: str) -> dict[str, Any]:
    """An event's place as the worker names it, `topic/partition/offset[#index]`, in the
    fields every dead letter has (README: topic, partition, offset, index)."""
    place, _, index = source.partition("#")
    parts = place.rsplit("/", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return {"topic": source.split("/", 1)[0]}
    found: dict[str, Any] = {"topic": parts[0], "partition": int(parts[1]), "offset": int(parts[2])}
    if index.isdigit():
        found["index"] = int(index)
    return found


def _poisoned(message: Message, failure: str) -> dict[str, Any]:
    return {
        "reason": failure,
        "source": message.source,
        **_origin(message.source),
        "events": [event.model_dump(mode="json") for event in message.events],
        "dead_lettered_at": datetime.now(UTC).isoformat(),
    }


def dead_letter_record(
    message: Any, reason: str, index: int = 0, found: Sequence[Any] = ()
) -> dict[str, Any]:
    """What a dead-lettered event looks like: the reason, where it came from (topic, partition,
    offset and, in a message of several events, its index), and the message's bytes (its first
    DEAD_VALUE_BYTES, with `value_truncated` and `value_bytes` when it is longer)."""
    value: bytes | None = message.value
    kept = value[:DEAD_VALUE_BYTES] if value is not None else None
    record: dict[str, Any] = {
        "reason": reason,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "value": _text(value, kept),
        "value_base64": base64.b64encode(kept).decode() if kept is not None else None,
        "dead_lettered_at": datetime.now(UTC).isoformat(),
    }
    if value is not None and kept is not None and len(kept) < len(value):
        record["value_truncated"] = True
        record["value_bytes"] = len(value)
    if len(found) > 1:
        record["index"] = index
    key = message.key
    if isinstance(key, bytes) and len(key) <= DEAD_KEY_BYTES:
        with contextlib.suppress(UnicodeDecodeError):
            record["key"] = key.decode()
    return record


# A dead letter must fit in one Kafka message (the worker's producer sends at most 1 MiB), so it
# carries at most this much of its message, and the message's key only up to DEAD_KEY_BYTES
# (it keys the record); the whole message stays on its topic at the offset the record names.
DEAD_VALUE_BYTES: Final = 64 * 1024
DEAD_KEY_BYTES: Final = 1024


def _text(value: bytes | None, kept: bytes | None) -> str | None:
    """`kept` (a prefix of `value`) as text when the whole value is UTF-8, else None."""
    if value is None or kept is None:
        return None
    try:
        value.decode()
    except UnicodeDecodeError:
        return None
    # A cut may split the last character; the prefix is otherwise valid UTF-8.
    return kept.decode(errors="ignore")


class Gauges:
    """The KPI value each rule last looked at, per scope, as Prometheus gauges (undefined
    removes the series): kept during a batch, set once per rule and scope when it ends. The
    snapshot's value, not the judged one: a guard not met still has a value."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, int], Evaluation] = {}

    def __call__(self, evaluation: Evaluation) -> None:
        self._latest[(evaluation.rule.name, id(evaluation.snapshot.labels))] = evaluation

    def flush(self) -> None:
        for evaluation in self._latest.values():
            kpi = evaluation.rule.kpi.name
            snapshot = evaluation.snapshot
            metrics.KPI_GAUGES.set(
                evaluation.rule.name,
                kpi,
                snapshot.labels,
                snapshot.values.get(kpi),
                window=snapshot.window_name,
                currency=snapshot.currency,
            )
        self._latest.clear()


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
        # Faust's memory store, reading its changelogs itself when assigned (fast recovery).
        store=f"{faststore.SCHEME}://",
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
        # Read ahead no more than a batch or two: a backlog otherwise piles up in memory.
        stream_buffer_maxsize=BATCH_MESSAGES * 2,
        broker_max_poll_records=BATCH_MESSAGES,
    )
    input_names = [settings.topic(EVENTS_TOPIC), *(settings.topic(n) for n in TOPICS.values())]
    # No acks: Faust neither tracks nor commits these; the state's positions are committed
    # after each durable batch (Inputs).
    source = app.topic(*input_names, value_serializer="raw", key_serializer="raw", acks=False)
    alerts_topic = app.topic(settings.topic("alerts"), value_serializer="raw", key_serializer="raw")
    rollups_topic = app.topic(
        settings.topic("rollups"), value_serializer="raw", key_serializer="raw", acks=False
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
    inputs = Inputs(app)
    events = EventsProcessor(
        state_table,
        rules,
        reference,
        settings,
        producer,
        f"{app_id}-{STATE_TABLE}-changelog",
        inputs,
    )
    rollups = RollupsProcessor(
        rollup_table,
        rules,
        reference,
        settings,
        producer,
        f"{app_id}-{ROLLUP_TABLE}-changelog",
        inputs,
    )
    # The worker's rule reloader (streams.reload) swaps the rules of both; faust.App has no
    # slot for such an attribute in its type, hence the ignore.
    app.kpiwatch_processors = (events, rollups)  # type: ignore[attr-defined]
    rollups_name = settings.topic("rollups")

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", ())
        await events.revoke({tp.partition for tp in revoked if tp.topic in input_names})
        await rollups.revoke({tp.partition for tp in revoked if tp.topic == rollups_name})

    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = args[0] if args else kwargs.get("assigned", ())
        await events.assign({tp.partition for tp in assigned if tp.topic in input_names})
        await rollups.assign({tp.partition for tp in assigned if tp.topic == rollups_name})

    async def on_shutdown(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Faust stops the agents after this: let the batch in hand finish and start no other
        # (never released), then send what is queued. A batch not started is read again.
        await events.lock.acquire()
        await rollups.lock.acquire()
        await producer.stop()

    async def start_producer() -> None:
        await producer.start()

    app.on_partitions_revoked.connect(on_revoked)
    app.on_partitions_assigned.connect(on_assigned)
    app.on_before_shutdown.connect(on_shutdown)
    app.task(start_producer)
    app.timer(interval=Inputs.RESEEK)(inputs.reseek)
    broker = metrics.BrokerWatch(metrics.REGISTRY, settings.kafka_bootstrap)

    async def watch_broker() -> None:
        await broker.watch()

    app.task(watch_broker)

    @app.agent(source, name="process-events")
    async def process_events(stream: Any) -> None:
        async for batch in stream.noack_take(BATCH_MESSAGES, within=BATCH_WITHIN):
            await events.batch(batch)

    @app.agent(rollups_topic, name="rollups")
    async def process_rollups(stream: Any) -> None:
        async for batch in stream.noack_take(BATCH_MESSAGES, within=BATCH_WITHIN):
            await rollups.batch(batch)

    # The notify agent, /silences and the lag gauge (streams/notify.py).
    install_notifier(app, alerts_topic, settings, sinks, sinks_setup)

    # /health (liveness) and /ready (readiness: tables recovered), for orchestrators' probes.
    install_health(app)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body, content_type = metrics.exposition()
        response = web.bytes(body, content_type="text/plain")
        # aiohttp refuses parameters in content_type; Prometheus wants its `version=` one.
        response.headers["Content-Type"] = content_type
        return response

    @app.page("/stats")
    async def stats_page(web: Any, request: Any) -> Any:
        """Progress counters as JSON, cheap to poll (unlike /metrics with its KPI gauges)."""
        return web.json(metrics.progress())

    def reader() -> StateReader:
        return StateReader(StateStore(state_table.data), StateStore(rollup_table.data), reference)

    @app.page("/kpis")
    async def kpis_page(web: Any, request: Any) -> Any:
        """KPI values of this worker's partitions: ?by=store,sku&window=24h&at=ISO-TIME (the
        window whose last bucket holds `at`: live state holds later events too) or &day=
        YYYY-MM-DD (the window ending with each scope's own local day)."""
        query = request.query
        try:
            day = date.fromisoformat(query["day"]) if query.get("day") else None
            rows = kpi_rows(
                reader(),
                query.get("by", "store"),
                query.get("window", "1d"),
                query.get("at"),
                day=day,
            )
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)
        return web.json({"kpis": rows, "rollup": is_rollup(query.get("by", "store"))})

    def scorecards(period: str, query: Any = None) -> list[dict[str, Any]]:
        query = query or {}
        day = date.fromisoformat(query["day"]) if query.get("day") else None
        return scorecard_rows(
            reader(),
            rollups.rules.scorecards,  # the reloaded rule files' cards
            period,
            query.get("at"),
            day=day,
            team=query.get("team"),
            held_only=True,
        )

    reportmetrics.SCORECARDS.rows_of = scorecards
    reportmetrics.watch_missing_rates(reference.fx)

    @app.page("/scorecards")
    async def scorecards_page(web: Any, request: Any) -> Any:
        """Team scorecards of this worker's rollup partitions: ?period=day|week|month
        &team=T&at=ISO-TIME or &day=YYYY-MM-DD (as /kpis)."""
        query = request.query
        try:
            rows = scorecards(query.get("period", "week"), query)
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)
        return web.json({"scorecards": rows})

    @app.page("/state")
    async def state_page(web: Any, request: Any) -> Any:
        """This worker's state as one canonical document, for debugging and comparison."""
        return web.json(reader().dump())

    return app
