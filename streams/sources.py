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
from datetime import timedelta
from typing import Annotated, Any, Final, Literal, Protocol

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
    model_validator,
)

from connectors.amazon_ads import AdsApi, AdsReportSource, AmazonAdsConfig
from connectors.amazon_ads_sqs import SNS_URL, MarketingStreamQueue
from connectors.amazon_ads_stream import FirehoseReceiver, MarketingStream
from connectors.amazon_sp import (
    LWA_TOKEN_URL,
    AmazonInventorySource,
    AmazonOrdersSource,
    AmazonSpConfig,
    LwaTokens,
    SpApi,
    SpStore,
)
from connectors.base import EventSink, FeedRef, RejectSink, Source
from connectors.checkpoint import CheckpointStore
from connectors.shopee import (
    ShopeeApi,
    ShopeeConfig,
    ShopeeOrdersSource,
    ShopeePush,
    ShopeeStockSource,
)
from connectors.shopify import SHOP_DOMAIN, ShopifyConfig, ShopifyShop, ShopifyWebhooks
from connectors.tiktok import (
    TikTokApi,
    TikTokConfig,
    TikTokInventorySource,
    TikTokOrdersSource,
    TikTokWebhooks,
)
from rules.errors import ServiceError
from sinks.config import Seconds, SecretSource
from streams.events import FeedName
from streams.sourcenames import SECTIONS


class Receiver(Protocol):
    """An HTTP endpoint a platform pushes to (webhooks, push notifications)."""

    def app(self) -> web.Application: ...


class Consumer(Protocol):
    """A queue read until cancelled (Marketing Stream through SQS)."""

    async def run(self) -> None: ...


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
    # By source name: the store feed a source reads, whose passes are reported to the engine.
    feeds: dict[str, FeedRef] = field(default_factory=dict)
    consumers: list[Consumer] = field(default_factory=list)
    # Called once the connector stops (clients the builders opened).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def add(self, source: Source, feed: FeedRef | None) -> None:
        self.sources.append(source)
        if feed is not None:
            self.feeds[source.name] = feed


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


class AmazonSpSection(AmazonSpConfig, Section):
    client_id: str = Field(min_length=1)
    client_secret: SecretSource
    token_url: str = LWA_TOKEN_URL
    start: AwareDatetime
    feeds: list[Literal["orders", "inventory"]] = Field(
        default=["orders", "inventory"], min_length=1
    )
    # Before `endpoint` (AmazonSpConfig checks the endpoint against every store's region).
    stores: list[SpStoreSection] = Field(min_length=1)  # type: ignore[assignment]
    endpoint: str | None = Field(default=None, validate_default=True)
    # startDateTime passes miss inbound-only changes: a full pass on start and this often.
    inventory_full_every: Seconds = 86400.0
    inventory_full_on_start: bool = True


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
        store = SpStore(**entry.model_dump(include=set(SpStore.model_fields)))
        api = SpApi(context.client, tokens, endpoint=section.endpoint_for(store))
        if "orders" in section.feeds:
            built.sources.append(AmazonOrdersSource(api, store, section.start))
        if "inventory" in section.feeds:
            built.sources.append(
                AmazonInventorySource(
                    api,
                    store,
                    section.start,
                    full_every=timedelta(seconds=section.inventory_full_every),
                    full_on_start=section.inventory_full_on_start,
                )
            )
    return built


async def build_amazon_sp_reported(section: AmazonSpSection, context: Context) -> Built:
    """build_amazon_sp, each source's store feed named so its passes are reported."""
    built = await build_amazon_sp(section, context)
    for source in built.sources:
        if isinstance(source, AmazonOrdersSource | AmazonInventorySource):
            feed: FeedName = "orders" if isinstance(source, AmazonOrdersSource) else "inventory"
            try:
                marketplace = source.store.marketplace
            except ValueError:
                continue  # an unknown marketplace id: its records are refused with the reason
            built.feeds[source.name] = FeedRef("amazon", marketplace, source.store.store_id, feed)
    return built


# --- Amazon Ads ---------------------------------------------------------------------------


class AdsSqsSection(BaseModel):
    """The SQS queue Amazon's Marketing Stream topics deliver to. AWS credentials come the
    usual AWS way (environment, shared files, the instance's or pod's role), never this file."""

    model_config = ConfigDict(extra="forbid")

    queue_url: str = Field(pattern=r"^https?://[^/\s]+/\S+$")
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    # Another SQS endpoint (a local SQS-compatible server for tests); None: AWS's own.
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+/?$")
    # Where a subscription confirmation may send us (a regex); by default SNS's own hosts.
    confirm_url: str = SNS_URL


class AmazonAdsSection(AmazonAdsConfig, Section):
    # Amazon advises requesting reports once or twice a day.
    poll_interval: Seconds = 12 * 3600.0
    client_secret: SecretSource
    refresh_token: SecretSource
    # Marketing Stream through SQS (before the Firehose key, which is only needed without it).
    sqs: AdsSqsSection | None = None
    # Needed when a profile's mode is `stream` and its records come through Amazon Data
    # Firehose rather than SQS.
    firehose_access_key: SecretSource | None = Field(default=None, validate_default=True)

    @field_validator("firehose_access_key")
    @classmethod
    def _firehose_key(cls, key: SecretSource | None, info: ValidationInfo) -> SecretSource | None:
        streamed = [p.store_id for p in info.data.get("profiles") or [] if p.mode == "stream"]
        if streamed and key is None and info.data.get("sqs") is None:
            raise ValueError(
                f"profile(s) {', '.join(streamed)} use mode stream, which arrives through "
                "Firehose or SQS: say where the Firehose access key lives, or give sqs:"
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
            built.add(
                AdsReportSource(api, profile, section.start, section.lookback_days),
                FeedRef("amazon", profile.marketplace, profile.store_id, "ads"),
            )
    if section.sqs is not None:
        await _sqs_consumer(section, section.sqs, context, built)
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


async def _sqs_consumer(
    section: AmazonAdsSection, sqs: AdsSqsSection, context: Context, built: Built
) -> None:
    try:
        from aiobotocore.session import get_session
    except ImportError as exc:
        raise ServiceError(
            "amazon_ads sqs: needs the AWS client; install kpiwatch[sqs] (aiobotocore)"
        ) from exc
    client = (
        await get_session()
        .create_client("sqs", region_name=sqs.region, endpoint_url=sqs.endpoint_url)
        .__aenter__()
    )
    built.closers.append(client.close)
    stream = MarketingStream(section, context.checkpoints, on_rejected=context.on_rejected)
    built.consumers.append(
        MarketingStreamQueue(
            stream,
            client,
            sqs.queue_url,
            context.push_sink,
            context.client,
            confirm_url=sqs.confirm_url,
        )
    )


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
        # Orders carry their own region; the shop's is needed to name the store's feeds.
        feeds = _shopee_feeds(shop.region, shop.store_id)
        built.add(ShopeeOrdersSource(api, section.start), feeds.get("orders"))
        if section.stock:
            built.add(ShopeeStockSource(api), feeds.get("inventory"))
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


def _shopee_feeds(region: str | None, store_id: str) -> dict[str, FeedRef]:
    if region is None:
        return {}
    return {
        "orders": FeedRef("shopee", region, store_id, "orders"),
        "inventory": FeedRef("shopee", region, store_id, "inventory"),
    }


# --- Shopify webhooks ---------------------------------------------------------------------


class ShopifyShopSection(ShopifyShop):
    # Webhooks created in this shop's admin are signed with the shop's own secret.
    secret: SecretSource | None = None


class ShopifySection(Section):
    # The app's client secret: signs the webhooks the app subscribed (None: every shop has its
    # own secret).
    secret: SecretSource | None = None
    path: str = Field(default="/webhooks/shopify", pattern=r"^/")
    # Keyed by X-Shopify-Shop-Domain (`example.myshopify.com`).
    shops: dict[Annotated[str, Field(pattern=SHOP_DOMAIN)], ShopifyShopSection] = Field(
        min_length=1
    )

    @model_validator(mode="after")
    def _a_secret_for_every_shop(self) -> ShopifySection:
        missing = sorted(d for d, shop in self.shops.items() if shop.secret is None)
        if self.secret is None and missing:
            raise ValueError(
                f"secret: none for shop(s) {', '.join(missing)}; give the app's client secret "
                "or each shop's own"
            )
        return self


async def build_shopify(section: ShopifySection, context: Context) -> Built:
    config = ShopifyConfig(
        secret=section.secret.get() if section.secret is not None else None,
        shops={
            domain: ShopifyShop(**shop.model_dump(exclude={"secret"}))
            for domain, shop in section.shops.items()
        },
        shop_secrets={
            domain: shop.secret.get()
            for domain, shop in section.shops.items()
            if shop.secret is not None
        },
    )
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
        built.add(
            TikTokOrdersSource(api, section.start),
            FeedRef("tiktok", shop.marketplace, shop.store_id, "orders"),
        )
        if section.inventory and shop.product_ids:
            built.add(
                TikTokInventorySource(api),
                FeedRef("tiktok", shop.marketplace, shop.store_id, "inventory"),
            )
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
    "amazon-sp": (AmazonSpSection, build_amazon_sp_reported),
    "amazon-ads": (AmazonAdsSection, build_amazon_ads),
    "shopee": (ShopeeSection, build_shopee),
    "shopify": (ShopifySection, build_shopify),
    "tiktok": (TikTokSection, build_tiktok),
}
SOURCES: Final[dict[str, SourceKind]] = {
    name: SourceKind(SECTIONS[name], *_BUILDERS[name]) for name in SECTIONS
}
