"""The sources `kpiwatch connect SOURCE` can run, and the config file section each one reads.

A connector config file is YAML with one section per source (`amazon_sp:`, `shopee:`, ...), so
one file can describe every feed of a seller while each feed runs in its own process. Secrets
are never written in the file: a secret names where it lives, `{env: NAME}` or `{file: PATH}`
(the sinks file's `SecretSource`), and is read once at load time.

Each entry here turns a validated section into Sources (polled, checkpointed) and receivers
(HTTP endpoints the platform pushes to); `streams.connect` runs them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import httpx
from aiohttp import web
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from connectors.amazon_ads import AdsApi, AdsReportSource, AmazonAdsConfig
from connectors.amazon_ads_stream import FirehoseReceiver, MarketingStream
from connectors.amazon_sp import (
    LWA_TOKEN_URL,
    AmazonInventorySource,
    AmazonOrdersSource,
    LwaTokens,
    SpApi,
    SpStore,
)
from connectors.base import EventSink, RejectSink, Source
from connectors.checkpoint import CheckpointStore
from connectors.shopee import (
    ShopeeApi,
    ShopeeConfig,
    ShopeeOrdersSource,
    ShopeePush,
    ShopeeStockSource,
)
from connectors.shopify import ShopifyConfig, ShopifyShop, ShopifyWebhooks
from connectors.tiktok import (
    TikTokApi,
    TikTokConfig,
    TikTokInventorySource,
    TikTokOrdersSource,
    TikTokWebhooks,
)
from sinks.config import Seconds, SecretSource
from streams.sourcenames import SECTIONS


class Receiver(Protocol):
    """An HTTP endpoint a platform pushes to (webhooks, push notifications)."""

    def app(self) -> web.Application: ...


@dataclass
class Context:
    """What a source is built with: the shared HTTP client, where cursors (and rotated
    refresh tokens) are kept, and where events and rejected records go (`push_sink` for
    receivers: it also records each store's last successful hand-off)."""

    client: httpx.AsyncClient
    checkpoints: CheckpointStore
    sink: EventSink
    on_rejected: RejectSink
    push_sink: EventSink


@dataclass
class Built:
    sources: list[Source] = field(default_factory=list)
    receivers: list[Receiver] = field(default_factory=list)


class Section(BaseModel):
    """What every section has: how often its sources are polled."""

    model_config = ConfigDict(extra="forbid")

    poll_interval: Seconds = 300.0


async def rotating_token(
    context: Context, name: str, configured: SecretSource
) -> tuple[SecretStr, Callable[[SecretStr], Awaitable[None]]]:
    """A refresh token that the platform replaces on every refresh (Shopee, TikTok Shop): the
    newest one is kept next to the cursors (the configured one only seeds the first run), and
    the callback stores each new one."""
    key = f"refresh-token:{name}"
    stored = await context.checkpoints.load(key)

    async def keep(token: SecretStr) -> None:
        await context.checkpoints.save(key, token.get_secret_value())

    return (SecretStr(stored) if stored else configured.get()), keep


def one_token_per_store(
    tokens: dict[str, SecretSource], info: ValidationInfo
) -> dict[str, SecretSource]:
    """A refresh token for every configured shop, and none for a store nobody configured."""
    stores = {shop.store_id for shop in info.data.get("shops") or []}
    missing, unknown = sorted(stores - tokens.keys()), sorted(tokens.keys() - stores)
    if missing:
        raise ValueError(f"no token for store(s) {', '.join(missing)}")
    if unknown:
        raise ValueError(f"no shop has store_id {', '.join(unknown)}")
    return tokens


# --- Amazon SP-API -------------------------------------------------------------------------


class SpStoreSection(SpStore):
    refresh_token: SecretSource


class AmazonSpSection(Section):
    client_id: str = Field(min_length=1)
    client_secret: SecretSource
    endpoint: str = "https://sellingpartnerapi-na.amazon.com"
    token_url: str = LWA_TOKEN_URL
    start: AwareDatetime
    feeds: list[Literal["orders", "inventory"]] = Field(
        default=["orders", "inventory"], min_length=1
    )
    stores: list[SpStoreSection] = Field(min_length=1)


async def build_amazon_sp(section: AmazonSpSection, context: Context) -> Built:
    built = Built()
    for entry in section.stores:
        tokens = LwaTokens(
            context.client,
            section.client_id,
            section.client_secret.get(),
            entry.refresh_token.get(),
            url=section.token_url,
        )
        api = SpApi(context.client, tokens, endpoint=section.endpoint)
        store = SpStore(**entry.model_dump(include=set(SpStore.model_fields)))
        if "orders" in section.feeds:
            built.sources.append(AmazonOrdersSource(api, store, section.start))
        if "inventory" in section.feeds:
            built.sources.append(AmazonInventorySource(api, store, section.start))
    return built


# --- Amazon Ads ---------------------------------------------------------------------------


class AmazonAdsSection(AmazonAdsConfig, Section):
    # Amazon advises requesting reports once or twice a day.
    poll_interval: Seconds = 12 * 3600.0
    client_secret: SecretSource
    refresh_token: SecretSource
    # Needed when a profile's mode is `stream` (Marketing Stream through Amazon Data Firehose).
    firehose_access_key: SecretSource | None = Field(default=None, validate_default=True)

    @field_validator("firehose_access_key")
    @classmethod
    def _firehose_key(cls, key: SecretSource | None, info: ValidationInfo) -> SecretSource | None:
        streamed = [p.store_id for p in info.data.get("profiles") or [] if p.mode == "stream"]
        if streamed and key is None:
            raise ValueError(
                f"profile(s) {', '.join(streamed)} use mode stream, which arrives through "
                "Firehose: say where its access key lives"
            )
        return key


async def build_amazon_ads(section: AmazonAdsSection, context: Context) -> Built:
    tokens = LwaTokens(
        context.client,
        section.client_id,
        section.client_secret.get(),
        section.refresh_token.get(),
        url=section.token_url,
    )
    api = AdsApi(context.client, tokens, section.client_id, section.endpoint)
    built = Built()
    for profile in section.profiles:
        if profile.mode == "reports":
            built.sources.append(
                AdsReportSource(api, profile, section.start, section.lookback_days)
            )
    if section.firehose_access_key is not None:
        stream = MarketingStream(section, context.checkpoints, on_rejected=context.on_rejected)
        built.receivers.append(
            FirehoseReceiver(
                stream,
                section.firehose_access_key.get(),
                context.push_sink,
                on_rejected=context.on_rejected,
            )
        )
    return built


# --- Shopee Open Platform v2 --------------------------------------------------------------


class ShopeeSection(ShopeeConfig, Section):
    partner_key: SecretSource
    # Keyed by store_id; seeds only: Shopee rotates them on every refresh, the newest is kept
    # in Redis.
    refresh_tokens: dict[str, SecretSource]

    _tokens = field_validator("refresh_tokens")(one_token_per_store)


async def build_shopee(section: ShopeeSection, context: Context) -> Built:
    """One ShopeeApi per shop, shared by its orders feed, its stock feed and the push receiver
    (one refresh at a time: a rotated token is spent once)."""
    built = Built()
    apis = []
    for shop in section.shops:
        seed = section.refresh_tokens[shop.store_id]
        token, keep = await rotating_token(context, f"shopee:{shop.store_id}", seed)
        api = ShopeeApi(
            context.client,
            section.partner_id,
            section.partner_key.get(),
            shop,
            token,
            host=section.host,
            on_refresh_token=keep,
        )
        apis.append(api)
        built.sources.append(ShopeeOrdersSource(api, section.start))
        if section.stock:
            built.sources.append(ShopeeStockSource(api))
    if section.callback_url is not None:
        # Shopee signs pushes with the partner key.
        push = ShopeePush.from_config(
            section,
            section.partner_key.get(),
            apis,
            context.push_sink,
            on_rejected=context.on_rejected,
        )
        built.receivers.append(push)
    return built


# --- Shopify webhooks ---------------------------------------------------------------------


class ShopifySection(Section):
    secret: SecretSource
    path: str = "/webhooks/shopify"
    # Keyed by X-Shopify-Shop-Domain (`example.myshopify.com`).
    shops: dict[str, ShopifyShop] = Field(min_length=1)


async def build_shopify(section: ShopifySection, context: Context) -> Built:
    config = ShopifyConfig(secret=section.secret.get(), shops=section.shops)
    webhooks = ShopifyWebhooks(
        config, context.push_sink, on_rejected=context.on_rejected, path=section.path
    )
    return Built(receivers=[webhooks])


# --- TikTok Shop (API 202309) ------------------------------------------------------------


class TikTokSection(TikTokConfig, Section):
    app_secret: SecretSource
    # Keyed by store_id; seeds only: TikTok may rotate them, the newest is kept in Redis.
    refresh_tokens: dict[str, SecretSource]
    webhooks: bool = True
    webhook_path: str = "/webhooks/tiktok"
    inventory: bool = True

    _tokens = field_validator("refresh_tokens")(one_token_per_store)


async def build_tiktok(section: TikTokSection, context: Context) -> Built:
    built = Built()
    apis = []
    for shop in section.shops:
        seed = section.refresh_tokens[shop.store_id]
        token, keep = await rotating_token(context, f"tiktok:{shop.store_id}", seed)
        api = TikTokApi(
            context.client,
            section.app_key,
            section.app_secret.get(),
            shop,
            token,
            api_host=section.api_host,
            auth_host=section.auth_host,
            on_refresh_token=keep,
        )
        apis.append(api)
        built.sources.append(TikTokOrdersSource(api, section.start))
        if section.inventory and shop.product_ids:
            built.sources.append(TikTokInventorySource(api))
    if section.webhooks:
        built.receivers.append(
            TikTokWebhooks(
                section.app_key,
                section.app_secret.get(),
                apis,
                context.push_sink,
                on_rejected=context.on_rejected,
                path=section.webhook_path,
            )
        )
    return built


# --- The registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceKind:
    key: str  # the section's key in the file
    model: type[Section]
    build: Callable[[Any, Context], Awaitable[Built]]


_BUILDERS: Final[dict[str, tuple[type[Section], Callable[[Any, Context], Awaitable[Built]]]]] = {
    "amazon-sp": (AmazonSpSection, build_amazon_sp),
    "amazon-ads": (AmazonAdsSection, build_amazon_ads),
    "shopee": (ShopeeSection, build_shopee),
    "shopify": (ShopifySection, build_shopify),
    "tiktok": (TikTokSection, build_tiktok),
}
SOURCES: Final[dict[str, SourceKind]] = {
    name: SourceKind(SECTIONS[name], *_BUILDERS[name]) for name in SECTIONS
}
