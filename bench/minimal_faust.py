"""The simplest Faust app that does the worker's I/O: read the events topic, decode each message
(streams.events.decode_message, as the worker does), and keep one table key per store, written
once per key per batch of `take_events(1000, 0.1)`. What Faust itself costs on these machines;
kafka_throughput.py runs it on the same backlog as the worker.

Usage (kafka_throughput.py starts it): python bench/minimal_faust.py BROKER TOPIC PARTITIONS PORT
It serves its event count as plain text on http://127.0.0.1:PORT/count.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import faust

from streams.events import decode_message

COUNT = [0]


def main() -> int:
    broker, topic_name, partitions, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    app = faust.App(
        f"minimal-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{broker}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        broker_session_timeout=10.0,
        broker_rebalance_timeout=10.0,
        broker_heartbeat_interval=3.0,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=int(port),
        web_in_thread=False,
    )
    topic = app.topic(topic_name, value_serializer="raw", key_serializer="raw")
    table = app.Table("counts", default=int, partitions=partitions)

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for events in stream.take_events(1000, 0.1):
            per_store: dict[bytes, tuple[int, int]] = {}
            for event in events:
                found = len(decode_message(event.value, "minimal"))
                _, before = per_store.get(event.key, (0, 0))
                per_store[event.key] = (event.message.partition, before + found)
                COUNT[0] += found
            # One changelog write per key per batch (a table write needs the event it came
            # from; this is the same write without that bookkeeping).
            for key, (partition, found) in per_store.items():
                store = key.decode()
                total = table.data.get(store, 0) + found
                table.data[store] = total
                table.send_changelog(partition, store, total)

    @app.page("/count")
    async def count_page(web: Any, request: Any) -> Any:
        return web.text(str(COUNT[0]))

    worker = faust.Worker(app, loglevel="WARNING", redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
