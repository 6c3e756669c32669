"""Shopify webhooks: an aiohttp endpoint that verifies X-Shopify-Hmac-Sha256, drops repeated
deliveries by X-Shopify-Webhook-Id, and turns orders/create, orders/updated, refunds/create and
inventory_levels/update into our events.

An app's webhooks are signed with the app's client secret; webhooks a merchant creates in the
shop's admin (Settings > Notifications > Webhooks) are signed with a secret of that shop. Each
shop may name its own secret; the app's is used for the shops that do not.

An order counts in the hour it was created (`placed_at`), whatever delivery brings it first;
gift card lines are not sales (the card's value is counted when it is spent).

Shopify waits 5 seconds for a 2xx and otherwise retries (8 times over 4 hours). We answer 200
only once the sink has taken the events (the sink returns when Kafka acknowledged them), within
`handoff_timeout`; if that fails we answer 503, so Shopify's retry, not our memory, is what
keeps an event from being lost.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from connectors.base import EventSink, RejectSink
from connectors.building import Built, Context, Section
from connectors.push import PushReceiver, hand_off, reject
from rules.errors import InvalidEventError
from rules.fileconfig import SecretSource
from streams.events import Event, InventoryEvent, OrderEvent, OrderStatus, describe

log = logging.getLogger(__name__)

ORDER_TOPICS: Final = ("orders/create", "orders/updated")
MAX_BODY: Final = 5 * 1024 * 1024


def signature(secret: SecretStr, body: bytes) -> str:
    """base64(HMAC-SHA256(app client secret, raw body)): what Shopify puts in the header."""
    digest = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(secret: SecretStr, body: bytes, header: str | None) -> bool:
    """Constant-time check of X-Shopify-Hmac-Sha256 against the raw (unparsed) body."""
    if not header:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header.strip().encode())


class ShopifyShop(BaseModel):
    """One shop: its store_id and ISO country in our events, where its stock sits, and the
    SKUs of its inventory items (inventory_levels/update names only inventory_item_id)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_id: str = Field(min_length=1)
    marketplace: str = Field(pattern=r"^[A-Z]{2}$")
    # What our inventory events accept: any other word would dead-letter every stock update.
    warehouse: Literal["fba", "3pl", "own"] = "own"
    # inventory_item_id (digits) -> SKU.
    inventory_skus: dict[Annotated[str, Field(pattern=r"^\d{1,20}$")], str] = Field(
        default_factory=dict
    )


SHOP_DOMAIN: Final = r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$"


class ShopifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The app's client secret; None when every shop has its own.
    secret: SecretStr | None = None
    # Keyed by X-Shopify-Shop-Domain (`example.myshopify.com`).
    shops: dict[Annotated[str, Field(pattern=SHOP_DOMAIN)], ShopifyShop]
    # Per shop domain: the secret of webhooks created in that shop's admin.
    shop_secrets: dict[str, SecretStr] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _a_secret_for_every_shop(self) -> ShopifyConfig:
        unknown = sorted(self.shop_secrets.keys() - self.shops.keys())
        if unknown:
            raise ValueError(f"shop_secrets: no shop {', '.join(unknown)}")
        if self.secret is None:
            missing = sorted(self.shops.keys() - self.shop_secrets.keys())
            if missing:
                raise ValueError(
                    f"no secret for shop(s) {', '.join(missing)}: give one each or the app's"
                )
        return self

    def secret_for(self, domain: str) -> SecretStr | None:
        """The secret that signs `domain`'s webhooks: its own, else the app's."""
        return self.shop_secrets.get(domain, self.secret)


def order_status(order: dict[str, Any]) -> OrderStatus:
    if order.get("cancelled_at"):
        return "cancelled"
    if order.get("financial_status") == "refunded":
        return "refunded"
    if order.get("fulfillment_status") == "fulfilled":
        return "shipped"
    return "placed"


def order_event(order: Any, shop: ShopifyShop, source: str) -> OrderEvent:
    """An Order payload as the order's latest state; event_id = order id + updated_at."""
    if not isinstance(order, dict) or "id" not in order:
        raise InvalidEventError(source, "payload is not an order (no id)")
    try:
        lines = [line for item in order.get("line_items") or [] for line in _line(item, order)]
        return OrderEvent.model_validate(
            {
                "event_id": f"shopify:{order['id']}:{order.get('updated_at')}",
                "occurred_at": order.get("updated_at") or order.get("created_at"),
                # An order first delivered by orders/updated (a webhook added later, an edit)
                # still belongs to the hour it was created.
                "placed_at": order.get("created_at"),
                "platform": "shopify",
                "marketplace": shop.marketplace,
                "store_id": shop.store_id,
                "order_id": str(order["id"]),
                "status": order_status(order),
                "lines": lines,
                "is_test": bool(order.get("test")),
            }
        )
    except ValidationError as exc:
        raise InvalidEventError(source, describe(exc)) from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidEventError(source, f"malformed line_items: {exc}") from exc


def _line(item: dict[str, Any], order: dict[str, Any]) -> list[dict[str, Any]]:
    if not item.get("quantity"):
        return []  # removed by an order edit
    if item.get("gift_card"):
        return []  # selling a gift card is no sale of goods; spending it is
    shop_money = (item.get("price_set") or {}).get("shop_money") or {}
    return [
        {
            "sku": item.get("sku") or f"variant:{item.get('variant_id') or item.get('id')}",
            "quantity": item["quantity"],
            "unit_price": {
                "amount": str(shop_money.get("amount", item.get("price"))),
                "currency": shop_money.get("currency_code") or order.get("currency"),
            },
        }
    ]


def inventory_event(level: Any, shop: ShopifyShop, source: str) -> InventoryEvent | None:
    """An InventoryLevel; None when the item is not tracked (available is null)."""
    if not isinstance(level, dict) or level.get("available") is None:
        return None
    item = str(level.get("inventory_item_id"))
    stamp = f"{item}:{level.get('location_id')}:{level.get('updated_at')}"
    try:
        return InventoryEvent.model_validate(
            {
                "event_id": f"shopify:inv:{stamp}",
                "occurred_at": level.get("updated_at"),
                "platform": "shopify",
                "marketplace": shop.marketplace,
                "store_id": shop.store_id,
                "sku": shop.inventory_skus.get(item, f"inventory_item:{item}"),
                "warehouse": shop.warehouse,
                # Shopify lets available go below zero when it oversells; for us that is 0.
                "available": max(0, int(level["available"])),
                "as_of": level.get("updated_at"),
            }
        )
    except ValidationError as exc:
        raise InvalidEventError(source, describe(exc)) from exc
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(source, f"malformed inventory level: {exc}") from exc


def events_for(topic: str, payload: Any, shop: ShopifyShop, source: str) -> list[Event]:
    """Our events for one delivery. refunds/create gives none: a refund payload holds only the
    refunded lines, and our order events carry an order's whole state (the engine keeps the
    latest per order_id); Shopify also sends orders/updated for the refunded order, and that
    delivery carries its new financial_status."""
    if topic in ORDER_TOPICS:
        return [order_event(payload, shop, source)]
    if topic == "inventory_levels/update":
        event = inventory_event(payload, shop, source)
        return [] if event is None else [event]
    return []


class ShopifyWebhooks(PushReceiver):
    """The endpoint: POST `path`, one handler for every topic (X-Shopify-Topic)."""

    def __init__(
        self,
        config: ShopifyConfig,
        sink: EventSink,
        *,
        on_rejected: RejectSink | None = None,
        handoff_timeout: float = 3.0,
        remember: int = 100_000,
        path: str = "/webhooks/shopify",
    ) -> None:
        super().__init__(path, remember=remember, max_body=MAX_BODY)
        self._config, self._sink, self._on_rejected = config, sink, on_rejected
        self._timeout = handoff_timeout

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        domain = request.headers.get("X-Shopify-Shop-Domain", "")
        secret = self._config.secret_for(domain)
        header = request.headers.get("X-Shopify-Hmac-Sha256")
        if secret is None or not verify(secret, body, header):
            return web.Response(status=401, text="bad signature")
        webhook_id = request.headers.get("X-Shopify-Webhook-Id", "")
        if self.repeated(webhook_id):
            return web.Response(status=200, text="duplicate")
        shop = self._config.shops.get(domain)
        if shop is None:
            # Signed with our secret but for a shop nobody configured: a setup mistake.
            log.error(
                "webhook for unconfigured shop %s", request.headers.get("X-Shopify-Shop-Domain")
            )
            return web.Response(status=404, text="unknown shop")
        topic = request.headers.get("X-Shopify-Topic", "")
        return await self.once(webhook_id, lambda: self._deliver(topic, body, shop, webhook_id))

    async def _deliver(
        self, topic: str, body: bytes, shop: ShopifyShop, webhook_id: str
    ) -> web.Response:
        source = f"shopify {topic} webhook {webhook_id or '(no id)'}"
        try:
            events = events_for(topic, _parse(body, source), shop, source)
        except InvalidEventError as exc:
            # Retrying the same bytes cannot help: record it and let Shopify stop.
            await reject(self._on_rejected, exc)
            return web.Response(status=200, text="rejected")
        if not await hand_off(self._sink, events, self._timeout, source):
            return web.Response(status=503, text="try again")
        return web.Response(status=200, text="ok")


def _parse(body: bytes, source: str) -> Any:
    try:
        return json.loads(body, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError(source, f"body is not JSON: {exc}") from exc


async def serve(webhooks: ShopifyWebhooks, host: str, port: int) -> web.AppRunner:
    """Start the endpoint; the caller stops it with `await runner.cleanup()`."""
    runner = web.AppRunner(webhooks.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


# --- The connect file's section and builder ------------------------------------------------


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
