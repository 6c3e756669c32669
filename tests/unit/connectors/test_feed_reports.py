"""Connectors report each pass over a store's feed to the engine (FeedEvent), through the same
sink as their events: ok once caught up, failed with the reason, and the builders name the
store feed of every polled source."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from connectors.amazon_ads import build_amazon_ads
from connectors.amazon_sp import build_amazon_sp_reported
from connectors.base import FeedRef, Page, SourceError, run_source
from connectors.building import Context
from connectors.checkpoint import MemoryCheckpoints
from connectors.tiktok import build_tiktok
from rules.load import load_paths
from streams.embedded import Engine
from streams.events import Event, FeedEvent

ROOT = Path(__file__).parents[3]
US = FeedRef("amazon", "US", "us-1", "orders")


class _Pages:
    name = "amazon_sp:orders:us-1"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def pages(self, cursor: str | None) -> AsyncIterator[Page]:
        yield Page(events=(), cursor="1")
        if self.fail:
            raise SourceError(self.name, "getOrders: 403 The access token you provided is revoked")


class _Sink:
    def __init__(self, broken: bool = False) -> None:
        self.events: list[Event] = []
        self.broken = broken

    async def __call__(self, events: Sequence[Event]) -> None:
        if self.broken:
            raise ConnectionError("Kafka is down")
        self.events.extend(events)


async def test_a_good_pass_is_reported_ok_after_its_pages() -> None:
    sink = _Sink()
    await run_source(_Pages(), sink, MemoryCheckpoints(), feed=US)
    [report] = sink.events
    assert isinstance(report, FeedEvent)
    assert (report.store_id, report.marketplace, report.feed, report.status) == (
        "us-1",
        "US",
        "orders",
        "ok",
    )


async def test_a_failed_pass_is_reported_with_its_reason_and_still_fails() -> None:
    sink = _Sink()
    checkpoints = MemoryCheckpoints()
    with pytest.raises(SourceError):
        await run_source(_Pages(fail=True), sink, checkpoints, feed=US)
    [report] = sink.events
    assert isinstance(report, FeedEvent)
    assert report.status == "failed"
    assert report.reason is not None
    assert "403" in report.reason
    assert await checkpoints.load("amazon_sp:orders:us-1") == "1"  # the good page stays saved


async def test_a_report_that_cannot_be_sent_does_not_hide_the_pass_error() -> None:
    with pytest.raises(SourceError):
        await run_source(_Pages(fail=True), _Sink(broken=True), MemoryCheckpoints(), feed=US)


async def test_without_a_feed_nothing_is_reported() -> None:
    sink = _Sink()
    await run_source(_Pages(), sink, MemoryCheckpoints())
    assert sink.events == []


async def test_reports_reach_the_engine_as_feed_kpis() -> None:
    sink = _Sink()
    await run_source(_Pages(), sink, MemoryCheckpoints(), feed=US)
    with pytest.raises(SourceError):
        await run_source(_Pages(fail=True), sink, MemoryCheckpoints(), feed=US)
    engine = Engine(load_paths([ROOT / "rules" / "library"]))
    engine.process_events(sink.events)
    from streams.embedded import reader
    from streams.query import kpi_rows

    at = sink.events[-1].occurred_at
    [row] = kpi_rows(reader(engine.state), "store", "1h", at)
    assert (row["values"]["feed_syncs"], row["values"]["feed_failures"]) == ("1", "1")


async def _noop(*_: object) -> None:
    return None


EXAMPLE = ROOT / "deploy" / "kpiwatch" / "connect.example.yaml"
ENVIRON = {
    "KPIWATCH_LWA_CLIENT_SECRET": "lwa-secret",
    "KPIWATCH_SP_REFRESH_TOKEN_US01": "Atzr|refresh",
    "KPIWATCH_TIKTOK_APP_SECRET": "tts-secret",
    "KPIWATCH_ADS_REFRESH_TOKEN": "Atzr|ads",
    "KPIWATCH_FIREHOSE_ACCESS_KEY": "firehose-key",
    "KPIWATCH_TIKTOK_REFRESH_TOKEN_US01": "tts-refresh",
}


async def test_builders_name_the_store_feed_of_every_polled_source() -> None:
    from streams.connect import load_section

    context = Context(None, MemoryCheckpoints(), _noop, _noop, _noop)  # type: ignore[arg-type]
    feeds: dict[str, FeedRef] = {}
    for name, build in (
        ("amazon-sp", build_amazon_sp_reported),
        ("amazon-ads", build_amazon_ads),
        ("tiktok", build_tiktok),
    ):
        _, section = load_section(EXAMPLE, name, ENVIRON)
        built = await build(section, context)  # type: ignore[operator]
        assert set(built.feeds) == {s.name for s in built.sources}
        feeds.update(built.feeds)
    assert feeds["amazon_sp:orders:amazon-us-01"] == FeedRef(
        "amazon", "US", "amazon-us-01", "orders"
    )
    assert feeds["amazon_sp:inventory:amazon-us-01"].feed == "inventory"
    assert feeds["amazon_ads:reports:amazon-us-01"].feed == "ads"
    assert feeds["tiktok:orders:tiktok-us-01"].platform == "tiktok"
