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
        metrics.KPI_GAUGES.set(
            "stockout", "days_of_cover", {"store": "us-1", "sku": sku}, Decimal(1)
        )
    metrics.KPI_GAUGES.set("stockout", "days_of_cover", {"store": "us-1", "sku": "A"}, Decimal(5))
    values = samples("kpiwatch_kpi_value")
    assert sorted(dict(k)["sku"] for k in values) == ["A", "B"]
    assert max(values.values()) == 5.0
    assert samples("kpiwatch_kpi_series_dropped_total")[()] == dropped + 1
    assert all(dict(k)["platform"] == "" for k in values)


def test_an_undefined_kpi_has_no_sample() -> None:
    metrics.KPI_GAUGES.set("acos", "acos", {"store": "s"}, Decimal("0.3"))
    metrics.KPI_GAUGES.set("acos", "acos", {"store": "s"}, None)
    assert samples("kpiwatch_kpi_value") == {}


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


def test_names_follow_prometheus_conventions() -> None:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=")
    for family in text_string_to_metric_families(body.decode()):
        assert family.name.startswith("kpiwatch_")
        if family.type == "histogram":
            assert family.name.endswith("_seconds")


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
