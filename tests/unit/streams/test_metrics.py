"""Prometheus exposition: KPI gauges with a series cap, alert state per rule and severity,
delivery outcomes; names by Prometheus conventions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rules.alerts import Alert, fingerprint
from rules.kpis import CATALOG
from streams import metrics


def alert(sku: str, status: str = "firing", severity: str = "warning") -> Alert:
    labels = {"store": "us-1", "sku": sku}
    return Alert.model_validate(
        {
            "rule": "stockout",
            "severity": severity,
            "status": status,
            "labels": labels,
            "value": Decimal("2"),
            "threshold": "< 3",
            "window_start": None,
            "window_end": None,
            "at": datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
            "kpi": "days_of_cover",
            "fingerprint": fingerprint("stockout", labels),
            "summary": "",
        }
    )


def samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    body, _ = metrics.exposition()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == name
    }


@pytest.fixture(autouse=True)
def fresh_collectors() -> Iterator[None]:
    metrics.KPI_GAUGES.clear()
    metrics.ALERT_STATE.clear()
    yield
    metrics.KPI_GAUGES.cap = metrics.DEFAULT_KPI_SERIES_CAP


def test_kpi_gauges_stop_at_the_cap_and_count_what_they_drop() -> None:
    metrics.KPI_GAUGES.cap = 2
    dropped = samples("kpiwatch_kpi_series_dropped_total").get((), 0.0)
    for sku in ("A", "B", "C"):
        metrics.KPI_GAUGES.set("stockout", "available", {"store": "us-1", "sku": sku}, Decimal(1))
    metrics.KPI_GAUGES.set("stockout", "available", {"store": "us-1", "sku": "A"}, Decimal(5))
    values = samples("kpiwatch_kpi_quantity")
    assert sorted(dict(k)["sku"] for k in values) == ["A", "B"]
    assert max(values.values()) == 5.0
    assert samples("kpiwatch_kpi_series_dropped_total")[()] == dropped + 1
    assert all(dict(k)["platform"] == "" for k in values)


def test_the_cap_counts_series_of_every_unit() -> None:
    metrics.KPI_GAUGES.cap = 1
    metrics.KPI_GAUGES.set("acos-high", "acos", {"store": "s"}, Decimal("0.3"), window="1d")
    metrics.KPI_GAUGES.set("gmv-drop", "gmv", {"store": "s"}, Decimal(9), currency="USD")
    assert samples("kpiwatch_kpi_money") == {}


def test_each_unit_has_its_own_metric_and_money_names_its_currency() -> None:
    scope = {"platform": "amazon", "marketplace": "JP", "store": "jp-1"}
    sku = {**scope, "sku": "MUG"}
    gauges = metrics.KPI_GAUGES
    gauges.set("acos-high-jp", "acos", sku, Decimal("0.42"), window="1d")
    gauges.set("gmv-drop", "gmv", scope, Decimal("1234.5"), window="1d", currency="USD")
    gauges.set("no-orders", "orders", scope, Decimal(7), window="1h")
    gauges.set("low-days-of-cover", "days_of_cover", sku, Decimal("2.5"), window="7d")
    gauges.set("out", "stockout", sku, Decimal(1), window="7d")
    acos = samples("kpiwatch_kpi_ratio")
    assert list(acos.values()) == [0.42]
    assert dict(next(iter(acos)))["window"] == "1d"
    money = samples("kpiwatch_kpi_money")
    assert [(dict(k)["currency"], v) for k, v in money.items()] == [("USD", 1234.5)]
    assert list(samples("kpiwatch_kpi_quantity").values()) == [7.0]
    # The base unit of time: days of cover in seconds.
    assert list(samples("kpiwatch_kpi_seconds").values()) == [2.5 * 86_400]
    assert list(samples("kpiwatch_kpi_flag").values()) == [1.0]
    body, _ = metrics.exposition()
    assert b"kpiwatch_kpi_value" not in body


def test_every_unit_of_the_catalog_has_its_metric() -> None:
    assert {spec.unit for spec in CATALOG.values()} <= set(metrics.KPI_FAMILIES)


def test_an_undefined_kpi_has_no_sample() -> None:
    metrics.KPI_GAUGES.set("acos", "acos", {"store": "s"}, Decimal("0.3"))
    metrics.KPI_GAUGES.set("acos", "acos", {"store": "s"}, None)
    assert samples("kpiwatch_kpi_ratio") == {}


def test_no_created_series() -> None:
    metrics.DeliveryMetrics().delivered("ding", 1, 0.1)
    body, _ = metrics.exposition()
    assert b"_created" not in body


def test_a_restart_shows_in_the_process_start_time() -> None:
    assert samples("process_start_time_seconds")[()] > 0


def test_alert_state_counts_firing_fingerprints_per_rule_and_severity() -> None:
    for sku in ("A", "B"):
        metrics.observe_alert(
            alert(sku), now=datetime(2026, 11, 23, 10, 0, 2, tzinfo=UTC).timestamp()
        )
    metrics.observe_alert(alert("A", "resolved"))
    firing = samples("kpiwatch_alerts_firing")
    assert firing[(("rule", "stockout"), ("severity", "warning"))] == 1.0
    metrics.observe_alert(alert("B", "resolved"))
    assert samples("kpiwatch_alerts_firing")[(("rule", "stockout"), ("severity", "warning"))] == 0


def test_delivery_outcomes_per_sink() -> None:
    observer = metrics.DeliveryMetrics()
    before = samples("kpiwatch_alerts_dead_lettered_total").get((("sink", "ding"),), 0.0)
    observer.delivered("ding", 3, 0.2)
    observer.dead_lettered("ding", 2)
    delivered = samples("kpiwatch_deliveries_total")
    assert delivered[(("outcome", "delivered"), ("sink", "ding"))] >= 3
    assert samples("kpiwatch_alerts_dead_lettered_total")[(("sink", "ding"),)] == before + 2
    assert samples("kpiwatch_delivery_duration_seconds_count")[(("sink", "ding"),)] >= 1


def test_a_lane_starts_with_every_series_at_zero() -> None:
    observer = metrics.DeliveryMetrics()
    observer.delivered("fresh-lane", 1, 0.1)
    lane = (("sink", "fresh-lane"),)
    assert samples("kpiwatch_delivery_retries_total")[lane] == 0
    assert samples("kpiwatch_rate_limit_waits_total")[lane] == 0
    assert samples("kpiwatch_alerts_dead_lettered_total")[lane] == 0
    assert samples("kpiwatch_deliveries_total")[(("outcome", "dead_lettered"), *lane)] == 0


def test_retries_and_rate_limit_waits_per_sink() -> None:
    observer = metrics.DeliveryMetrics()
    lane = (("sink", "robot"),)
    observer.retried("robot", 4)
    observer.rate_limited("robot", 1.5)
    observer.rate_limited("robot", 0.5)
    assert samples("kpiwatch_delivery_retries_total")[lane] >= 1
    assert samples("kpiwatch_rate_limit_waits_total")[lane] >= 2
    assert samples("kpiwatch_rate_limit_wait_seconds_total")[lane] >= 2.0


# Plain counts of things, named after the things (the naming guide's `_up`, `_firing` style).
GAUGES_WITHOUT_UNIT = {"kpiwatch_kafka_up", "kpiwatch_alerts_firing"}


def test_names_follow_prometheus_conventions() -> None:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=")
    units = ("_seconds", "_messages", "_ratio", "_money", "_quantity", "_flag")
    for family in text_string_to_metric_families(body.decode()):
        # process_*: prometheus_client's standard process metrics, named as everywhere.
        assert family.name.startswith(("kpiwatch_", "process_"))
        if family.type == "histogram":
            assert family.name.endswith("_seconds")
        if family.type == "gauge" and family.name.startswith("kpiwatch_"):
            assert family.name.endswith(units) or family.name in GAUGES_WITHOUT_UNIT


async def test_consumer_lag_per_assigned_partition() -> None:
    @dataclass(frozen=True)
    class TP:
        topic: str
        partition: int

    class Consumer:
        def assignment(self) -> set[TP]:
            return {TP("alerts", 0), TP("alerts", 1)}

        async def highwaters(self, *tps: TP) -> dict[TP, int]:
            return {tp: 10 for tp in tps}

        async def position(self, tp: TP) -> int | None:
            return 4 if tp.partition == 0 else None

    await metrics.update_lag(Consumer())
    lag = samples("kpiwatch_consumer_lag_messages")
    assert lag[(("partition", "0"), ("topic", "alerts"))] == 6.0
    assert (("partition", "1"), ("topic", "alerts")) not in lag
