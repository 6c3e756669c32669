"""A fake TikTok Shop Open API (202309) and auth host answering in the documented shapes.

It checks every request the way TikTok says it does, with its own copy of the documented
recipe (not the connector's code): the `sign` query parameter, a 10-digit timestamp within
5 minutes, the access token in `x-tts-access-token` (never in the query). Orders page by
`page_token`; tokens expire on demand; `script` injects replies (429s, broken pages).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from unit.connectors.fakes import Reply, _json

APP_KEY = "6abc12def3ghi"
APP_SECRET = "tts-app-secret-5f1e"
SHOP_CIPHER = "ROW_fake-cipher"
SHOP_ID = "7494049642642441621"
WEEK = 7 * 86400


def documented_sign(path: str, query: dict[str, str], body: bytes) -> str:
    """Sign your API request, steps 1-6, written out from the docs."""
    keys = sorted(k for k in query if k not in ("sign", "access_token"))
    base = path + "".join(f"{k}{query[k]}" for k in keys) + body.decode()
    wrapped = APP_SECRET + base + APP_SECRET
    return hmac.new(APP_SECRET.encode(), wrapped.encode(), hashlib.sha256).hexdigest()


def envelope(data: Any, code: int = 0, message: str = "Success", status: int = 200) -> Reply:
    body = {"code": code, "message": message, "request_id": "2026112010000001", "data": data}
    return _json(status, body)


def line_item(number: int, sku: str, price: str = "12.50", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"li-{number}",
        "sku_id": f"17293{number:05d}",
        "seller_sku": sku,
        "product_id": "1729000000",
        "sale_price": price,
        "original_price": "15.00",
        "currency": "USD",
        "display_status": "AWAITING_SHIPMENT",
        **extra,
    }


def tiktok_order(
    number: int, update_time: int, status: str = "AWAITING_SHIPMENT"
) -> dict[str, Any]:
    return {
        "id": f"5764{number:014d}",
        "status": status,
        "create_time": update_time - 600,
        "update_time": update_time,
        "fulfillment_type": "FULFILLMENT_BY_SELLER",
        "rts_sla_time": update_time + 2 * 86400,
        "is_sample_order": False,
        "payment": {"currency": "USD", "total_amount": "37.50"},
        # One line item per unit, as 202309 sends them: 2 x SKU-A and 1 x SKU-B.
        "line_items": [
            line_item(1, "SKU-A"),
            line_item(2, "SKU-A"),
            line_item(3, "SKU-B", "12.50"),
        ],
    }


@dataclass
class FakeTikTok:
    orders: list[dict[str, Any]]
    now: int
    page_size: int = 2
    inventory: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # The current access token stops working after this many API calls (None: never).
    expire_after: int | None = None
    script: dict[str, list[Reply]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    refresh_tokens: list[str] = field(default_factory=lambda: ["refresh-0"])
    tokens_issued: int = 0
    _uses: int = 0

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> Reply:
        if path == "/api/v2/token/refresh":
            return self._refresh(method, query)
        payload = json.loads(body) if body else None
        self.calls.append((path, query, payload))
        if self.script.get(path):
            return self.script[path].pop(0)
        problem = self._check(path, query, headers, body)
        if problem is not None:
            return problem
        return self._route(method, path, query, payload)

    def _check(self, path: str, query: dict[str, str], headers: Any, body: bytes) -> Reply | None:
        if "access_token" in query or query.get("app_key") != APP_KEY:
            return envelope(None, 36009004, "Invalid credentials.", 400)
        if query.get("shop_cipher") != SHOP_CIPHER:
            return envelope(None, 106013, "shop_cipher is invalid", 400)
        stamp = query.get("timestamp", "")
        if len(stamp) != 10 or abs(int(stamp) - self.now) > 300:
            return envelope(None, 106002, "Timestamp is invalid", 401)
        if query.get("sign") != documented_sign(path, query, body):
            return envelope(None, 106001, "Invalid signature", 401)
        self._uses += 1
        token = headers.get("x-tts-access-token")
        if token != f"access-{self.tokens_issued}" or (
            self.expire_after is not None and self._uses > self.expire_after
        ):
            self.expire_after = None
            return envelope(None, 105002, "Access token is expired", 401)
        return None

    def _refresh(self, method: str, query: dict[str, str]) -> Reply:
        if method != "GET" or query.get("grant_type") != "refresh_token":
            return envelope(None, 36004003, "grant_type is invalid", 400)
        if query.get("app_key") != APP_KEY or query.get("app_secret") != APP_SECRET:
            return envelope(None, 36004004, "app_secret is invalid", 400)
        if query.get("refresh_token") != self.refresh_tokens[-1]:
            return envelope(None, 36004005, "refresh_token is invalid", 400)
        self.tokens_issued += 1
        self._uses = 0
        self.refresh_tokens.append(f"refresh-{self.tokens_issued}")
        data = {
            "access_token": f"access-{self.tokens_issued}",
            # Absolute Unix timestamps, as documented, not durations.
            "access_token_expire_in": self.now + WEEK,
            "refresh_token": self.refresh_tokens[-1],
            "refresh_token_expire_in": self.now + 52 * WEEK,
            "open_id": "7010736057180325637",
            "seller_name": "Fake shop",
            "seller_base_region": "US",
            "user_type": 0,
        }
        return envelope(data)

    def _route(self, method: str, path: str, query: dict[str, str], payload: Any) -> Reply:
        if (method, path) == ("POST", "/order/202309/orders/search"):
            return self._search(query, payload)
        if (method, path) == ("GET", "/order/202309/orders"):
            wanted = query["ids"].split(",")
            return envelope({"orders": [o for o in self.orders if o["id"] in wanted]})
        if (method, path) == ("POST", "/product/202309/inventory/search"):
            ids = payload["product_ids"]
            products = [{"product_id": p, "skus": self.inventory[p]} for p in ids]
            return envelope({"inventory": products})
        return envelope(None, 36009009, "Invalid path", 404)

    def _search(self, query: dict[str, str], payload: dict[str, Any]) -> Reply:
        low, high = payload["update_time_ge"], payload["update_time_lt"]
        hits = sorted(
            (o for o in self.orders if low <= o["update_time"] < high),
            key=lambda o: o["update_time"],
        )
        offset = int(query.get("page_token", "offset-0").removeprefix("offset-"))
        size = min(int(query["page_size"]), self.page_size)
        more = offset + size < len(hits)
        data = {
            "orders": hits[offset : offset + size],
            "next_page_token": f"offset-{offset + size}" if more else "",
            "total_count": len(hits),
        }
        return envelope(data)
