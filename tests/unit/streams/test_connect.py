"""The connector config file: sections validated strictly, secrets read from env or files,
every problem reported at once with its line; metrics and rotating tokens of `kpiwatch connect`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.amazon_ads_stream import FirehoseReceiver
from connectors.amazon_sp import AmazonInventorySource, AmazonOrdersSource, AmazonSpSection
from connectors.base import Page
from connectors.building import Context, rotating_token
from connectors.checkpoint import MemoryCheckpoints
from connectors.shopee import ShopeePush
from connectors.shopify import ShopifyWebhooks
from connectors.tiktok import TikTokWebhooks
from rules.errors import ConfigError, InvalidEventError
from rules.fileconfig import SecretSource, secrets_in
from streams.connect import ConnectorMetrics, load_section, store_of

EXAMPLE = Path(__file__).parents[3] / "deploy" / "kpiwatch" / "connect.example.yaml"
ENVIRON = {
    "KPIWATCH_LWA_CLIENT_SECRET": "lwa-secret",
    "KPIWATCH_SP_REFRESH_TOKEN_US01": "Atzr|refresh",
    "KPIWATCH_SHOPEE_REFRESH_TOKEN_MY01": "shopee-refresh",
    "KPIWATCH_SHOPIFY_WEBHOOK_SECRET": "shpss_secret",
    "KPIWATCH_TIKTOK_APP_SECRET": "tts-secret",
    "KPIWATCH_ADS_REFRESH_TOKEN": "Atzr|ads",
    "KPIWATCH_FIREHOSE_ACCESS_KEY": "firehose-key",
    "KPIWATCH_TIKTOK_REFRESH_TOKEN_US01": "tts-refresh",
}


def line_in(path: Path, needle: str) -> int:
    """The 1-based line of the first line of `path` containing `needle`."""
    lines = path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, start=1) if needle in line)


def problems(path: Path, source: str, environ: dict[str, str]) -> list[tuple[int | None, str]]:
    with pytest.raises(ConfigError) as caught:
        load_section(path, source, environ)
    return [(p.line, p.message) for p in caught.value.problems]


def test_the_example_amazon_section_loads_with_its_secrets_read() -> None:
    _, section = load_section(EXAMPLE, "amazon-sp", ENVIRON)
    assert isinstance(section, AmazonSpSection)
    assert section.poll_interval == 120.0
    assert section.client_secret.get().get_secret_value() == "lwa-secret"
    assert section.stores[0].refresh_token.get().get_secret_value() == "Atzr|refresh"
    assert section.stores[0].marketplace == "US"


def test_the_example_shopee_section_names_its_missing_secret_file() -> None:
    assert problems(EXAMPLE, "shopee", ENVIRON) == [
        (
            line_in(EXAMPLE, "/run/secrets/shopee_partner_key"),
            "shopee.partner_key: cannot read secret file /run/secrets/shopee_partner_key: "
            "No such file or directory",
        )
    ]


def test_secret_files_are_read_and_stripped(tmp_path: Path) -> None:
    key = tmp_path / "partner_key"
    key.write_text("shopee-partner-key\n")
    text = EXAMPLE.read_text().replace("/run/secrets/shopee_partner_key", str(key))
    config = tmp_path / "connect.yaml"
    config.write_text(text)
    _, section = load_section(config, "shopee", ENVIRON)
    secrets = [s for _, s in secrets_in(section)]
    assert [s.get().get_secret_value() for s in secrets] == ["shopee-partner-key", "shopee-refresh"]


def test_every_problem_of_a_section_at_once_with_lines(tmp_path: Path) -> None:
    config = tmp_path / "connect.yaml"
    config.write_text(
        "amazon_sp:\n"
        "  client_id: app\n"
        "  client_secret: {env: NOT_SET}\n"
        "  start: 2026-11-01T00:00:00\n"
        "  stores:\n"
        "    - store_id: us-1\n"
        "      marketplace_id: ATVPDKIKX0DER\n"
        "      currency: USD\n"
        "      refresh_token: Atzr|inline\n"
        "      region: na\n"
        "walmart:\n"
        "  x: 1\n"
    )
    found = problems(config, "amazon-sp", {})
    assert (
        11,
        "walmart: not a source section (known: amazon_ads, amazon_sp, shopee, shopify, tiktok)",
    ) in found
    assert any(line == 4 and "timezone" in message for line, message in found)
    assert (
        9,
        "refresh_token: a secret is not written in the file: name where it lives, "
        "{env: VARIABLE} or {file: /path/to/file}",
    ) in found
    assert any(line == 10 and "region" in message for line, message in found)


def test_a_missing_environment_variable_is_named_never_a_value(tmp_path: Path) -> None:
    config = tmp_path / "connect.yaml"
    config.write_text(EXAMPLE.read_text())
    environ = {**ENVIRON, "KPIWATCH_LWA_CLIENT_SECRET": ""}
    assert problems(config, "amazon-sp", environ) == [
        (
            10,
            "amazon_sp.client_secret: environment variable KPIWATCH_LWA_CLIENT_SECRET is not "
            "set or empty",
        )
    ]


def test_a_file_without_the_section_or_an_unknown_source(tmp_path: Path) -> None:
    config = tmp_path / "connect.yaml"
    config.write_text("shopee:\n  partner_id: 1\n")
    # Reported where the sections begin: every problem in a config file has a line.
    assert problems(config, "amazon-sp", {}) == [(1, "no 'amazon_sp:' section in the file")]
    assert problems(config, "ebay", {})[0][1].startswith("unknown source 'ebay' (known: amazon-ads")
    assert problems(tmp_path / "missing.yaml", "shopee", {}) == [
        (None, "cannot read: No such file or directory")
    ]


async def _noop(*_: object) -> None:
    return None


async def test_amazon_builds_one_source_per_store_and_feed() -> None:
    from connectors.amazon_sp import build_amazon_sp

    _, section = load_section(EXAMPLE, "amazon-sp", ENVIRON)
    context = Context(None, MemoryCheckpoints(), _noop, _noop, _noop)  # type: ignore[arg-type]
    built = await build_amazon_sp(section, context)
    assert [type(s) for s in built.sources] == [AmazonOrdersSource, AmazonInventorySource]
    assert [s.name for s in built.sources] == [
        "amazon_sp:orders:amazon-us-01",
        "amazon_sp:inventory:amazon-us-01",
    ]


async def test_shopify_builds_a_receiver() -> None:
    from connectors.shopify import build_shopify

    _, section = load_section(EXAMPLE, "shopify", ENVIRON)
    context = Context(None, MemoryCheckpoints(), _noop, _noop, _noop)  # type: ignore[arg-type]
    built = await build_shopify(section, context)
    assert built.sources == []
    assert isinstance(built.receivers[0], ShopifyWebhooks)


async def test_a_rotated_refresh_token_is_kept_and_preferred_next_time() -> None:
    checkpoints = MemoryCheckpoints()
    context = Context(None, checkpoints, _noop, _noop, _noop)  # type: ignore[arg-type]
    configured = SecretSource.of("first")
    token, keep = await rotating_token(context, "shopee:my-1", configured)
    assert token.get_secret_value() == "first"
    await keep(SecretStr("second"))
    token, _ = await rotating_token(context, "shopee:my-1", configured)
    assert token.get_secret_value() == "second"


class _Named:
    name = "amazon_sp:orders:us-1"

    def pages(self, cursor: str | None) -> object:  # pragma: no cover - not iterated
        raise NotImplementedError


def test_metrics_stamp_the_store_of_each_saved_page() -> None:
    metrics = ConnectorMetrics()
    metrics.page(_Named(), Page(events=(), cursor="c"))  # type: ignore[arg-type]
    stamp = metrics.registry.get_sample_value(
        "kpiwatch_connector_last_success_timestamp_seconds",
        {"source": "amazon_sp:orders:us-1", "store": "us-1"},
    )
    assert stamp is not None
    assert stamp > 1.7e9
    assert store_of("shopee:orders:my-1") == "my-1"


async def test_tiktok_builds_orders_inventory_and_a_webhook_receiver() -> None:
    from connectors.tiktok import build_tiktok

    _, section = load_section(EXAMPLE, "tiktok", ENVIRON)
    context = Context(None, MemoryCheckpoints(), _noop, _noop, _noop)  # type: ignore[arg-type]
    built = await build_tiktok(section, context)
    assert [s.name for s in built.sources] == [
        "tiktok:orders:tiktok-us-01",
        "tiktok:inventory:tiktok-us-01",
    ]
    assert [type(r) for r in built.receivers] == [TikTokWebhooks]


def test_tiktok_needs_a_refresh_token_per_shop(tmp_path: Path) -> None:
    config = tmp_path / "connect.yaml"
    text = EXAMPLE.read_text().replace(
        "    tiktok-us-01: {env: KPIWATCH_TIKTOK_REFRESH_TOKEN_US01}",
        "    tiktok-jp-01: {env: KPIWATCH_TIKTOK_REFRESH_TOKEN_US01}",
    )
    config.write_text(text)
    [(line, message)] = problems(config, "tiktok", ENVIRON)
    assert line == line_in(config, "tiktok-jp-01") - 1  # its refresh_tokens: key
    assert message == ("refresh_tokens: no token for store(s) tiktok-us-01")


async def test_amazon_ads_reads_reports_for_one_profile_and_the_stream_for_the_other() -> None:
    from connectors.amazon_ads import build_amazon_ads

    _, section = load_section(EXAMPLE, "amazon-ads", ENVIRON)
    context = Context(None, MemoryCheckpoints(), _noop, _noop, _noop)  # type: ignore[arg-type]
    built = await build_amazon_ads(section, context)
    assert [s.name for s in built.sources] == ["amazon_ads:reports:amazon-us-01"]
    assert [type(r) for r in built.receivers] == [FirehoseReceiver]
    assert section.poll_interval == 12 * 3600


def test_amazon_ads_stream_profiles_need_the_firehose_key(tmp_path: Path) -> None:
    config = tmp_path / "connect.yaml"
    text = EXAMPLE.read_text().replace(
        "  firehose_access_key: {env: KPIWATCH_FIREHOSE_ACCESS_KEY}\n", ""
    )
    config.write_text(text)
    [(line, message)] = problems(config, "amazon-ads", ENVIRON)
    assert line == line_in(config, "amazon_ads:")  # the key is missing: its section
    assert message == (
        "firehose_access_key: profile(s) amazon-jp-01 use mode stream, which arrives through "
        "Firehose or SQS: say where the Firehose access key lives, or give sqs:"
    )


async def test_shopee_builds_orders_stock_and_a_push_receiver(tmp_path: Path) -> None:
    from connectors.shopee import build_shopee

    key = tmp_path / "partner_key"
    key.write_text("shopee-partner-key\n")
    config = tmp_path / "connect.yaml"
    config.write_text(EXAMPLE.read_text().replace("/run/secrets/shopee_partner_key", str(key)))
    _, section = load_section(config, "shopee", ENVIRON)
    context = Context(None, MemoryCheckpoints(), _noop, _noop, _noop)  # type: ignore[arg-type]
    built = await build_shopee(section, context)
    assert [s.name for s in built.sources] == [
        "shopee:orders:shopee-my-01",
        "shopee:stock:shopee-my-01",
    ]
    assert [type(r) for r in built.receivers] == [ShopeePush]


def test_the_shipped_connector_alerts_use_metrics_that_exist() -> None:
    import re

    rules = (EXAMPLE.parents[1] / "prometheus" / "kpiwatch-rules.yml").read_text()
    used = set(re.findall(r"kpiwatch_connector_\w+", rules))
    # A counter family is named without its _total suffix.
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in ConnectorMetrics().registry.collect()
    }
    assert used
    assert used <= exported, used - exported


class _Broken:
    name = "amazon_sp:orders:us-1"

    async def pages(self, cursor: str | None) -> AsyncIterator[Page]:
        raise ValueError("a bug, not an API failure")
        yield  # pragma: no cover - makes this an async generator


async def test_a_source_that_dies_of_a_bug_stops_the_process_with_1() -> None:
    from connectors.building import Built, Section
    from streams.connect import Options, _forever

    context = Context(None, MemoryCheckpoints(), _noop, _noop, _noop)  # type: ignore[arg-type]
    built = Built(sources=[_Broken()])
    code = await asyncio.wait_for(
        _forever(built, Section(), context, ConnectorMetrics(), Options()), 10
    )
    assert code == 1


class _Producer:
    def __init__(self) -> None:
        self.raw: list[tuple[str, bytes]] = []

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.raw.append((topic, value))

    async def send_acknowledged(self, events: object) -> None:
        raise AssertionError("no push in this test")


class _OnePage:
    name = "amazon_sp:orders:us-1"

    async def pages(self, cursor: str | None) -> AsyncIterator[Page]:
        yield Page(events=(), cursor="c1", rejected=[InvalidEventError("p1 o7", "bad currency")])


async def test_a_rejected_record_of_a_polled_page_is_dead_lettered_and_counted_once() -> None:
    from connectors.base import run_source
    from streams.connect import Producing
    from streams.settings import Settings

    metrics, producer = ConnectorMetrics(), _Producer()
    producing = Producing(producer, Settings(topic_prefix="t."), metrics, "amazon-sp")  # type: ignore[arg-type]
    await run_source(
        _OnePage(),
        producing.events,
        MemoryCheckpoints(),
        on_rejected=producing.rejected,
        on_page=metrics.page,
    )
    [(topic, value)] = producer.raw
    assert topic == "t.dead-letter"
    assert json.loads(value)["source"] == "p1 o7"
    counted = [
        sample.value
        for family in metrics.registry.collect()
        if family.name == "kpiwatch_connector_rejected"
        for sample in family.samples
        if sample.name.endswith("_total")
    ]
    assert counted == [1.0]


async def test_a_shopify_shop_may_name_its_own_secret(tmp_path: Path) -> None:
    from connectors.shopify import build_shopify, verify

    config = tmp_path / "connect.yaml"
    config.write_text(
        "shopify:\n"
        "  shops:\n"
        "    example-store.myshopify.com:\n"
        "      store_id: shopify-us-01\n"
        "      marketplace: US\n"
        "      secret: {env: KPIWATCH_SHOPIFY_SHOP_SECRET}\n"
    )
    environ = {"KPIWATCH_SHOPIFY_SHOP_SECRET": "shop-admin-secret"}
    _, section = load_section(config, "shopify", environ)
    context = Context(None, MemoryCheckpoints(), _noop, _noop, _noop)  # type: ignore[arg-type]
    [webhooks] = (await build_shopify(section, context)).receivers
    assert isinstance(webhooks, ShopifyWebhooks)
    secret = webhooks._config.secret_for("example-store.myshopify.com")
    assert secret is not None
    assert secret.get_secret_value() == "shop-admin-secret"
    assert not verify(secret, b"{}", "forged")
    # Without its own secret and without the app's, the shop could never be verified.
    config.write_text(
        config.read_text().replace("      secret: {env: KPIWATCH_SHOPIFY_SHOP_SECRET}\n", "")
    )
    [(line, message)] = problems(config, "shopify", environ)
    assert line == 1
    assert "none for shop(s) example-store.myshopify.com" in message
