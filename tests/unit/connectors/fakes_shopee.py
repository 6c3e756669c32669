"""A fake Shopee Open Platform v2 for the stock source and the push receiver: the token
endpoint (rotating refresh tokens), signature checks, and get_item_list / get_item_base_info /
get_model_list / get_order_detail answering in the documented shapes."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr
from unit.connectors.fakes import Reply, _json

from connectors.shopee import sign

TOKEN_PATH = "/api/v2/auth/access_token/get"


def envelope(response: dict[str, Any]) -> dict[str, Any]:
    return {"error": "", "message": "", "warning": "", "request_id": "r", "response": response}


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": code, "message": message, "request_id": "r"}


def stock_info(seller: int | None, shopee: int | None = None, reserved: int = 0) -> dict[str, Any]:
    """stock_info_v2 as get_item_base_info / get_model_list give it (shopee_stock's stock is a
    string in get_model_list's model, an int in get_item_base_info: we send a string)."""
    info: dict[str, Any] = {
        "summary_info": {
            "total_reserved_stock": reserved,
            "total_available_stock": (seller or 0) + (shopee or 0),
        }
    }
    if seller is not None:
        info["seller_stock"] = [{"location_id": "MYZ", "stock": seller, "if_saleable": True}]
    if shopee is not None:
        info["shopee_stock"] = [{"location_id": "MYG", "stock": str(shopee)}]
    return info


def plain_item(item_id: int, stock: int, update: int = 1763700000) -> dict[str, Any]:
    """get_item_base_info's item without models."""
    return {
        "item_id": item_id,
        "item_sku": f"SKU-{item_id}",
        "item_status": "NORMAL",
        "update_time": update,
        "has_model": False,
        "stock_info_v2": stock_info(stock),
    }


def model(model_id: int, seller: int, shopee: int | None = None, sku: str = "") -> dict[str, Any]:
    return {
        "model_id": model_id,
        "model_sku": sku,
        "model_status": "MODEL_NORMAL",
        "stock_info_v2": stock_info(seller, shopee),
    }


@dataclass
class FakeShopee:
    """One shop. `script` injects replies per API path (429s, broken bodies) before the real
    answer; `expire_after` makes the current access token fail after that many calls."""

    key: SecretStr
    items: list[dict[str, Any]] = field(default_factory=list)
    models: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)
    script: dict[str, list[Reply]] = field(default_factory=dict)
    expire_after: int | None = None
    # get_item_list offsets whose next answer is a truncated body (once each).
    broken_offsets: set[str] = field(default_factory=set)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    refresh_tokens: list[str] = field(default_factory=lambda: ["refresh-0"])
    tokens: int = 0
    _uses: int = 0

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> Reply:
        if path == TOKEN_PATH:
            return self._refresh(query, json.loads(body))
        self.calls.append((path, query))
        injected = self.script.get(path)
        if injected:
            return injected.pop(0)
        refused = self._refused(path, query)
        if refused is not None:
            return refused
        return self._answer(path, query)

    def _refused(self, path: str, query: dict[str, str]) -> Reply | None:
        expected = sign(
            self.key,
            query["partner_id"],
            path,
            query["timestamp"],
            query["access_token"],
            query["shop_id"],
        )
        if query["sign"] != expected:
            return _json(403, error("error_sign", "Wrong sign."))
        self._uses += 1
        expired = self.expire_after is not None and self._uses > self.expire_after
        if query["access_token"] != f"access-{self.tokens}" or expired:
            self.expire_after = None
            return _json(403, error("invalid_acceess_token", "Invalid access_token."))
        return None

    def _answer(self, path: str, query: dict[str, str]) -> Reply:
        if path == "/api/v2/product/get_item_list":
            return self._list(query)
        if path == "/api/v2/product/get_item_base_info":
            ids = [int(i) for i in query["item_id_list"].split(",")]
            if len(ids) > 50:
                return _json(400, error("error_param", "item_id_list should be 1 to 50"))
            found = [copy.deepcopy(i) for i in self.items if i.get("item_id") in ids]
            return _json(200, envelope({"item_list": found}))
        if path == "/api/v2/product/get_model_list":
            item_id = int(query["item_id"])
            if item_id not in self.models:
                return _json(200, error("error_item_not_found", "Item not found."))
            return _json(200, envelope({"tier_variation": [], "model": self.models[item_id]}))
        if path == "/api/v2/order/get_order_detail":
            wanted = query["order_sn_list"].split(",")
            found = [o for o in self.orders if o["order_sn"] in wanted]
            return _json(200, envelope({"order_list": found}))
        return _json(404, error("error_not_found", "Wrong path."))

    def _list(self, query: dict[str, str]) -> Reply:
        if query["offset"] in self.broken_offsets:
            self.broken_offsets.discard(query["offset"])
            return 200, {"content-type": "application/json"}, b'{"error": "", "respo'
        if query.get("item_status") != "NORMAL":
            return _json(400, error("error_param", "item_status is required"))
        offset, size = int(query["offset"]), int(query["page_size"])
        if not 1 <= size <= 100:
            return _json(400, error("error_param", "page_size should be 1 to 100"))
        page = self.items[offset : offset + size]
        more = offset + size < len(self.items)
        listed = [
            {"item_id": i.get("item_id"), "item_status": "NORMAL", "update_time": 1763700000}
            for i in page
        ]
        response = {
            "item": listed,
            "total_count": len(self.items),
            "has_next_page": more,
            "next_offset": offset + size if more else 0,
        }
        return _json(200, envelope(response))

    def _refresh(self, query: dict[str, str], body: dict[str, Any]) -> Reply:
        expected = sign(self.key, query["partner_id"], TOKEN_PATH, query["timestamp"])
        if query["sign"] != expected:
            return _json(403, error("error_sign", "Wrong sign."))
        if body["refresh_token"] != self.refresh_tokens[-1]:
            return _json(403, error("error_auth", "Invalid refresh_token."))
        self.tokens += 1
        self._uses = 0
        self.refresh_tokens.append(f"refresh-{self.tokens}")
        return _json(
            200,
            {
                "access_token": f"access-{self.tokens}",
                "refresh_token": self.refresh_tokens[-1],
                "expire_in": 14400,
                "error": "",
                "message": "",
            },
        )
