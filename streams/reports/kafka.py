"""A scheduled report's inputs in the Kafka runtime: the whole state, read from the tables'
changelog topics (a worker holds only its own partitions), and the alerts from the alerts topic.

The changelogs are compacted: reading them to their end gives every key's latest value, the
same bytes each worker's table holds, so the report equals `kpiwatch report` on the events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from rules.alerts import Alert
from rules.scorecard import Scorecard
from sinks.load import SinksSetup
from streams.query import StateReader
from streams.reference import Reference
from streams.reports.schedule import Inputs, Scheduler, Source
from streams.settings import Settings
from streams.state import StateStore

# Alerts read back this far before the period: an episode that began earlier and is still
# open (or resolves in the period) is in the report.
ALERTS_BEFORE: Final = timedelta(days=7)


async def read_topic(
    bootstrap: str, topic: str, partitions: int, since_ms: int | None = None
) -> list[tuple[bytes, bytes | None]]:
    """Every (key, value) of `topic` (of that many partitions, as the worker made it) from
    `since_ms` (or its start) to its end as of now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return await _read(
            consumer, [TopicPartition(topic, p) for p in range(partitions)], since_ms
        )
    finally:
        await _stop(consumer)


async def _read(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], since_ms: int | None
) -> list[tuple[bytes, bytes | None]]:
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    if since_ms is not None:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
        for tp in tps:
            consumer.seek(tp, found[tp].offset if found.get(tp) else ends[tp])
    records: list[tuple[bytes, bytes | None]] = []
    left = {tp for tp in tps if ends[tp] > 0}
    while left:
        batches = await consumer.getmany(*left, timeout_ms=1000, max_records=50_000)
        for tp, messages in batches.items():
            records.extend((m.key or b"", m.value) for m in messages if m.offset < ends[tp])
        for tp in list(left):
            if await consumer.position(tp) >= ends[tp]:
                left.discard(tp)
    return records


async def _stop(consumer: AIOKafkaConsumer) -> None:
    # aiokafka 0.14 may raise CancelledError from a group-less consumer's stop() (its
    # coordinator's own task was cancelled): that is not a cancellation of ours.
    task = asyncio.current_task()
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        if task is not None and task.cancelling():
            raise


def _table(records: list[tuple[bytes, bytes | None]]) -> dict[str, bytes]:
    table: dict[str, bytes] = {}
    for key, value in records:
        if value is None:
            table.pop(key.decode(), None)
        else:
            table[key.decode()] = value
    return table


def kafka_source(
    bootstrap: str,
    partitions: int,
    changelogs: tuple[str, str],
    alerts_topic: str,
    reference: Reference,
    cards: Callable[[], Mapping[str, Scorecard]],
) -> Source:
    """The inputs of a report ending with a local day, read from Kafka when it is due."""

    async def source(day: date) -> Inputs:
        stores = _table(await read_topic(bootstrap, changelogs[0], partitions))
        rollups = _table(await read_topic(bootstrap, changelogs[1], partitions))
        since = datetime.combine(day - timedelta(days=31), time(), UTC) - ALERTS_BEFORE
        since_ms = int(since.timestamp() * 1000)
        alerts = [
            Alert.model_validate(json.loads(value))
            for _, value in await read_topic(bootstrap, alerts_topic, partitions, since_ms)
            if value is not None
        ]
        reader = StateReader(StateStore(stores), StateStore(rollups), reference)
        return Inputs(reader, alerts, cards())

    return source


def worker_scheduler(
    settings: Settings,
    setup: SinksSetup,
    reference: Reference,
    cards: Callable[[], Mapping[str, Scorecard]],
) -> Scheduler:
    """The worker's scheduler: Redis locks shared by every worker (KPIWATCH_REDIS_URL; without
    it, a single worker's own), inputs read from Kafka when a report is due."""
    from rules.errors import KpiwatchError
    from sinks import http
    from sinks.silence import namespace
    from streams.notify import shared_redis
    from streams.reports.output import require

    try:
        require()
    except ImportError as exc:
        raise KpiwatchError(f"the sinks file has schedules: {exc}") from exc

    app_id = settings.topic(settings.app_id)
    source = kafka_source(
        settings.kafka_bootstrap,
        settings.partitions,
        (f"{app_id}-state-changelog", f"{app_id}-rollup-state-changelog"),
        settings.topic("alerts"),
        reference,
        cards,
    )
    redis = shared_redis(settings.redis_url) if settings.redis_url else None
    client = http.new_client(setup.delivery.timeout)
    return Scheduler(setup, source, client, redis=redis, namespace=namespace(settings.topic_prefix))
