"""The Grafana dashboard proven: Debian's real Prometheus, with deploy/prometheus's config,
scrapes a real worker and a real `kpiwatch connect` fed by the simulator, and every panel query
of deploy/grafana/dashboards/kpiwatch.json (variables set to real values from the data) is valid
and returns data. The JSON is also checked against Grafana's dashboard types (the foundation
SDK's models, generated from Grafana's schema) and against the generator that writes it."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard
from integration.support import (
    REPO,
    SERVICES,
    Services,
    ShopifyReceiver,
    Webhook,
    WorkerFactory,
    free_port,
)
from ruamel.yaml import YAML

from connectors.kafka import EventProducer
from connectors.simulator import simulate
from streams.events import pack

pytestmark = pytest.mark.integration

GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "kpiwatch.json"
# The simulator's 6th store is the Shopify one; the connector's webhook shop is mapped to it, so
# that one store has KPIs, ads, stock, a target and a connector feed.
STORES, STORE, TEAM = 6, "shopify-us-06", "growth"
# What Grafana puts in place of its interval variables (a 1 s scrape here, 15 s in production).
INTERVALS = {"$__rate_interval": "1m", "$__range": "1h"}
QUERY_DEADLINE_S = 75.0
LIVE_HOURS, LIVE_SECONDS = 4, 120


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kpiwatch_dashboard", GRAFANA / "dashboard.py")
    if spec is None or spec.loader is None:
        raise ImportError("deploy/grafana/dashboard.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


# --- The JSON itself --------------------------------------------------------------------------


def test_the_json_is_the_generators_output() -> None:
    assert generator().render() == DASHBOARD.read_text(encoding="utf-8"), (
        "deploy/grafana/dashboards/kpiwatch.json is stale: run deploy/grafana/dashboard.py"
    )


def differences(want: Any, got: Any, path: str = "") -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        found = [f"{path}/{key}: not in Grafana's types" for key in want.keys() - got.keys()]
        for key in want.keys() & got.keys():
            found += differences(want[key], got[key], f"{path}/{key}")
        return found
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [
            d
            for i, (w, g) in enumerate(zip(want, got, strict=True))
            for d in differences(w, g, f"{path}[{i}]")
        ]
    return [] if want == got else [f"{path}: {want!r} reads back as {got!r}"]


def test_the_json_reads_back_through_grafanas_dashboard_types() -> None:
    """Grafana's dashboard, panel, query, variable and panel-plugin option models (generated
    from its schema) read every key we wrote: a misspelled or unknown key, or an option of the
    wrong panel type, would be dropped and show up as a difference."""
    register_default_plugins()
    data = load_dashboard()
    back = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    assert differences(data, back) == []


def test_the_layout_and_references_hold() -> None:
    data = load_dashboard()
    panels = data["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        pos = p["gridPos"]
        assert pos["x"] >= 0, p["title"]
        assert pos["x"] + pos["w"] <= 24, p["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
    names = {v["name"] for v in data["templating"]["list"]}
    assert names == {"datasource", "store", "marketplace", "team"}
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == ["Pipeline", "Alerts", "Connectors", "KPIs"]
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in p["targets"]]
        assert refs, p["title"]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            used = set(re.findall(r"\$(\w+)", t["expr"])) - {"__rate_interval", "__range"}
            assert used <= names, f"{p['title']}: unknown variable in {t['expr']}"


def test_provisioning_loads_this_dashboard_from_this_data_source() -> None:
    yaml = YAML(typ="safe")
    sources = yaml.load(GRAFANA / "provisioning" / "datasources" / "prometheus.yaml")
    [source] = sources["datasources"]
    [provider] = yaml.load(GRAFANA / "provisioning" / "dashboards" / "kpiwatch.yaml")["providers"]
    assert sources["apiVersion"] == provider.get("apiVersion", 1) == 1
    assert (source["type"], source["uid"]) == ("prometheus", "prometheus")
    [chooser] = [v for v in load_dashboard()["templating"]["list"] if v["name"] == "datasource"]
    assert chooser["current"]["value"] == source["uid"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/kpiwatch"


# --- Every query on a real Prometheus ---------------------------------------------------------


@dataclass
class OwnPrometheus:
    url: str
    targets: Path


def services_sh_in(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        ["bash", str(SERVICES), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, **env},
    )
    if result.returncode != 0:
        raise RuntimeError(f"services.sh {' '.join(args)}:\n{result.stdout}{result.stderr}")
    return result.stdout


@pytest.fixture
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnPrometheus]:
    """Debian's Prometheus with deploy/prometheus/prometheus.yml, in a folder and on a port of
    this test's own (deploy/services.sh), stopped at the end."""
    root = tmp_path_factory.mktemp("prometheus")
    env = {"KPIWATCH_SERVICES_DIR": str(root), "KPIWATCH_PROMETHEUS_PORT": str(free_port())}
    services_sh_in(env, "start", "prometheus")
    try:
        found = dict(
            line.removeprefix("export ").split("=", 1)
            for line in services_sh_in(env, "env", "prometheus").splitlines()
        )
        yield OwnPrometheus(
            found["KPIWATCH_PROMETHEUS_URL"], Path(found["KPIWATCH_PROMETHEUS_TARGETS"])
        )
    finally:
        services_sh_in(env, "stop", "prometheus")


def reference_files(folder: Path, now: datetime) -> dict[str, str]:
    months = sorted({(now - timedelta(days=d)).strftime("%Y-%m") for d in (0, 3)})
    files = {
        "teams": "platform,marketplace,store,team\n"
        f"shopify,US,{STORE},{TEAM}\namazon,US,amazon-us-01,advertising\n",
        "targets": "month,level,platform,marketplace,store,team,amount,currency\n"
        + "".join(f"{m},store,shopify,US,{STORE},,60000,USD\n" for m in months),
        "fx": "date,currency,rate\n"
        + "".join(
            f"{(now - timedelta(days=10)).date()},{c},{r}\n"
            for c, r in (("JPY", "0.0067"), ("MYR", "0.21"), ("SGD", "0.74"))
        ),
    }
    env = {}
    for name, text in files.items():
        path = folder / f"{name}.csv"
        path.write_text(text)
        env[f"KPIWATCH_{name.upper()}_FILE"] = str(path)
    return env


def shopify_order(number: int, at: datetime, currency: str = "USD") -> bytes:
    stamp = at.isoformat()
    order = {
        "id": 9_100_000 + number,
        "name": f"#{number}",
        "created_at": stamp,
        "updated_at": stamp,
        "currency": currency,
        "financial_status": "paid",
        "fulfillment_status": None,
        "cancelled_at": None,
        "test": False,
        "line_items": [
            {"id": number, "variant_id": 1, "sku": "SKU-500", "quantity": 1, "price": "39.99"}
        ],
    }
    return json.dumps(order).encode()


@pytest.fixture
def connect(services: Services, prefix: str, tmp_path: Path) -> Iterator[ShopifyReceiver]:
    """`kpiwatch connect shopify` receiving webhooks for the store STORE."""
    receiver = ShopifyReceiver.start(
        services, prefix, tmp_path, store_id=STORE, shop="dash.myshopify.com"
    )
    try:
        yield receiver
    finally:
        receiver.stop()


async def post_webhook(client: httpx.AsyncClient, receiver: ShopifyReceiver, body: bytes) -> None:
    response = await receiver.post_when_up(client, body, uuid.uuid4().hex, timeout=30.0)
    response.raise_for_status()


async def produce(services: Services, prefix: str, now: datetime, live: asyncio.Event) -> None:
    """Two days of six simulated stores up to `now`, packed as `kpiwatch produce` sends them:
    the history at once, then the last LIVE_HOURS (with incidents) as live traffic over about
    LIVE_SECONDS, until `live` is set: rates and latencies need events and alert transitions
    in their window when they are read."""
    start = (now - timedelta(hours=48)).replace(minute=0, second=0, microsecond=0)
    live_from = now - timedelta(hours=LIVE_HOURS)
    events = [
        e
        for e in simulate(
            start,
            hours=48,
            stores=STORES,
            seed=11,
            incident_rate=8.0,
            incident_window=(live_from, now),
        )
        if e.occurred_at <= now
    ]
    cut = next(i for i, e in enumerate(events) if e.occurred_at > live_from)
    async with EventProducer(services.kafka_bootstrap, prefix) as producer:
        for group in pack(events[:cut]):
            await producer.send_message(group)
        await producer.flush()
        rest = list(pack(events[cut:]))
        step = max(1, len(rest) // LIVE_SECONDS)
        while rest and not live.is_set():
            for group in rest[:step]:
                await producer.send_message(group)
            await producer.flush()
            rest = rest[step:]
            await asyncio.sleep(1.0)


@dataclass
class Result:
    row: str
    title: str
    expr: str
    series: int = 0
    error: str = ""
    labels: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.series > 0 and not self.error


def panel_queries(data: dict[str, Any], values: dict[str, str]) -> list[Result]:
    found, row = [], ""
    for p in data["panels"]:
        if p["type"] == "row":
            row = p["title"]
            continue
        for t in p["targets"]:
            expr = t["expr"]
            for name, value in {**INTERVALS, **{f"${k}": v for k, v in values.items()}}.items():
                expr = expr.replace(name, value)
            found.append(Result(row, p["title"], expr))
    return found


async def instant(client: httpx.AsyncClient, url: str, result: Result) -> None:
    """Run `result`'s query as an instant query and note the series that have a number
    (NaN, a 0/0 or a quantile of nothing, is no data) or the error."""
    response = await client.get(f"{url}/api/v1/query", params={"query": result.expr})
    body = response.json()
    if body.get("status") != "success":
        result.error = f"{body.get('errorType')}: {body.get('error')}"
        return
    found = [r["metric"] for r in body["data"]["result"] if not math.isnan(float(r["value"][1]))]
    result.series, result.labels = len(found), found


async def variable_values(client: httpx.AsyncClient, url: str, query: str) -> set[str]:
    """What Grafana offers for `label_values(SELECTOR, LABEL)`: the series API's labels."""
    match = re.fullmatch(r"label_values\((.*), (\w+)\)", query)
    assert match, query
    response = await client.get(f"{url}/api/v1/series", params={"match[]": match[1]})
    response.raise_for_status()
    return {s.get(match[2], "") for s in response.json()["data"]} - {""}


def write_targets(prometheus: OwnPrometheus, prefix: str, worker: str, connect: str) -> None:
    name = prefix.strip(".")
    (prometheus.targets / f"{name}.json").write_text(json.dumps([{"targets": [worker]}]))
    (prometheus.targets / "connect").mkdir(exist_ok=True)
    (prometheus.targets / "connect" / f"{name}.json").write_text(
        json.dumps([{"targets": [connect]}])
    )


async def test_every_panel_query_returns_data(
    services: Services,
    worker_factory: WorkerFactory,
    prefix: str,
    prometheus: OwnPrometheus,
    connect: ShopifyReceiver,
    webhook: Webhook,
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    now = datetime.now(UTC)
    worker = worker_factory(
        prefix,
        rules=REPO / "rules" / "library",
        webhook=webhook.url,
        extra=reference_files(tmp_path, now),
    )
    worker.start()
    write_targets(prometheus, prefix, f"127.0.0.1:{worker.web_port}", connect.metrics)
    live = asyncio.Event()
    producing = asyncio.create_task(produce(services, prefix, now, live))
    data = load_dashboard()
    results: list[Result] = []
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            await post_webhook(client, connect, shopify_order(1, now))
            await post_webhook(client, connect, shopify_order(2, now, currency="XXQ"))  # rejected
            values = await resolve_variables(client, prometheus.url, data)
            # The chosen store, its marketplace and team; then "All" (what a first visit shows).
            everything = dict.fromkeys(values, ".*")
            results = panel_queries(data, values) + panel_queries(data, everything)
            deadline = time.monotonic() + QUERY_DEADLINE_S
            while True:
                for result in results:
                    if not result.ok:
                        await instant(client, prometheus.url, result)
                if all(r.ok for r in results) or time.monotonic() > deadline:
                    break
                await post_webhook(client, connect, shopify_order(3, datetime.now(UTC)))
                await asyncio.sleep(2.0)
    finally:
        live.set()
        await producing
    print(f"\nvariables: {values}, then All; {time.monotonic() - began:.0f} s after the start")
    for r in results:
        answer = f"{r.series} series" if r.ok else (r.error or "NO DATA")
        print(f"[{r.row}] {r.title} | {r.expr} | {answer}")
    assert not [r for r in results if r.error], "invalid queries"
    assert [f"{r.title}: {r.expr}" for r in results if not r.ok] == []
    # "per store" panels show stores, not the marketplace rollups (whose store is empty).
    per_store = [r for r in results if r.row == "KPIs"]
    assert [r.title for r in per_store if not all(m.get("store") for m in r.labels)] == []


def grafana_escape(value: str) -> str:
    """A selected value as Grafana's Prometheus data source writes it into a `=~` matcher:
    regex metacharacters escaped, with the backslash doubled for PromQL's string syntax."""
    return re.sub(r"([\\.*+?^${}()|\[\]])", r"\\\\\1", value)


async def resolve_variables(
    client: httpx.AsyncClient, url: str, data: dict[str, Any]
) -> dict[str, str]:
    """Each scope variable's values as Grafana would list them, once the store STORE shows
    in them; the selection is STORE, its marketplace and its team."""
    wanted = {"store": STORE, "marketplace": "US", "team": TEAM}
    queries = {
        v["name"]: v["query"]["query"] for v in data["templating"]["list"] if v["type"] == "query"
    }
    deadline = time.monotonic() + 90
    while True:
        offered = {name: await variable_values(client, url, q) for name, q in queries.items()}
        if all(wanted[name] in offered[name] for name in queries):
            return {name: grafana_escape(wanted[name]) for name in queries}
        if time.monotonic() > deadline:
            raise AssertionError(f"variables never offered {wanted}: {offered}")
        await asyncio.sleep(1.0)
