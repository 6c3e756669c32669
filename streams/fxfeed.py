"""FX rates on a Kafka topic, so that a running worker takes new rates without a restart.

Every worker reads the whole `fx-rates` topic itself, outside any consumer group: rates are
reference data that every partition's events need, not work to share out. The worker reads the
topic to its end before it starts processing, then follows it. Money is kept in its own
currency and converted when it is read (streams.values), so a new rate applies from then on to
every day it is in effect, past days included.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from decimal import InvalidOperation

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from connectors.kafka import partition_count
from rules.errors import ServiceError
from streams.reference import FX_COLUMNS, FxRates, apply_fx_row

log = logging.getLogger(__name__)


class FxFeed:
    def __init__(self, bootstrap: str, topic: str, fx: FxRates) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._fx = fx
        self._consumer: AIOKafkaConsumer | None = None

    async def catch_up(self) -> int:
        """Start, read every rate published so far, and return how many were applied."""
        count = await partition_count(self._bootstrap, self._topic)
        if count == 0:
            raise ServiceError(f"topic {self._topic} does not exist")
        partitions = [TopicPartition(self._topic, p) for p in range(count)]
        # aiokafka binds a consumer to the running loop, so it is made here, not in __init__.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False
        )
        await self._consumer.start()
        self._running.assign(partitions)
        await self._running.seek_to_beginning(*partitions)
        ends = await self._running.end_offsets(partitions)
        applied = 0
        while not await self._caught_up(ends):
            applied += await self._poll(timeout_ms=500)
        return applied

    async def _caught_up(self, ends: dict[TopicPartition, int]) -> bool:
        positions = {tp: await self._running.position(tp) for tp in ends}
        return all(positions[tp] >= end for tp, end in ends.items())

    @property
    def _running(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("FxFeed.catch_up() must run first")
        return self._consumer

    async def follow(self) -> None:
        """Apply new rates as they come, until cancelled."""
        try:
            while True:
                await self._poll(timeout_ms=1000)
        finally:
            await self._running.stop()

    async def _poll(self, timeout_ms: int) -> int:
        applied = 0
        batches = await self._running.getmany(timeout_ms=timeout_ms)
        for tp, messages in batches.items():
            for message in messages:
                where = f"{tp.topic}/{tp.partition}/{message.offset}"
                applied += apply_message(self._fx, message.value, where)
        return applied


def apply_message(fx: FxRates, value: bytes | None, where: str) -> int:
    """Apply one rate message; a bad one is logged with its offset and skipped."""
    try:
        row = json.loads(value or b"")
        if not isinstance(row, dict) or set(FX_COLUMNS) - row.keys():
            raise ValueError(f"expected an object with {', '.join(FX_COLUMNS)}")
        apply_fx_row(fx, {k: str(row[k]) for k in FX_COLUMNS})
    except (ValueError, InvalidOperation, UnicodeDecodeError) as exc:
        log.error("skipped FX rate at %s: %s", where, exc or "not a number")
        return 0
    return 1


async def publish(bootstrap: str, topic: str, rows: Iterable[dict[str, str]]) -> int:
    """Put rates on the topic (keyed by currency, so one currency's rates stay in order)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    sent = 0
    try:
        for row in rows:
            value = json.dumps({k: row[k] for k in FX_COLUMNS}).encode()
            await producer.send_and_wait(topic, value, key=row["currency"].encode())
            sent += 1
    finally:
        await producer.stop()
    return sent
