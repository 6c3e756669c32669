"""Amazon Ads: SP reports v3 against a fake in the documented shapes (paging by date range, 425,
FAILURE, 429s, token expiry, malformed rows, restatements) and Marketing Stream records folded
per campaign-hour, through the real KPI pipeline and a real Firehose HTTP endpoint."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError
from unit.connectors.fakes import Reply, Sleeps, _json
from unit.connectors.fakes_ads import FakeAds, conversion, message, row, traffic

from connectors.amazon_ads import AdsApi, AdsReportSource, AmazonAdsConfig
from connectors.amazon_ads_stream import FirehoseReceiver, MarketingStream
from connectors.amazon_sp import LwaTokens
from connectors.api import Backoff, install_redaction
from connectors.base import SourceError, run_source
from connectors.checkpoint import MemoryCheckpoints
from rules.errors import InvalidEventError
from rules.load import RuleSet
from streams.embedded import Engine, reader
from streams.events import AdSpendEvent, Event
from streams.query import kpi_rows

ClientFor = Callable[[Callable[..., Reply]], httpx.AsyncClient]
HOST = "https://ads.test"
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # 04:00 in Los Angeles: yesterday is the 20th
LA = ZoneInfo("America/Los_Angeles")
PROFILE = {
    "store_id": "us-ads-1",
    "profile_id": "1234567890",
    "marketplace": "US",
    "currency": "USD",
    "timezone": "America/Los_Angeles",
}


def config(mode: str = "reports", **changes: Any) -> AmazonAdsConfig:
    profile = {**PROFILE, "mode": mode, "advertiser_id": "A3ADVERTISER"}
    data: dict[str, Any] = {
        "client_id": "amzn1.application-oa2-client.ads",
        "host": HOST,
        "token_url": HOST + "/auth/o2/token",
        "profiles": [profile],
        "start": "2026-11-18",
    }
    return AmazonAdsConfig.model_validate({**data, **changes})


def source(client: httpx.AsyncClient, sleeps: Sleeps, **changes: Any) -> AdsReportSource:
    cfg = config(**changes)
    tokens = LwaTokens(
        client, cfg.client_id, SecretStr("client-secret"), SecretStr("Atzr|ads-refresh"),
        url=cfg.token_url,
    )  # fmt: skip
    backoff = Backoff(base=1.0, cap=8.0, attempts=4, rng=random.Random(1))
    api = AdsApi(client, tokens, cfg.client_id, cfg.endpoint, backoff=backoff, sleep=sleeps)
    return AdsReportSource(
        api, cfg.profiles[0], cfg.start, cfg.lookback_days, max_wait=600, now=lambda: NOW
    )


class Collect:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[Event] = []
        self.fail = fail

    async def __call__(self, events: Sequence[Event]) -> None:
        if self.fail:
            raise RuntimeError("kafka down")
        self.events.extend(events)


def ads(events: Sequence[Event]) -> list[AdSpendEvent]:
    return [e for e in events if isinstance(e, AdSpendEvent)]


ROWS = [row("2026-11-19", 1, "SKU-A"), row("2026-11-20", 1, "SKU-A"), row("2026-11-20", 2, "SKU-B")]


async def test_a_pass_requests_polls_downloads_and_maps(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeAds(ROWS, polls=2)
    sink, checkpoints = Collect(), MemoryCheckpoints()
    stats = await run_source(source(client_for(fake.handle), sleeps), sink, checkpoints)

    assert (stats.pages, stats.events, stats.rejected) == (1, 3, 0)
    [request] = fake.created
    assert (request["startDate"], request["endDate"]) == ("2026-11-18", "2026-11-20")
    assert request["configuration"]["reportTypeId"] == "spAdvertisedProduct"
    assert request["configuration"]["groupBy"] == ["advertiser"]
    assert {"sales7d", "purchases7d", "date", "advertisedSku"} <= set(
        request["configuration"]["columns"]
    )
    create_headers = fake.calls[0][2]
    assert create_headers["amazon-advertising-api-clientid"] == "amzn1.application-oa2-client.ads"
    assert create_headers["amazon-advertising-api-scope"] == "1234567890"
    assert create_headers["content-type"] == "application/vnd.createasyncreportrequest.v3+json"
    download = [headers for op, _, headers in fake.calls if op == "download"]
    assert download
    assert not {k for k in download[0] if k.startswith(("authorization", "amazon"))}
    assert sleeps.waits == [5.0, 10.0]  # two PROCESSING answers, growing waits
    event = ads(sink.events)[0]
    assert (event.campaign_id, event.sku, event.marketplace) == ("1", "SKU-A", "US")
    assert event.interval_start == datetime(2026, 11, 19, tzinfo=LA)
    assert event.interval_end - event.interval_start == timedelta(hours=24)
    assert event.spend.amount == Decimal("1.25")
    assert event.attributed_sales.amount == Decimal(20)
    cursor = json.loads(checkpoints.cursors["amazon_ads:reports:us-ads-1"])
    assert cursor["done_through"] == "2026-11-20"
    # Each row's version, saved with the page that sent it: [number, first seen, digest].
    assert cursor["versions"]["2026-11-20"]["1|SKU-A"][:2] == [1, int(NOW.timestamp())]


async def test_rows_of_one_sku_in_two_ad_groups_are_summed(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    rows = [row("2026-11-20", 1, "SKU-A", "0.10"), row("2026-11-20", 1, "SKU-A", "0.20", adId=9)]
    sink = Collect()
    await run_source(source(client_for(FakeAds(rows).handle), sleeps), sink, MemoryCheckpoints())
    [event] = ads(sink.events)
    # 0.1 + 0.2 as doubles is 0.30000000000000004; read as Decimal it is exactly 0.30
    assert (event.impressions, event.clicks, event.spend.amount) == (200, 8, Decimal("0.30"))


async def test_duplicate_request_polls_the_existing_report(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    detail = {"code": "425", "detail": "The Request is a duplicate of : 5f1e6a1c-aaaa-bbbb-cccc"}
    fake = FakeAds(ROWS, script={("createReport", 1): [_json(425, detail)]})
    sink = Collect()
    await run_source(source(client_for(fake.handle), sleeps), sink, MemoryCheckpoints())
    assert fake.created == []
    assert fake.calls[1][1] == "/reporting/reports/5f1e6a1c-aaaa-bbbb-cccc"
    assert len(sink.events) == 3


async def test_failed_report_is_a_source_error_and_saves_no_cursor(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    checkpoints = MemoryCheckpoints()
    with pytest.raises(SourceError, match="report failed: Report generation failed"):
        await run_source(
            source(client_for(FakeAds(ROWS, fail_report=True).handle), sleeps),
            Collect(),
            checkpoints,
        )
    assert checkpoints.saves == []


async def test_throttled_with_and_without_retry_after(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    busy = _json(429, {"code": "429", "details": "Too Many Requests"})
    told = _json(429, {"code": "429"}, {"Retry-After": "7"})
    fake = FakeAds(ROWS, polls=0, script={("createReport", 1): [told], ("createReport", 2): [busy]})
    sink = Collect()
    api_source = source(client_for(fake.handle), sleeps)
    await run_source(api_source, sink, MemoryCheckpoints())
    assert api_source.api.throttle.waits[0] == 7.0
    assert 0 <= api_source.api.throttle.waits[1] <= 2.0  # jittered backoff, attempt 2
    assert len(sink.events) == 3


async def test_token_expiring_mid_run_is_refreshed_once(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeAds(ROWS, polls=1, token_calls=2)  # create, poll | poll: expired
    sink = Collect()
    await run_source(source(client_for(fake.handle), sleeps), sink, MemoryCheckpoints())
    assert fake.tokens_issued == 2
    assert len(sink.events) == 3


async def test_malformed_rows_are_rejected_and_the_rest_kept(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    rows: list[Any] = [
        *ROWS,
        "not a row",
        row("2026-11-20", 3, "SKU-C", clicks=-1),
        row("2026-11-20", 4, "SKU-D"),
        row("2026-11-20", 4, "SKU-D", cost="NaN"),  # poisons its group: no partial sum
        {"date": "2026-11-20", "campaignId": 5},
    ]
    sink, rejected = Collect(), []

    async def reject(error: InvalidEventError) -> None:
        rejected.append(error)

    stats = await run_source(
        source(client_for(FakeAds(rows).handle), sleeps),
        sink,
        MemoryCheckpoints(),
        on_rejected=reject,
    )
    assert stats.events == 3
    assert stats.rejected == 4
    assert {e.campaign_id for e in ads(sink.events)} == {"1", "2"}
    assert "row 3" in rejected[0].source
    assert "amazon_ads:reports:us-ads-1" in rejected[0].source
    assert "clicks must be a non-negative integer" in rejected[1].reason


async def test_restated_row_gets_a_new_id_and_the_rest_keep_theirs(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeAds(ROWS)
    api_source = source(client_for(fake.handle), sleeps)
    first, second, checkpoints = Collect(), Collect(), MemoryCheckpoints()
    await run_source(api_source, first, checkpoints)
    fake.rows = [*ROWS[:2], row("2026-11-20", 2, "SKU-B", sales7d=Decimal("45.50"), purchases7d=2)]
    await run_source(api_source, second, checkpoints)
    before = [e.event_id for e in first.events]
    after = [e.event_id for e in second.events]
    assert before[:2] == after[:2]
    assert before[2] != after[2]
    # the second pass re-requested the lookback window, not just the days after the cursor
    assert fake.created[1]["startDate"] == "2026-10-17"


async def test_long_backfills_are_split_into_31_day_reports(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeAds([])
    checkpoints = MemoryCheckpoints()
    await run_source(
        source(client_for(fake.handle), sleeps, start="2026-09-01"), Collect(), checkpoints
    )
    ranges = [(r["startDate"], r["endDate"]) for r in fake.created]
    assert ranges == [
        ("2026-09-01", "2026-10-01"),
        ("2026-10-02", "2026-11-01"),
        ("2026-11-02", "2026-11-20"),
    ]
    assert [json.loads(c)["done_through"] for _, c in checkpoints.saves] == [
        "2026-10-01",
        "2026-11-01",
        "2026-11-20",
    ]


async def test_secrets_stay_out_of_logs_and_errors(
    client_for: ClientFor, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction()
    caplog.set_level(logging.DEBUG)
    fake = FakeAds(ROWS, script={("download", 1): [(500, {}, b"")]}, fail_report=False)
    await run_source(source(client_for(fake.handle), sleeps), Collect(), MemoryCheckpoints())
    fake.script[("createReport", 2)] = [_json(400, {"code": "400", "details": "bad columns"})]
    with pytest.raises(SourceError) as raised:
        await run_source(source(client_for(fake.handle), sleeps), Collect(), MemoryCheckpoints())
    text = caplog.text + str(raised.value)
    assert "HTTP Request" in caplog.text
    assert "bad columns" in text
    for secret in ("client-secret", "Atzr|ads-refresh", "Atza|ads-token", "X-Amz-Signature"):
        assert secret not in text


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="mode stream needs advertiser_id"):
        AmazonAdsConfig.model_validate(
            {"client_id": "x", "start": "2026-11-01", "profiles": [{**PROFILE, "mode": "stream"}]}
        )
    with pytest.raises(ValidationError, match="store_id listed more than once"):
        config(profiles=[{**PROFILE, "mode": "reports"}, {**PROFILE, "mode": "reports"}])
    with pytest.raises(ValidationError, match="extra"):
        config(secret="no")
    with pytest.raises(ValidationError, match="mode"):
        config(profiles=[PROFILE])
    japan = {**PROFILE, "marketplace": "JP", "currency": "JPY", "timezone": "Asia/Tokyo"}
    assert AmazonAdsConfig.model_validate(
        {"client_id": "x", "start": "2026-11-01", "region": "FE", "profiles": [
            {**japan, "mode": "reports"}]}
    ).endpoint == "https://advertising-api-fe.amazon.com"  # fmt: skip
    # A US profile's reports are not on the Far East host: every pass would fail (issue 13).
    with pytest.raises(ValidationError, match=r"region FE does not serve .* us-ads-1"):
        config(region="FE")
    with pytest.raises(ValidationError, match="host"):
        config(host="ads.test")


# Marketing Stream ---------------------------------------------------------------------------

H10 = "2026-11-20T10:00:00-08:00"


def stream(store: MemoryCheckpoints | None = None) -> tuple[MarketingStream, list[Any]]:
    rejected: list[Any] = []

    async def reject(error: InvalidEventError) -> None:
        rejected.append(error)

    return MarketingStream(config("stream"), store or MemoryCheckpoints(), on_rejected=reject), (
        rejected
    )


async def test_traffic_and_conversion_of_one_hour_make_one_event() -> None:
    ams, rejected = stream()
    await ams.handle(message(traffic("t-1", H10)), "sqs 1")
    [event] = await ams.handle(message(conversion("c-1", H10)), "sqs 2")
    assert (event.campaign_id, event.sku) == ("111", None)
    assert (event.clicks, event.impressions, event.attributed_orders) == (3, 100, 2)
    assert (event.spend.amount, event.attributed_sales.amount) == (Decimal("1.50"), Decimal(30))
    assert event.interval_start == datetime(2026, 11, 20, 18, tzinfo=UTC)
    assert event.interval_end - event.interval_start == timedelta(hours=1)
    assert rejected == []


async def test_repeat_changes_nothing_and_keywords_and_restatements_sum() -> None:
    store = MemoryCheckpoints()
    ams, _ = stream(store)
    [first] = await ams.handle(message(traffic("t-1", H10)), "sqs 1")
    [again] = await ams.handle(message(traffic("t-1", H10)), "sqs 1 redelivered")
    assert again == first
    assert len(store.saves) == 1
    [other_keyword] = await ams.handle(message(traffic("t-2", H10, keyword_id="555")), "sqs 2")
    assert (other_keyword.clicks, other_keyword.spend.amount) == (6, Decimal("3.00"))
    # an invalid-click correction is a new record with a negative delta
    correction = traffic("t-3", H10, clicks=-1, cost="-0.50", impressions=0)
    [restated] = await ams.handle(message(correction, sns=False), "sqs 3")
    assert (restated.clicks, restated.spend.amount) == (5, Decimal("2.50"))
    assert len({first.event_id, other_keyword.event_id, restated.event_id}) == 3
    # a restart keeps the hour: a fresh instance on the same store continues the sums
    fresh, _ = stream(store)
    [after] = await fresh.handle(message(traffic("t-3", H10)), "sqs 3 again")
    assert after.event_id == restated.event_id


async def test_stream_hours_are_kept_for_their_restatement_window_then_forgotten() -> None:
    # Before, every campaign-hour key stayed in Redis for ever (one per campaign and hour).
    store = MemoryCheckpoints()
    ams, _ = stream(store)
    ams.now = lambda: datetime(2026, 11, 21, 10, tzinfo=UTC)
    await ams.handle(message(traffic("t-1", H10)), "sqs 1")
    [(key, ttl)] = store.ttls.items()
    assert key.startswith("amazon_ads:stream:")
    hour = datetime(2026, 11, 20, 18, tzinfo=UTC)
    assert ttl == (hour + timedelta(days=70) - ams.now()).total_seconds()
    # A late record of an hour past the window is still folded in, and kept for a day.
    ams.now = lambda: hour + timedelta(days=80)
    await ams.handle(message(traffic("t-2", H10)), "sqs 2")
    assert store.ttls[key] == timedelta(days=1).total_seconds()


async def test_a_correction_that_nets_to_an_earlier_total_still_gets_a_new_id() -> None:
    ams, _ = stream()
    [one] = await ams.handle(message(traffic("t-1", H10)), "a")
    await ams.handle(message(traffic("t-2", H10)), "b")
    [back] = await ams.handle(message(traffic("t-3", H10, clicks=-3, cost="-1.50")), "c")
    assert back.clicks == one.clicks
    assert back.event_id != one.event_id


async def test_control_messages_other_datasets_and_bad_records() -> None:
    ams, rejected = stream()
    confirmation = json.dumps(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37secret",
            "TopicArn": "arn:aws:sns:us-east-1:906013806264:MyTopic",
            "Message": "You have chosen to subscribe to the topic ...",
            "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
            "Timestamp": "2012-04-26T20:45:04.751Z",
        }
    ).encode()
    assert await ams.handle(confirmation, "sqs 0") == []
    assert await ams.handle(message({"dataset_id": "budget-usage"}), "sqs 1") == []
    assert await ams.handle(b"{not json", "sqs 2") == []
    assert await ams.handle(message(traffic("t-9", "yesterday")), "sqs 3") == []
    assert await ams.handle(message(traffic("t-8", H10, advertiser_id="OTHER")), "sqs 4") == []
    assert await ams.handle(message(traffic("t-7", H10, clicks="3")), "sqs 5") == []
    assert [e.source.split(" (")[0] for e in rejected] == ["sqs 2", "sqs 3", "sqs 4", "sqs 5"]


# The engine ----------------------------------------------------------------------------------


def ad_spend(events: Sequence[Event], at: datetime) -> Any:
    engine = Engine(RuleSet([]))
    engine.process_events(events)
    [values] = [r["values"] for r in kpi_rows(reader(engine.state), "store", "1d", at)]
    return values["ad_spend"], values["ad_orders"]


async def test_the_engine_replaces_restated_figures(client_for: ClientFor, sleeps: Sleeps) -> None:
    fake = FakeAds([row("2026-11-20", 1, "SKU-A", "10.00")])
    api_source = source(client_for(fake.handle), sleeps)
    first, second, checkpoints = Collect(), Collect(), MemoryCheckpoints()
    await run_source(api_source, first, checkpoints)
    fake.rows = [row("2026-11-20", 1, "SKU-A", "12.00", purchases7d=3)]
    await run_source(api_source, second, checkpoints)
    replayed = Collect()
    await run_source(api_source, replayed, MemoryCheckpoints())  # same figures again
    at = datetime(2026, 11, 20, 23, tzinfo=LA)
    events = first.events + second.events + replayed.events
    assert ad_spend(events, at) == ad_spend(second.events, at)
    assert ad_spend(first.events, at) != ad_spend(second.events, at)

    ams, _ = stream()
    hour = [
        *await ams.handle(message(traffic("t-1", H10, cost="4.00")), "a"),
        *await ams.handle(message(traffic("t-2", H10, cost="-1.00", clicks=0)), "b"),
        *await ams.handle(message(traffic("t-2", H10, cost="-1.00", clicks=0)), "b again"),
    ]
    only_last = hour[-1:]
    assert ad_spend(hour, at) == ad_spend(only_last, at)


async def test_figures_that_go_back_are_a_new_version_the_engine_keeps(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    # A -> B -> A: the last A used to get A's id again (ids were a digest of the figures), so
    # the engine could take it for a repeat of the first and keep B.
    a, b = row("2026-11-20", 1, "SKU-A", "10.00"), row("2026-11-20", 1, "SKU-A", "12.00")
    fake = FakeAds([a])
    clock = [NOW]
    api_source = source(client_for(fake.handle), sleeps)
    api_source.now = lambda: clock[0]
    checkpoints, passes = MemoryCheckpoints(), []
    for figures in (a, b, a):
        fake.rows = [figures]
        sink = Collect()
        await run_source(api_source, sink, checkpoints)
        passes.append(ads(sink.events))
        clock[0] += timedelta(hours=12)
    ids = [p[0].event_id for p in passes]
    assert len(set(ids)) == 3
    assert passes[0][0].occurred_at < passes[1][0].occurred_at < passes[2][0].occurred_at
    at = datetime(2026, 11, 20, 23, tzinfo=LA)
    everything = [e for p in passes for e in p]
    assert ad_spend(everything, at) == ad_spend(passes[0], at)
    # Whatever order they arrive in (a partition re-read, a replayed file), the newest wins.
    assert ad_spend(list(reversed(everything)), at) == ad_spend(passes[0], at)
    # Re-reading unchanged figures repeats the event exactly: same id, same time.
    again = Collect()
    await run_source(api_source, again, checkpoints)
    assert ads(again.events)[0] == passes[2][0]


# Firehose -------------------------------------------------------------------------------------

KEY = SecretStr("firehose-access-key")


async def post(receiver: FirehoseReceiver, body: bytes, key: str, **headers: str) -> httpx.Response:
    runner = web.AppRunner(receiver.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as client:
            return await client.post(
                f"http://127.0.0.1:{port}{receiver.path}",
                content=body,
                headers={"X-Amz-Firehose-Access-Key": key, **headers},
            )
    finally:
        await runner.cleanup()


def firehose_body(*records: bytes) -> bytes:
    data = [{"data": base64.b64encode(r).decode()} for r in records]
    body = {"requestId": "ed4acda5-034f-9f42-bba1-f29aea6d7d8f", "timestamp": 1, "records": data}
    return json.dumps(body).encode()


async def test_firehose_delivers_only_after_the_sink_took_the_events() -> None:
    ams, _ = stream()
    sink = Collect()
    receiver = FirehoseReceiver(ams, KEY, sink)
    body = firehose_body(message(traffic("t-1", H10)), message(conversion("c-1", H10)))

    denied = await post(receiver, body, "wrong")
    assert denied.status_code == 401
    assert sink.events == []
    answer = await post(receiver, gzip.compress(body), KEY.get_secret_value(), **{
        "Content-Encoding": "gzip"})  # fmt: skip
    assert answer.status_code == 200
    assert answer.json()["requestId"] == "ed4acda5-034f-9f42-bba1-f29aea6d7d8f"
    [event] = ads(sink.events)  # both records of the hour, one combined event
    assert (event.clicks, event.attributed_orders) == (3, 2)

    failing = FirehoseReceiver(ams, KEY, Collect(fail=True))
    retry = await post(failing, body, KEY.get_secret_value())
    assert retry.status_code == 503
    assert "errorMessage" in retry.json()
    assert (await post(receiver, b"[]", KEY.get_secret_value())).status_code == 400
    assert date.fromisoformat("2026-11-20") == event.interval_start.date()
