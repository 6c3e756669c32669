"""Marketing Stream through SQS against a local SQS/SNS server (moto in server mode): records
published to an SNS topic reach the queue and become events, the cross-account subscription is
confirmed by following its SubscribeURL, a forged confirmation is not followed, and messages
are deleted only once the sink took their events."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from unit.connectors.fakes_ads import _dumps, conversion, traffic
from unit.connectors.test_amazon_ads import config

from connectors.amazon_ads_sqs import MarketingStreamQueue
from connectors.amazon_ads_stream import MarketingStream
from connectors.checkpoint import MemoryCheckpoints
from rules.load import RuleSet
from streams.embedded import Engine, reader
from streams.events import AdSpendEvent, Event
from streams.query import kpi_rows

H10 = "2026-11-20T10:00:00-08:00"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def clients(moto_url: str, aws: None) -> AsyncIterator[tuple[Any, Any]]:
    from aiobotocore.session import get_session

    session = get_session()
    async with (
        session.create_client("sqs", region_name="us-east-1", endpoint_url=moto_url) as sqs,
        session.create_client("sns", region_name="us-east-1", endpoint_url=moto_url) as sns,
    ):
        yield sqs, sns


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.fail = 0

    async def __call__(self, events: Sequence[Event]) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("kafka down")
        self.events.extend(events)


async def queue_and_topic(sqs: Any, sns: Any, name: str) -> tuple[str, str]:
    queue_url = (await sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "1"}))[
        "QueueUrl"
    ]
    arn = (await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    topic = (await sns.create_topic(Name=f"{name}-sp-traffic"))["TopicArn"]
    await sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return queue_url, topic


async def drain(consumer: MarketingStreamQueue, polls: int = 5) -> None:
    for _ in range(polls):
        if not await consumer.poll():
            return


async def left_in(sqs: Any, queue_url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
    return sum(int(v) for v in found["Attributes"].values())


async def test_records_published_to_sns_become_events_and_the_subscription_is_confirmed(
    moto_url: str, clients: tuple[Any, Any]
) -> None:
    sqs, sns = clients
    queue_url, topic = await queue_and_topic(sqs, sns, "ams-confirm")
    # What Amazon's topic (another AWS account) sends first: a confirmation to follow.
    subscription = await sns.list_subscriptions_by_topic(TopicArn=topic)
    token = "2336412f37fb687f5d51e6e241d164b0"
    confirm = f"{moto_url}/?Action=ConfirmSubscription&TopicArn={topic}&Token={token}"
    await sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": "0941b7b3-4797-44e5-8079-dbf8ef09793f",
                "Token": token,
                "TopicArn": topic,
                "Message": f"You have chosen to subscribe to the topic {topic}.",
                "SubscribeURL": confirm,
                "Timestamp": "2026-11-20T10:00:04.135Z",
            }
        ),
    )
    # Someone else's message dressed as a confirmation: never fetched.
    forged = {"Type": "SubscriptionConfirmation", "TopicArn": topic,
              "SubscribeURL": "http://127.0.0.1:9/steal?Token=x"}  # fmt: skip
    await sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(forged))
    await sns.publish(TopicArn=topic, Message=_dumps(traffic("t-1", H10)).decode())
    await sns.publish(TopicArn=topic, Message=_dumps(conversion("c-1", H10)).decode())

    fetched: list[str] = []

    async def record(request: httpx.Request) -> None:
        fetched.append(str(request.url.copy_with(query=None)))

    sink = Sink()
    async with httpx.AsyncClient(timeout=5, event_hooks={"request": [record]}) as http:
        stream = MarketingStream(config("stream"), MemoryCheckpoints())
        consumer = MarketingStreamQueue(
            stream, sqs, queue_url, sink, http, confirm_url=f"^{moto_url}/", wait_seconds=1
        )
        await drain(consumer)

    assert consumer.stats.confirmed == 1
    assert fetched == [f"{moto_url}/"]  # the SNS endpoint, and nothing else
    assert subscription["Subscriptions"][0]["Protocol"] == "sqs"
    ads = [e for e in sink.events if isinstance(e, AdSpendEvent)]
    latest = ads[-1]
    assert (latest.clicks, latest.impressions, latest.attributed_orders) == (3, 100, 2)
    assert await left_in(sqs, queue_url) == 0
    # The KPIs the engine makes of them: one campaign-hour, spend and sales summed once.
    engine = Engine(RuleSet([]))
    engine.process_events(sink.events)
    at = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
    [row] = kpi_rows(reader(engine.state), "store", "1d", at)
    assert (row["values"]["ad_spend"], row["values"]["ad_sales"]) == ("1.50", "30.00")


async def test_messages_stay_in_the_queue_until_the_sink_took_their_events(
    moto_url: str, clients: tuple[Any, Any]
) -> None:
    sqs, sns = clients
    queue_url, topic = await queue_and_topic(sqs, sns, "ams-retry")
    await sns.publish(TopicArn=topic, Message=_dumps(traffic("t-9", H10)).decode())
    sink = Sink()
    sink.fail = 1
    async with httpx.AsyncClient(timeout=5) as http:
        stream = MarketingStream(config("stream"), MemoryCheckpoints())
        consumer = MarketingStreamQueue(stream, sqs, queue_url, sink, http, wait_seconds=1)
        with pytest.raises(RuntimeError):
            await consumer.poll()
        assert await left_in(sqs, queue_url) == 1  # not deleted: it comes back
        await asyncio.sleep(1.2)  # the queue's visibility timeout
        await drain(consumer)
    [event] = sink.events
    assert isinstance(event, AdSpendEvent)
    assert event.clicks == 3
    assert await left_in(sqs, queue_url) == 0


async def test_the_connect_config_builds_the_sqs_consumer(
    moto_url: str, aws: None, tmp_path: Any
) -> None:
    from pathlib import Path

    from connectors.amazon_ads import build_amazon_ads
    from connectors.building import Context
    from streams.connect import load_section

    example = Path(__file__).parents[3] / "deploy" / "kpiwatch" / "connect.example.yaml"
    text = example.read_text().replace(
        "  firehose_access_key: {env: KPIWATCH_FIREHOSE_ACCESS_KEY}\n",
        "  sqs:\n"
        f"    queue_url: {moto_url}/123456789012/ams\n"
        "    region: us-east-1\n"
        f"    endpoint_url: {moto_url}\n",
    )
    path = tmp_path / "connect.yaml"
    path.write_text(text)
    environ = {"KPIWATCH_LWA_CLIENT_SECRET": "s", "KPIWATCH_ADS_REFRESH_TOKEN": "r"}
    _, section = load_section(path, "amazon-ads", environ)

    async def noop(*_: object) -> None:
        return None

    context = Context(None, MemoryCheckpoints(), noop, noop, noop)  # type: ignore[arg-type]
    built = await build_amazon_ads(section, context)
    try:
        [consumer] = built.consumers
        assert isinstance(consumer, MarketingStreamQueue)
        assert built.receivers == []  # no Firehose key: no HTTP endpoint
    finally:
        for close in built.closers:
            await close()
