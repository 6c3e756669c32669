"""The Amazon SP-API connector on Amazon's own payloads (the sandbox and example responses of
ordersV0.json, copied into data/amazon_sp_models.json; FBA inventory in the model's shape),
served over HTTP by a local server and run through the same config path as `kpiwatch connect`:
what is judged is the KPIs `kpiwatch kpis` computes from the events that come out.

Amazon's sandbox orders are dated 1970, which the engine refuses as absurd, so each test dates
them in November 2026 and changes only the fields its case is about."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from unit.connectors.fakes import INVALID_INPUT, FakeAmazon, Sleeps, _json

from connectors.amazon_sp import (
    MARKETPLACE_BY_ID,
    MARKETPLACES,
    OFFICIAL_MARKETPLACES,
    AmazonInventorySource,
    AmazonOrdersSource,
    SpStore,
)
from connectors.base import SourceError, run_source
from connectors.building import Context
from connectors.checkpoint import MemoryCheckpoints
from rules.errors import ConfigError, InvalidEventError
from rules.load import RuleSet
from streams import cli
from streams.connect import load_section
from streams.embedded import Engine, reader
from streams.events import Event, OrderEvent
from streams.query import kpi_rows
from streams.reference import Reference

MODELS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "amazon_sp_models.json").read_text()
)
# getOrderItems TEST_CASE_200: one NABetaASINB00551Q3CS at ItemPrice 10.00 USD.
SANDBOX_ITEMS: list[dict[str, Any]] = MODELS["getOrderItems_TEST_CASE_200"]["payload"]["OrderItems"]
SKU = SANDBOX_ITEMS[0]["SellerSKU"]
ENV = {"TEST_LWA_SECRET": "lwa-secret", "TEST_SP_REFRESH": "Atzr|refresh"}


def sandbox_order(index: int, purchase: str, updated: str, **changes: Any) -> dict[str, Any]:
    """Order `index` of getOrders TEST_CASE_200, dated, with `changes`."""
    orders = MODELS["getOrders_TEST_CASE_200"]["payload"]["Orders"]
    order: dict[str, Any] = copy.deepcopy(orders[index % len(orders)])
    later = (datetime.fromisoformat(purchase) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for key in ("EarliestShipDate", "LatestShipDate", "EarliestDeliveryDate", "LatestDeliveryDate"):
        if key in order:
            order[key] = later
    order.update(PurchaseDate=purchase, LastUpdateDate=updated, **changes)
    return order


def cancelled_items() -> list[dict[str, Any]]:
    """The sandbox items as Amazon reports them once the order is Canceled: QuantityOrdered 0
    and no prices."""
    item = copy.deepcopy(SANDBOX_ITEMS[0])
    item["QuantityOrdered"] = 0
    for key in ("ItemPrice", "ItemTax", "PromotionDiscount"):
        item.pop(key)
    return [item]


@asynccontextmanager
async def serving(fake: FakeAmazon) -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.Response:
        status, headers, body = fake.handle(
            request.method, request.path, dict(request.query), request.headers, await request.read()
        )
        return web.Response(status=status, headers=headers, body=body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


STORE_US = (
    "    - {store_id: us-1, marketplace_id: ATVPDKIKX0DER, currency: USD,"
    " refresh_token: {env: TEST_SP_REFRESH}}\n"
)


def config(url: str, stores: str = STORE_US, feeds: str = "[orders]", extra: str = "") -> str:
    return (
        "amazon_sp:\n"
        "  client_id: amzn1.application-oa2-client.test\n"
        "  client_secret: {env: TEST_LWA_SECRET}\n"
        f"  endpoint: {url}\n"
        f"  token_url: {url}/auth/o2/token\n"
        "  start: 2026-11-01T00:00:00Z\n"
        f"  feeds: {feeds}\n"
        f"{extra}"
        "  stores:\n"
        f"{stores}"
    )


@dataclass
class Connector:
    """`kpiwatch connect amazon-sp --once` in-process: the config file loaded and built as the
    command does, each pass run to the end; events and dead-lettered records collected."""

    path: Path
    checkpoints: MemoryCheckpoints = field(default_factory=MemoryCheckpoints)
    events: list[Event] = field(default_factory=list)
    rejected: list[InvalidEventError] = field(default_factory=list)
    sleeps: Sleeps = field(default_factory=Sleeps)
    now: Callable[[], datetime] | None = None

    async def once(self) -> None:
        kind, section = load_section(self.path, "amazon-sp", ENV)
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as client:
            context = Context(client, self.checkpoints, self._sink, self._reject, self._sink)
            built = await kind.build(section, context)
            for source in built.sources:
                if isinstance(source, AmazonOrdersSource | AmazonInventorySource):
                    source.api.sleep = self.sleeps
                    if self.now is not None:
                        source.now = self.now
                await run_source(source, self._sink, self.checkpoints, on_rejected=self._reject)

    async def _sink(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    async def _reject(self, error: InvalidEventError) -> None:
        self.rejected.append(error)


def kpis(events: Sequence[Event], day: str, by: str = "store") -> dict[str, dict[str, Any]]:
    """What `kpiwatch kpis --by BY` shows for the local day `day` (the embedded engine on the
    events, every event counted): each scope's row, keyed by store (and sku)."""
    engine = Engine(RuleSet([]), Reference())
    engine.process_events(list(events))
    # 20:00 UTC is on `day` in every zone these stores keep (Los Angeles to Istanbul).
    at = datetime.fromisoformat(f"{day}T20:00:00+00:00")
    rows = kpi_rows(reader(engine.state, engine.reference), by, "1d", at)
    return {
        ":".join(row["scope"][k] for k in ("store", "sku") if k in row["scope"]): row
        for row in rows
    }


async def run(fake: FakeAmazon, tmp_path: Path, **options: Any) -> Connector:
    async with serving(fake) as url:
        path = tmp_path / "connect.yaml"
        path.write_text(config(url, **options))
        connector = Connector(path)
        await connector.once()
    return connector


# 1 ----------------------------------------------------------------------------------------


async def test_a_cancellation_with_zero_quantities_takes_the_sale_out_of_its_day(
    tmp_path: Path,
) -> None:
    placed = sandbox_order(0, "2026-11-20T18:00:00Z", "2026-11-20T18:05:00Z")
    order_id = placed["AmazonOrderId"]
    fake = FakeAmazon([placed], items={order_id: SANDBOX_ITEMS})
    async with serving(fake) as url:
        path = tmp_path / "connect.yaml"
        path.write_text(config(url))
        connector = Connector(path)
        await connector.once()
        before = kpis(connector.events, "2026-11-20")["us-1"]["values"]
        assert (before["orders"], before["gmv"]) == ("1", "10.00")

        # A day later the buyer cancels: Amazon answers QuantityOrdered 0 and no prices.
        fake.orders = [
            {**placed, "OrderStatus": "Canceled", "LastUpdateDate": "2026-11-21T09:00:00Z"}
        ]
        fake.items[order_id] = cancelled_items()
        await connector.once()

    assert connector.rejected == []
    cancel = connector.events[-1]
    assert isinstance(cancel, OrderEvent)
    assert (cancel.status, cancel.lines) == ("cancelled", [])
    day = kpis(connector.events, "2026-11-20")["us-1"]["values"]
    assert (day["orders"], day["gmv"], day["cancel_rate"]) == ("0", "0.00", "1.000000")
    # Nothing moved to the day of the cancellation.
    later = kpis(connector.events, "2026-11-21")["us-1"]["values"]
    assert (later["orders"], later["cancel_rate"]) == ("0", None)


# 2 ----------------------------------------------------------------------------------------


def summary(
    sku: str, available: int, inbound: int = 0, updated: str = "2026-11-20T08:00:00Z"
) -> dict[str, Any]:
    """An InventorySummary in fbaInventory.json's shape (its sandbox is dynamic: no example)."""
    return {
        "asin": "B00T9QONN6",
        "fnSku": "X0001",
        "sellerSku": sku,
        "condition": "NewItem",
        "inventoryDetails": {
            "fulfillableQuantity": available,
            "inboundWorkingQuantity": inbound,
            "inboundShippedQuantity": 0,
            "inboundReceivingQuantity": 0,
            "reservedQuantity": {"totalReservedQuantity": 0},
        },
        "lastUpdatedTime": updated,
        "productName": "Example",
        "totalQuantity": available + inbound,
    }


async def test_an_expired_inventory_token_restarts_the_window(tmp_path: Path) -> None:
    fake = FakeAmazon([], inventory=[summary(f"SKU-{n}", 10 + n) for n in range(5)])
    # The connector stopped after page 1; its saved token is 30 s old by the restart.
    fake.script[("getInventorySummaries", 2)] = [_json(400, INVALID_INPUT)]
    async with serving(fake) as url:
        path = tmp_path / "connect.yaml"
        path.write_text(config(url, feeds="[inventory]"))
        connector = Connector(path)
        saved = {"after": "2026-11-01T00:00:00Z", "before": "2026-11-20T09:00:00Z"}
        saved |= {"next_token": "page-2", "full": False, "full_at": "2026-11-20T00:00:00Z"}
        connector.checkpoints.cursors["amazon_sp:inventory:us-1"] = json.dumps(saved)
        await connector.once()

    pages = [q.get("nextToken") for op, q in fake.calls if op == "getInventorySummaries"]
    assert pages == ["page-2", None, "page-2", "page-3"]
    cursor = json.loads(connector.checkpoints.cursors["amazon_sp:inventory:us-1"])
    assert (cursor["after"], cursor["next_token"]) == ("2026-11-20T09:00:00Z", None)
    rows = kpis(connector.events, "2026-11-20", by="store,sku")
    assert {key: row["values"]["available"] for key, row in rows.items()} == {
        f"us-1:SKU-{n}": str(10 + n) for n in range(5)
    }


async def test_an_expired_orders_token_restarts_the_window(tmp_path: Path) -> None:
    orders = [
        sandbox_order(
            0,
            f"2026-11-20T1{n}:00:00Z",
            f"2026-11-20T1{n}:01:00Z",
            AmazonOrderId=f"902-1845936-000000{n}",
        )
        for n in range(5)
    ]
    fake = FakeAmazon(orders, items={o["AmazonOrderId"]: SANDBOX_ITEMS for o in orders})
    fake.script[("getOrders", 3)] = [_json(400, INVALID_INPUT)]
    async with serving(fake) as url:
        path = tmp_path / "connect.yaml"
        path.write_text(config(url))
        connector = Connector(path)
        saved = {
            "after": "2026-11-01T00:00:00Z",
            "before": "2026-11-21T00:00:00Z",
            "next_token": "page-3",
        }
        connector.checkpoints.cursors["amazon_sp:orders:us-1"] = json.dumps(saved)
        await connector.once()

    pages = [q.get("NextToken") for op, q in fake.calls if op == "getOrders"]
    assert pages == ["page-3", None, "page-2", "page-3"]
    assert kpis(connector.events, "2026-11-20")["us-1"]["values"]["orders"] == "5"


async def test_a_token_refused_every_time_fails_the_pass_instead_of_looping(
    tmp_path: Path,
) -> None:
    fake = FakeAmazon([], inventory=[summary(f"SKU-{n}", n) for n in range(5)])
    fake.script[("getInventorySummaries", 2)] = [_json(400, INVALID_INPUT)] * 10
    with pytest.raises(SourceError, match="HTTP 400: InvalidInput"):
        await run(fake, tmp_path, feeds="[inventory]")


# 3 ----------------------------------------------------------------------------------------


def test_the_whole_official_marketplace_list() -> None:
    assert len(OFFICIAL_MARKETPLACES) == len(MARKETPLACE_BY_ID) == 23
    regions = {m.country: m.region for m in OFFICIAL_MARKETPLACES}
    assert sorted(c for c, r in regions.items() if r == "NA") == ["BR", "CA", "MX", "US"]
    assert sorted(c for c, r in regions.items() if r == "FE") == ["AU", "JP", "SG"]
    for country in ("IE", "BE", "ZA", "EG", "TR", "SA"):
        assert regions[country] == "EU"
    currencies = {m.country: m.currency for m in OFFICIAL_MARKETPLACES}
    assert (currencies["ZA"], currencies["EG"], currencies["TR"], currencies["SA"]) == (
        "ZAR",
        "EGP",
        "TRY",
        "SAR",
    )
    assert MARKETPLACES["A1F83G8C2ARO7P"] == "GB"  # Amazon writes UK


NEW_EU = {
    "A28R8C7NBKEWEA": ("ie-1", "IE", "EUR", "Amazon.ie"),
    "AMEN7PMS3EDWL": ("be-1", "BE", "EUR", "Amazon.com.be"),
    "AE08WJ6YKNBMC": ("za-1", "ZA", "ZAR", "Amazon.co.za"),
    "ARBP9OOSHTCHU": ("eg-1", "EG", "EGP", "Amazon.eg"),
    "A33AVAJ2PDY3EV": ("tr-1", "TR", "TRY", "Amazon.com.tr"),
    "A17E79C6D8DWNP": ("sa-1", "SA", "SAR", "Amazon.sa"),
}


async def test_orders_and_stock_of_the_newer_marketplaces_are_counted(tmp_path: Path) -> None:
    stores = "".join(
        f"    - {{store_id: {store}, marketplace_id: {mid}, currency: {currency}, "
        "refresh_token: {env: TEST_SP_REFRESH}}\n"
        for mid, (store, _, currency, _) in NEW_EU.items()
    )
    fake = FakeAmazon([], inventory=[summary("STOCK-1", 7)])
    for number, (mid, (_, _, currency, channel)) in enumerate(NEW_EU.items()):
        order_id = f"902-1845936-100000{number}"
        total = {"CurrencyCode": currency, "Amount": "100.00"}
        fake.orders.append(
            sandbox_order(
                0,
                "2026-11-20T10:00:00Z",
                "2026-11-20T10:05:00Z",
                AmazonOrderId=order_id,
                MarketplaceId=mid,
                SalesChannel=channel,
                OrderTotal=total,
            )
        )
        fake.items[order_id] = [{**SANDBOX_ITEMS[0], "ItemPrice": total, "ItemTax": total}]
    connector = await run(fake, tmp_path, stores=stores, feeds="[orders, inventory]")

    assert connector.rejected == []
    by_store = kpis(connector.events, "2026-11-20")
    assert set(by_store) == {store for store, *_ in NEW_EU.values()}
    for store, country, currency, _ in NEW_EU.values():
        row = by_store[store]
        assert (row["scope"]["marketplace"], row["values"]["orders"]) == (country, "1")
        assert (row["native_currency"], row["native"]["gmv"]) == (currency, "100.00")
    stock = kpis(connector.events, "2026-11-20", by="store,sku")
    available = {k: row["values"]["available"] for k, row in stock.items() if "STOCK" in k}
    assert available == {f"{store}:STOCK-1": "7" for store, *_ in NEW_EU.values()}


# 4 ----------------------------------------------------------------------------------------


async def test_an_order_first_seen_shipped_counts_on_its_purchase_day(tmp_path: Path) -> None:
    # Bought at 23:30 in Los Angeles on the 19th, shipped and first read on the 21st.
    order = sandbox_order(0, "2026-11-20T07:30:00Z", "2026-11-21T18:00:00Z", OrderStatus="Shipped")
    fake = FakeAmazon([order], items={order["AmazonOrderId"]: SANDBOX_ITEMS})
    connector = await run(fake, tmp_path)

    [event] = connector.events
    assert isinstance(event, OrderEvent)
    # Versioned by its last update, as before; counted where it was bought.
    assert event.event_id == f"amazon:{order['AmazonOrderId']}:2026-11-21T18:00:00Z"
    assert event.occurred_at == datetime(2026, 11, 21, 18, tzinfo=UTC)
    day = kpis(connector.events, "2026-11-19")["us-1"]["values"]
    assert (day["orders"], day["gmv"]) == ("1", "10.00")
    later = kpis(connector.events, "2026-11-21")["us-1"]["values"]
    assert (later["orders"], later["gmv"]) == ("0", "0.00")


async def test_a_later_status_keeps_the_purchase_day_and_wins(tmp_path: Path) -> None:
    # Bought late on the 19th in Los Angeles, paid for (Unshipped) on the 20th.
    unshipped = sandbox_order(0, "2026-11-20T07:30:00Z", "2026-11-20T16:00:00Z")
    shipped = {**unshipped, "OrderStatus": "Shipped", "LastUpdateDate": "2026-11-21T18:00:00Z"}
    fake = FakeAmazon([unshipped, shipped], items={unshipped["AmazonOrderId"]: SANDBOX_ITEMS})
    connector = await run(fake, tmp_path)

    # Delivered in reverse, the newer status still wins and the day stays the 19th.
    events = list(reversed(connector.events))
    assert [e.status for e in events if isinstance(e, OrderEvent)] == ["shipped", "placed"]
    day = kpis(events, "2026-11-19")["us-1"]["values"]
    assert (day["orders"], day["gmv"]) == ("1", "10.00")
    assert kpis(events, "2026-11-20")["us-1"]["values"]["orders"] == "0"


# 5 ----------------------------------------------------------------------------------------


async def test_multichannel_and_replacement_orders_are_not_marketplace_sales(
    tmp_path: Path,
) -> None:
    sale = sandbox_order(0, "2026-11-20T18:00:00Z", "2026-11-20T18:05:00Z")
    mcf = sandbox_order(
        1, "2026-11-20T18:10:00Z", "2026-11-20T18:15:00Z", SalesChannel="Non-Amazon"
    )
    replacement = sandbox_order(
        0,
        "2026-11-20T19:00:00Z",
        "2026-11-20T19:05:00Z",
        AmazonOrderId="902-1845936-9999999",
        IsReplacementOrder=True,
        ReplacedOrderId=sale["AmazonOrderId"],
        OrderTotal={"CurrencyCode": "USD", "Amount": "0.00"},
    )
    free = [{**SANDBOX_ITEMS[0], "ItemPrice": {"CurrencyCode": "USD", "Amount": "0.00"}}]
    items = {
        sale["AmazonOrderId"]: SANDBOX_ITEMS,
        mcf["AmazonOrderId"]: SANDBOX_ITEMS,
        replacement["AmazonOrderId"]: free,
    }
    fake = FakeAmazon([sale, mcf, replacement], items=items)
    connector = await run(fake, tmp_path)

    assert [e.order_id for e in connector.events if isinstance(e, OrderEvent)] == [
        sale["AmazonOrderId"]
    ]
    # Their items are not even asked for (getOrderItems has a small quota).
    asked = [op for op, _ in fake.calls if op == "getOrderItems"]
    assert len(asked) == 1
    day = kpis(connector.events, "2026-11-20")["us-1"]["values"]
    assert (day["orders"], day["units"], day["gmv"], day["aov"]) == ("1", "1", "10.00", "10.00")


# 6 ----------------------------------------------------------------------------------------


async def test_an_order_whose_items_are_refused_is_dead_lettered_and_the_feed_goes_on(
    tmp_path: Path,
) -> None:
    orders = [
        sandbox_order(
            0,
            f"2026-11-20T1{n}:00:00Z",
            f"2026-11-20T1{n}:01:00Z",
            AmazonOrderId=f"902-1845936-000000{n}",
        )
        for n in range(5)
    ]
    bad = orders[1]["AmazonOrderId"]
    fake = FakeAmazon(orders, items={o["AmazonOrderId"]: SANDBOX_ITEMS for o in orders})
    fake.refuse_items[bad] = 100  # getOrderItems TEST_CASE_400, every time
    connector = await run(fake, tmp_path)

    [dead] = connector.rejected
    assert (
        dead.source
        == f"amazon_sp:orders:us-1 getOrders page 1 (after 2026-11-01T00:00:00Z) order 1 ({bad})"
    )
    assert dead.reason == "getOrderItems refused 3 times: HTTP 400: InvalidInput: Invalid Input"
    assert sum(1 for op, q in fake.calls if op == "getOrderItems") == 4 + 3
    assert len(connector.sleeps.waits) == 2  # backed off between the attempts
    # The window is done: the next pass starts after it, not behind the bad order.
    cursor = json.loads(connector.checkpoints.cursors["amazon_sp:orders:us-1"])
    assert (cursor["next_token"], cursor["before"]) == (None, None)
    day = kpis(connector.events, "2026-11-20")["us-1"]["values"]
    assert (day["orders"], day["gmv"]) == ("4", "40.00")


async def test_an_order_refused_once_is_read_on_the_next_attempt(tmp_path: Path) -> None:
    order = sandbox_order(0, "2026-11-20T18:00:00Z", "2026-11-20T18:05:00Z")
    fake = FakeAmazon([order], items={order["AmazonOrderId"]: SANDBOX_ITEMS})
    fake.refuse_items[order["AmazonOrderId"]] = 2
    connector = await run(fake, tmp_path)
    assert (len(connector.events), connector.rejected) == (1, [])


async def test_a_refused_token_is_not_a_bad_order(tmp_path: Path) -> None:
    """403 (the seller's authorisation) fails the pass: dead-lettering every order would
    lose the feed."""
    order = sandbox_order(0, "2026-11-20T18:00:00Z", "2026-11-20T18:05:00Z")
    denied = {
        "errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied."}]
    }
    fake = FakeAmazon([order], script={("getOrderItems", 1): [_json(403, denied)] * 3})
    with pytest.raises(SourceError, match="HTTP 403"):
        await run(fake, tmp_path)


# 7 ----------------------------------------------------------------------------------------


def section(endpoint: str, marketplace_id: str, currency: str = "") -> str:
    """A section in block style, so each key has its own line (endpoint on 4, the store's
    marketplace_id on 9, its currency on 10)."""
    return (
        "amazon_sp:\n"
        "  client_id: amzn1.application-oa2-client.test\n"
        "  client_secret: {env: TEST_LWA_SECRET}\n"
        f"  endpoint: {endpoint}\n"
        "  start: 2026-11-01T00:00:00Z\n"
        "  feeds: [orders]\n"
        "  stores:\n"
        "    - store_id: store-1\n"
        f"      marketplace_id: {marketplace_id}\n"
        + (f"      currency: {currency}\n" if currency else "")
        + "      refresh_token: {env: TEST_SP_REFRESH}\n"
    )


NA, EU, FE = (f"https://sellingpartnerapi-{r}.amazon.com" for r in ("na", "eu", "fe"))
BAD_CONFIGS = [
    (
        section(NA, "ATVPDKIKX0DEX"),
        "9: marketplace_id: 'ATVPDKIKX0DEX' is not on Amazon's marketplace id list "
        "(developer-docs.amazon.com/sp-api/docs/marketplace-ids), e.g. ATVPDKIKX0DER for the "
        "US, A1PA6795UKMFR9 for Germany",
    ),
    (
        section(NA, "A1PA6795UKMFR9"),
        f"4: endpoint: {NA} is the NA endpoint, but store store-1's marketplace A1PA6795UKMFR9 "
        f"(Amazon DE) is served by EU: {EU}",
    ),
    (
        section("sellingpartnerapi-eu.amazon.com", "A1PA6795UKMFR9"),
        "4: endpoint: 'sellingpartnerapi-eu.amazon.com' is not a URL: write it with its "
        f"scheme, e.g. {EU}",
    ),
    (
        section(NA, "ATVPDKIKX0DER", "usd"),
        "10: currency: write currency codes in capitals: 'USD', not 'usd'",
    ),
    (
        section(FE, "A1VC38T7YXB528", "USD"),
        "10: currency: Amazon JP (A1VC38T7YXB528) sells in JPY, not USD",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_config_mistakes_are_refused_with_file_line_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "connect.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_section(path, "amazon-sp", ENV)
    assert [str(p) for p in caught.value.problems] == [f"{path}:{message}"]


@pytest.mark.parametrize("endpoint", [EU, "https://sandbox.sellingpartnerapi-eu.amazon.com"])
def test_the_right_region_is_accepted(tmp_path: Path, endpoint: str) -> None:
    path = tmp_path / "connect.yaml"
    path.write_text(section(endpoint, "A28R8C7NBKEWEA"))
    _, loaded = load_section(path, "amazon-sp", ENV)
    assert loaded.endpoint == endpoint  # type: ignore[attr-defined]


def test_a_missing_secret_is_a_problem_of_the_connector_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_LWA_SECRET", raising=False)
    monkeypatch.setenv("TEST_SP_REFRESH", "Atzr|refresh")
    path = tmp_path / "connect.yaml"
    path.write_text(config("https://sellingpartnerapi-na.amazon.com"))
    code = cli.main(["connect", "amazon-sp", "--config", str(path), "--once"])
    err = capsys.readouterr().err
    assert code == 2
    assert "rules" not in err
    assert err.splitlines() == [
        f"kpiwatch connect: 1 problem(s) in {path}:",
        f"  {path}:3: amazon_sp.client_secret: environment variable TEST_LWA_SECRET is not set "
        "or empty",
    ]


def test_the_region_endpoint_and_currency_come_from_the_marketplace() -> None:
    store = SpStore(store_id="tr-1", marketplace_id="A33AVAJ2PDY3EV")
    assert (store.marketplace, store.currency, store.info.region) == ("TR", "TRY", "EU")


# 8 ----------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_full_inventory_passes_on_start_and_daily(tmp_path: Path) -> None:
    # Two SKUs unchanged since long before `start`, one of them with stock coming in.
    fake = FakeAmazon(
        [],
        inventory=[
            summary("OLD-1", 5, 0, "2026-10-01T00:00:00Z"),
            summary("OLD-2", 0, 0, "2026-10-01T00:00:00Z"),
        ],
    )
    clock = Clock(datetime(2026, 11, 20, 9, tzinfo=UTC))
    async with serving(fake) as url:
        path = tmp_path / "connect.yaml"
        path.write_text(config(url, feeds="[inventory]"))
        connector = Connector(path, now=clock)
        await connector.once()  # on start: full
        first = kpis(connector.events, "2026-11-20", by="store,sku")
        assert {k: r["values"]["available"] for k, r in first.items()} == {
            "us-1:OLD-1": "5",
            "us-1:OLD-2": "0",
        }

        # An inbound-only change: Amazon's startDateTime does not report it.
        fake.inventory[1] = summary("OLD-2", 0, 40, "2026-10-01T00:00:00Z")
        clock.now += timedelta(hours=1)
        connector.now = clock
        passes = len(fake.calls)
        # A later pass of the same process: only what changed.
        kind, section = load_section(path, "amazon-sp", ENV)
        async with httpx.AsyncClient(timeout=5.0) as client:
            context = Context(
                client, connector.checkpoints, connector._sink, connector._reject, connector._sink
            )
            [source] = (await kind.build(section, context)).sources
            assert isinstance(source, AmazonInventorySource)
            source.now = clock
            source.full_on_start = True
            await run_source(source, connector._sink, connector.checkpoints)
            incremental = fake.calls[passes:]
            assert all("startDateTime" not in q for _, q in incremental)  # its first: full
            passes = len(fake.calls)
            clock.now += timedelta(hours=1)
            await run_source(source, connector._sink, connector.checkpoints)
            assert all(q["startDateTime"] == "2026-11-20T10:00:00Z" for _, q in fake.calls[passes:])
            # A day after the last full pass: full again.
            passes = len(fake.calls)
            clock.now += timedelta(days=1)
            await run_source(source, connector._sink, connector.checkpoints)
            assert all("startDateTime" not in q for _, q in fake.calls[passes:])

    rows = kpis(connector.events, "2026-11-21", by="store,sku")
    assert rows["us-1:OLD-2"]["values"]["inbound"] == "40"
