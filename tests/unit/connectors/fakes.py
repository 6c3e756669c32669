"""Fake marketplace servers answering in the shapes of the platforms' public API models
(SP-API ordersV0.json / fbaInventory.json, Login with Amazon, Shopee Open Platform v2), usable
through httpx.MockTransport or mounted in a real aiohttp server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx

from streams.events import Event

Reply = tuple[int, dict[str, str], bytes]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return (
        status,
        {"content-type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


# SP-API's answer to a request it refuses (the models' 400 sandbox responses; also what a
# stale page token gets).
INVALID_INPUT: dict[str, Any] = {"errors": [{"code": "InvalidInput", "message": "Invalid Input"}]}


def amazon_order(number: int, status: str = "Unshipped", channel: str = "MFN") -> dict[str, Any]:
    return {
        "AmazonOrderId": f"902-0000000-{number:07d}",
        "PurchaseDate": "2026-11-20T10:00:00Z",
        "LastUpdateDate": f"2026-11-20T10:{number:02d}:00Z",
        "OrderStatus": status,
        "FulfillmentChannel": channel,
        "MarketplaceId": "ATVPDKIKX0DER",
        "OrderTotal": {"CurrencyCode": "USD", "Amount": "10.00"},
        "LatestShipDate": "2026-11-22T10:00:00Z",
    }


def amazon_items(number: int) -> list[dict[str, Any]]:
    return [
        {
            "ASIN": "B000000001",
            "OrderItemId": f"item-{number}",
            "SellerSKU": f"SKU-{number % 3}",
            "QuantityOrdered": 3,
            "ItemPrice": {"CurrencyCode": "USD", "Amount": "10.00"},
        }
    ]


@dataclass
class FakeAmazon:
    """LWA token endpoint plus getOrders/getOrderItems/getInventorySummaries, paging by
    NextToken; `script` injects replies (429s, broken bodies) before the real one."""

    orders: list[dict[str, Any]]
    page_size: int = 2
    inventory: list[dict[str, Any]] = field(default_factory=list)
    # Every token stops working after this many API calls (None: never).
    token_calls: int | None = None
    script: dict[tuple[str, int], list[Reply]] = field(default_factory=dict)
    # OrderItems by AmazonOrderId (otherwise amazon_items(the id's last number)).
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # getOrderItems of these orders answers 400 InvalidInput this many times.
    refuse_items: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    tokens_issued: int = 0
    _uses: int = 0

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> Reply:
        if path == "/auth/o2/token":
            return self._token(body)
        operation, page = self._operation(path, query)
        self.calls.append((operation, query))
        injected = self.script.get((operation, page))
        if injected:
            return injected.pop(0)
        if not self._authorised(headers.get("x-amz-access-token", "")):
            return _json(
                403,
                {
                    "errors": [
                        {
                            "code": "Unauthorized",
                            "message": "Access to requested resource is denied.",
                            "details": "The access token you provided has expired.",
                        }
                    ]
                },
            )
        if operation == "getOrders":
            return self._orders(page, query.get("MarketplaceIds"))
        if operation == "getOrderItems":
            order_id = path.split("/")[4]
            if self.refuse_items.get(order_id):
                self.refuse_items[order_id] -= 1
                return _json(400, INVALID_INPUT)
            items = self.items.get(order_id) or amazon_items(int(order_id.rsplit("-", 1)[1]))
            return _json(200, {"payload": {"AmazonOrderId": order_id, "OrderItems": items}})
        return self._inventory(page)

    def _operation(self, path: str, query: dict[str, str]) -> tuple[str, int]:
        token = query.get("NextToken") or query.get("nextToken") or "page-1"
        page = int(token.removeprefix("page-"))
        if path == "/orders/v0/orders":
            return "getOrders", page
        if path.endswith("/orderItems"):
            return "getOrderItems", 1
        return "getInventorySummaries", page

    def _token(self, body: bytes) -> Reply:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != "Atzr|refresh":
            return _json(400, {"error": "invalid_grant", "error_description": "bad refresh token"})
        self.tokens_issued += 1
        self._uses = 0
        return _json(
            200,
            {
                "access_token": f"Atza|token-{self.tokens_issued}",
                "token_type": "bearer",
                "expires_in": 3600,
            },
        )

    def _authorised(self, token: str) -> bool:
        if token != f"Atza|token-{self.tokens_issued}":
            return False
        self._uses += 1
        return self.token_calls is None or self._uses <= self.token_calls

    def _orders(self, page: int, marketplace: str | None = None) -> Reply:
        orders = [o for o in self.orders if marketplace in (None, o.get("MarketplaceId"))]
        start = (page - 1) * self.page_size
        payload: dict[str, Any] = {"Orders": orders[start : start + self.page_size]}
        if start + self.page_size < len(orders):
            payload["NextToken"] = f"page-{page + 1}"
        payload["LastUpdatedBefore"] = "2026-11-21T00:00:00Z"
        return _json(200, {"payload": payload})

    def _inventory(self, page: int) -> Reply:
        start = (page - 1) * self.page_size
        body: dict[str, Any] = {
            "payload": {
                "granularity": {"granularityType": "Marketplace", "granularityId": "ATVPDKIKX0DER"},
                "inventorySummaries": self.inventory[start : start + self.page_size],
            }
        }
        if start + self.page_size < len(self.inventory):
            body["pagination"] = {"nextToken": f"page-{page + 1}"}
        return _json(200, body)


def mock_client(handle: Callable[..., Reply]) -> httpx.AsyncClient:
    def transport(request: httpx.Request) -> httpx.Response:
        query = {k: v for k, v in request.url.params.items()}
        status, headers, content = handle(
            request.method, request.url.path, query, request.headers, request.content
        )
        return httpx.Response(status, headers=headers, content=content)

    return httpx.AsyncClient(transport=httpx.MockTransport(transport), timeout=httpx.Timeout(5.0))


class Sleeps:
    """An asyncio.sleep stand-in that records what it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Recorder:
    """An event sink for receiver tests: records each hand-off; `fail` makes the next ones
    raise (Kafka down), `delay` makes them slow."""

    def __init__(self) -> None:
        self.batches: list[Sequence[Event]] = []
        self.fail = 0
        self.delay = 0.0

    async def __call__(self, events: Sequence[Event]) -> None:
        await asyncio.sleep(self.delay)
        if self.fail:
            self.fail -= 1
            raise RuntimeError("kafka down")
        self.batches.append(events)
