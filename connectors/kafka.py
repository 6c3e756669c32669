"""Put events on the Kafka topics: create the topics with the right partition count, then produce.

Every event goes to the `events` topic keyed by store_id, so one store's events stay in order on
one partition; events that come in groups (an API page, a file) are packed, several of one store
to a message (streams.events.pack), because a message costs the worker about as much as the
rest of an event's processing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from rules.errors import InvalidEventError, ServiceError
from streams.events import EVENTS_TOPIC, Event, RawRecord, encode_message, pack

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code


async def ensure_topics(
    bootstrap: str, names: Sequence[str], partitions: int, *, compacted: bool = False
) -> None:
    """Create the topics that do not exist yet; an existing one must have `partitions`.
    `compacted` topics keep the latest value per key (table changelogs).

    Stream state is partitioned like the input topics, so a topic created by broker
    auto-creation with a different count would split one store's state: we refuse to run on it.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # list_topics, not describe_topics: a metadata request for a missing topic makes a broker
        # with auto-creation create it, with the broker's default partition count.
        missing = [name for name in names if name not in set(await admin.list_topics())]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=partitions,
                        replication_factor=1,
                        topic_configs={"cleanup.policy": "compact"} if compacted else {},
                    )
                    for name in missing
                ]
            )
            errors = {
                topic: code
                for topic, code, *_ in response.topic_errors
                if code not in (0, TOPIC_ALREADY_EXISTS)
            }
            if errors:
                raise ServiceError(f"could not create topics (Kafka error codes): {errors}")
            log.info("created topics %s with %d partitions", missing, partitions)
        counts = await _partition_counts(admin, names)
        wrong = {topic: count for topic, count in counts.items() if count != partitions}
        if wrong:
            raise ServiceError(
                f"topics {wrong} exist with other partition counts than the configured "
                f"{partitions}; recreate them or set KPIWATCH_PARTITIONS to match"
            )
    finally:
        await admin.close()


async def partition_count(bootstrap: str, topic: str) -> int:
    """How many partitions an existing topic has (0 when it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return 0
        return (await _partition_counts(admin, [topic])).get(topic, 0)
    finally:
        await admin.close()


async def _partition_counts(
    admin: AIOKafkaAdminClient, names: Sequence[str], timeout: float = 15.0
) -> dict[str, int]:
    """Partition count per topic. A topic created a moment ago can be described with no
    partitions until the broker's metadata catches up, so empty answers are asked again."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(list(names))
        counts = {topic["topic"]: len(topic["partitions"]) for topic in described}
        if all(counts.values()) or asyncio.get_running_loop().time() > deadline:
            return counts
        await asyncio.sleep(0.2)


class Coalescer:
    """Events of one store handed over within `linger` seconds go out as one message (webhooks
    come one event at a time; a message costs the worker as much as processing its events).
    `submit` returns once the message holding its events is sent (acknowledged, with a
    producer that awaits), or raises what sending raised."""

    def __init__(
        self, send: Callable[[Sequence[Event]], Awaitable[None]], linger: float = 0.1
    ) -> None:
        self._send = send
        self._linger = linger
        self._waiting: dict[str, tuple[list[Event], asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, events: Sequence[Event]) -> None:
        futures = [self._add(event) for event in events]
        for future in {id(f): f for f in futures}.values():
            await asyncio.shield(future)

    def _add(self, event: Event) -> asyncio.Future[None]:
        found = self._waiting.get(event.store_id)
        if found is None:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            found = self._waiting[event.store_id] = ([], future)
            task = asyncio.create_task(self._flush_later(event.store_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        found[0].append(event)
        return found[1]

    async def _flush_later(self, store: str) -> None:
        await asyncio.sleep(self._linger)
        events, future = self._waiting.pop(store)
        try:
            for group in pack(events):
                await self._send(group)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)


class EventProducer:
    """Validates and produces events to the `events` topic (behind `prefix`), packed."""

    def __init__(self, bootstrap: str, prefix: str = "") -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1024 * 1024,
        )
        self.topic = prefix + EVENTS_TOPIC
        self.messages = 0

    async def __aenter__(self) -> EventProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._producer.stop()

    async def send(self, event: Event) -> None:
        """One event, one message (queued; `flush` or `send_batch` wait for the broker)."""
        await self._send([event])

    async def send_message(self, events: Sequence[Event]) -> None:
        """Events of one store as one message, as they are (queued, like `send`)."""
        await self._send(events)

    async def send_acknowledged(self, events: Sequence[Event]) -> None:
        """Events of one store as one message; returns once the broker acknowledged it."""
        await (await self._send(events))

    async def send_batch(self, events: Sequence[Event]) -> None:
        """Send `events` packed per store and return once the broker acknowledged every one:
        the sink for `connectors.base.run_source`, which checkpoints a cursor only after this
        returns."""
        pending = [await self._send(group) for group in pack(events)]
        await asyncio.gather(*pending)

    async def _send(self, group: Sequence[Event]) -> asyncio.Future[object]:
        self.messages += 1
        future: asyncio.Future[object] = await self._producer.send(
            self.topic, encode_message(group), key=group[0].store_id.encode()
        )
        return future

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Produce bytes as they are (tests use it to put bad input on a topic)."""
        await self._producer.send(topic, value, key=key)

    async def flush(self) -> None:
        await self._producer.flush()

    async def send_records(
        self, records: Iterable[RawRecord]
    ) -> tuple[int, list[InvalidEventError]]:
        """Validate and send each record, packed as `kpiwatch replay` groups the same file;
        return (sent, rejected) once all are acknowledged."""
        rejected: list[InvalidEventError] = []

        def valid() -> Iterable[Event]:
            for record in records:
                try:
                    yield record.decode()
                except InvalidEventError as exc:
                    rejected.append(exc)

        sent = 0
        for group in pack(valid()):
            await self._send(group)
            sent += len(group)
        await self._producer.flush()
        return sent, rejected
