"""The worker in Prometheus form: KPI values, alert state, and the pipeline's own health.

Names follow Prometheus conventions: a `kpiwatch_` prefix, base units in the name (`_seconds`),
`_total` on counters. KPI gauges are one metric per unit (a ratio, money in the reporting
currency, a quantity, a duration, a flag), each with one label set for every rule (absent scope
labels are empty), and a cap on the number of series, because a rule grouped by SKU across many
stores could otherwise create millions of series and take Prometheus down with it. Series that
a dashboard divides or sums are created at 0 when their subject first appears, so that "none
yet" reads as 0 rather than as no data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from rules.alerts import Alert
from rules.kpis import CATALOG

log = logging.getLogger(__name__)

# A counter's `_created` twin doubles the series and no dashboard or rule here reads it.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
REGISTRY: Final = CollectorRegistry()
# process_start_time_seconds (restarts: its changes()), CPU, memory, open files.
ProcessCollector(registry=REGISTRY)
SCOPE_LABELS: Final = ("platform", "marketplace", "store", "sku", "campaign", "team")
DEFAULT_KPI_SERIES_CAP: Final = 10_000
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

EVENTS_IN: Final = Counter(
    "kpiwatch_events_in_total", "Events read from the input topics.", ["topic"], registry=REGISTRY
)
SKIPPED: Final = Counter(
    "kpiwatch_messages_skipped_total",
    "Input messages read again after a restart and skipped: the state held them already.",
    registry=REGISTRY,
)
ROLLUP_MESSAGES: Final = Counter(
    "kpiwatch_rollup_messages_total",
    "Store partitions' rollup messages read, by outcome (applied; duplicate: re-sent after a "
    "crash and dropped).",
    ["outcome"],
    registry=REGISTRY,
)
MESSAGES_WRITTEN: Final = Counter(
    "kpiwatch_kafka_messages_written_total",
    "Kafka messages the worker wrote, by kind (changelog, alerts, rollups, dead-letter).",
    ["kind"],
    registry=REGISTRY,
)
DEAD_LETTERED: Final = Counter(
    "kpiwatch_events_dead_lettered_total",
    "Events sent to the dead-letter topic.",
    ["topic"],
    registry=REGISTRY,
)
PROCESSING: Final = Histogram(
    "kpiwatch_event_processing_seconds",
    "Time to validate, aggregate and evaluate one event (a batch's time over its events, "
    "state made durable included).",
    ["topic"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
EVENT_TO_ALERT: Final = Histogram(
    "kpiwatch_event_to_alert_seconds",
    "From an alert transition's time to the notifier reading it.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ALERTS: Final = Counter(
    "kpiwatch_alerts_total", "Alert transitions emitted.", ["rule", "status"], registry=REGISTRY
)
DELIVERIES: Final = Counter(
    "kpiwatch_deliveries_total",
    "Alerts handed to a sink, by outcome (delivered, dead_lettered, deduplicated).",
    ["sink", "outcome"],
    registry=REGISTRY,
)
DELIVERY_DURATION: Final = Histogram(
    "kpiwatch_delivery_duration_seconds",
    "Time to deliver one notification to a sink, retries included.",
    ["sink"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ALERTS_DEAD_LETTERED: Final = Counter(
    "kpiwatch_alerts_dead_lettered_total",
    "Alerts a sink could not take within the retry budget, sent to alerts-dead-letter.",
    ["sink"],
    registry=REGISTRY,
)
ALERTS_MUTED: Final = Counter(
    "kpiwatch_alerts_muted_total",
    "Alert transitions held back by a silence or an acknowledgement.",
    ["rule"],
    registry=REGISTRY,
)
DELIVERY_RETRIES: Final = Counter(
    "kpiwatch_delivery_retries_total",
    "Notifications sent to a sink again after a failed attempt (5xx, 429, timeout).",
    ["sink"],
    registry=REGISTRY,
)
RATE_LIMIT_WAITS: Final = Counter(
    "kpiwatch_rate_limit_waits_total",
    "Times a notification waited for a sink's rate limit (per robot, shared by all workers).",
    ["sink"],
    registry=REGISTRY,
)
RATE_LIMIT_WAIT: Final = Counter(
    "kpiwatch_rate_limit_wait_seconds_total",
    "Seconds notifications spent waiting for a sink's rate limit.",
    ["sink"],
    registry=REGISTRY,
)
TABLE_RECOVERY_REMAINING: Final = Gauge(
    "kpiwatch_table_recovery_remaining_messages",
    "Changelog messages of a table still to read before its newly assigned partitions are "
    "recovered (0: recovered).",
    ["table"],
    registry=REGISTRY,
)
TABLE_RECOVERED: Final = Counter(
    "kpiwatch_table_recovered_messages_total",
    "Changelog messages read to recover a table's newly assigned partitions.",
    ["table"],
    registry=REGISTRY,
)
CONSUMER_LAG: Final = Gauge(
    "kpiwatch_consumer_lag_messages",
    "Messages in a partition this worker has not read yet.",
    ["topic", "partition"],
    registry=REGISTRY,
)
KPI_SERIES_DROPPED: Final = Counter(
    "kpiwatch_kpi_series_dropped_total",
    "KPI values not exported because the series cap was reached.",
    registry=REGISTRY,
)


# One family per unit (the Prometheus naming guide: a metric has one unit, named in it), so
# that a sum or a max never mixes percentages, yen and days. Money is in the reporting
# currency, named by the `currency` label; days of cover are exported in seconds, the base unit.
KPI_FAMILIES: Final[Mapping[str, tuple[str, str]]] = {
    "ratio": (
        "kpiwatch_kpi_ratio",
        "KPIs that are ratios (0.25 = 25%): acos, cancel_rate, pace...",
    ),
    "money": (
        "kpiwatch_kpi_money",
        "KPIs that are money (gmv, ad_spend, aov...), in the reporting currency (`currency`).",
    ),
    "count": ("kpiwatch_kpi_quantity", "KPIs that are counts: orders, units, clicks, available..."),
    "days": (
        "kpiwatch_kpi_seconds",
        "KPIs that are durations (days_of_cover: how long stock lasts), in seconds.",
    ),
    "flag": ("kpiwatch_kpi_flag", "KPIs that are yes/no (stockout): 1 or 0."),
}
SECONDS_PER_DAY: Final = 86_400
KPI_LABELS: Final = ("rule", "kpi", "window", *SCOPE_LABELS)


class KpiGauges(Collector):
    """kpiwatch_kpi_<unit>{rule, kpi, window, <scope labels>[, currency]}: the value each rule
    last looked at, one family per unit (KPI_FAMILIES), at most `cap` series in all (new ones
    beyond the cap are counted in kpiwatch_kpi_series_dropped_total, existing ones keep
    updating). The window is the rule's (`1d` is the marketplace's local day so far)."""

    def __init__(self, cap: int = DEFAULT_KPI_SERIES_CAP) -> None:
        self.cap = cap
        # (unit, currency) -> label values -> value
        self._values: dict[tuple[str, tuple[str, ...]], float] = {}

    def set(
        self,
        rule: str,
        kpi: str,
        scope: Mapping[str, str],
        value: Decimal | None,
        *,
        window: str | None = None,
        currency: str | None = None,
    ) -> None:
        spec = CATALOG.get(kpi)
        unit = spec.unit if spec is not None else "count"
        labels = (rule, kpi, window or "", *(scope.get(name, "") for name in SCOPE_LABELS))
        if unit == "money":
            labels = (*labels, currency or "")
        key = (unit, labels)
        if value is None:  # undefined (zero denominator): no sample beats a made-up 0
            self._values.pop(key, None)
            return
        if key not in self._values and len(self._values) >= self.cap:
            KPI_SERIES_DROPPED.inc()
            return
        self._values[key] = float(value * SECONDS_PER_DAY if unit == "days" else value)

    def clear(self) -> None:
        self._values.clear()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            unit: GaugeMetricFamily(
                name,
                help_text,
                labels=[*KPI_LABELS, "currency"] if unit == "money" else list(KPI_LABELS),
            )
            for unit, (name, help_text) in KPI_FAMILIES.items()
        }
        for (unit, labels), value in list(self._values.items()):
            families[unit].add_metric(list(labels), value)
        yield from families.values()


class AlertState(Collector):
    """kpiwatch_alerts_firing{rule, severity}: fingerprints currently firing (this worker's
    share; sum over workers, each fingerprint lives on one partition)."""

    def __init__(self) -> None:
        self._firing: dict[str, tuple[str, str]] = {}
        self._rules: set[tuple[str, str]] = set()

    def observe(self, alert: Alert) -> None:
        self._rules.add((alert.rule, alert.severity))
        if alert.status == "firing":
            self._firing[alert.fingerprint] = (alert.rule, alert.severity)
        else:
            self._firing.pop(alert.fingerprint, None)

    def clear(self) -> None:
        self._firing.clear()
        self._rules.clear()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "kpiwatch_alerts_firing",
            "Alerts firing now, per rule and severity.",
            labels=["rule", "severity"],
        )
        counts = dict.fromkeys(self._rules, 0)
        for pair in self._firing.values():
            counts[pair] += 1
        for (rule, severity), count in sorted(counts.items()):
            family.add_metric([rule, severity], count)
        yield family


KPI_GAUGES: Final = KpiGauges()
ALERT_STATE: Final = AlertState()
REGISTRY.register(KPI_GAUGES)
REGISTRY.register(ALERT_STATE)


def observe_alert(alert: Alert, now: float | None = None) -> None:
    """What the notifier learns from each transition: alert state and how long the transition
    took to reach it. (KPI gauges come from the evaluations themselves: an alert's value is
    the judged one, a share of the usual for a baseline rule, not the KPI in its unit.)"""
    ALERT_STATE.observe(alert)
    ALERTS_MUTED.labels(rule=alert.rule)  # 0 until muted: a panel shows 0, not "no data"
    seconds = (now if now is not None else time.time()) - alert.at.timestamp()
    EVENT_TO_ALERT.observe(max(0.0, seconds))


class DeliveryMetrics:
    """The dispatcher's observer (sinks.dispatch.Observer) in Prometheus. A lane's every series
    starts at 0 when it is first heard of: a panel of failures shows 0, not "no data"."""

    def __init__(self) -> None:
        self._lanes: set[str] = set()

    def _lane(self, lane: str) -> str:
        if lane not in self._lanes:
            self._lanes.add(lane)
            for outcome in ("delivered", "dead_lettered", "deduplicated"):
                DELIVERIES.labels(sink=lane, outcome=outcome)
            for counter in (
                ALERTS_DEAD_LETTERED,
                DELIVERY_RETRIES,
                RATE_LIMIT_WAITS,
                RATE_LIMIT_WAIT,
            ):
                counter.labels(sink=lane)
        return lane

    def delivered(self, lane: str, alerts: int, seconds: float) -> None:
        self._lane(lane)
        DELIVERIES.labels(sink=lane, outcome="delivered").inc(alerts)
        DELIVERY_DURATION.labels(sink=lane).observe(seconds)

    def dead_lettered(self, lane: str, alerts: int) -> None:
        self._lane(lane)
        DELIVERIES.labels(sink=lane, outcome="dead_lettered").inc(alerts)
        ALERTS_DEAD_LETTERED.labels(sink=lane).inc(alerts)

    def deduplicated(self, lane: str, alerts: int) -> None:
        self._lane(lane)
        DELIVERIES.labels(sink=lane, outcome="deduplicated").inc(alerts)

    def retried(self, lane: str, alerts: int) -> None:
        self._lane(lane)
        DELIVERY_RETRIES.labels(sink=lane).inc()

    def rate_limited(self, lane: str, seconds: float) -> None:
        self._lane(lane)
        RATE_LIMIT_WAITS.labels(sink=lane).inc()
        RATE_LIMIT_WAIT.labels(sink=lane).inc(seconds)

    def muted(self, alert: Alert) -> None:
        ALERTS_MUTED.labels(rule=alert.rule).inc()


async def update_lag(consumer: Any) -> None:
    """Lag of every partition assigned to this worker (a Faust consumer: no types)."""
    partitions = list(consumer.assignment())
    if not partitions:
        return
    ends = await consumer.highwaters(*partitions)
    for tp in partitions:
        position = await consumer.position(tp)
        if position is not None and tp in ends:
            lag = max(0, ends[tp] - position)
            CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)


class BrokerWatch:
    """Whether the Kafka broker answers, probed every `every` seconds by opening a TCP
    connection to a bootstrap server: `kpiwatch_kafka_up` (1/0) and the seconds it has been
    unreachable, so an outage shows on a dashboard even between two scrapes."""

    def __init__(self, registry: CollectorRegistry, bootstrap: str) -> None:
        self.bootstrap = [server.strip() for server in bootstrap.split(",") if server.strip()]
        self.up = Gauge(
            "kpiwatch_kafka_up",
            "1 when a Kafka bootstrap server accepted a connection at the last probe, else 0.",
            registry=registry,
        )
        self.down = Counter(
            "kpiwatch_kafka_unreachable_seconds",
            "Seconds no Kafka bootstrap server accepted a connection (probe interval counted).",
            registry=registry,
        )
        self.up.set(1)

    async def probe(self, timeout: float = 2.0) -> bool:
        for server in self.bootstrap:
            host, _, port = server.rpartition(":")
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port)), timeout
                )
            except (OSError, TimeoutError, ValueError):
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        return False

    async def watch(self, every: float = 5.0) -> None:
        was_up = True
        while True:
            up = await self.probe()
            self.up.set(1 if up else 0)
            if not up:
                self.down.inc(every)
            if up != was_up:
                (log.warning if not up else log.info)(
                    "Kafka %s %s", ",".join(self.bootstrap), "is back" if up else "unreachable"
                )
                was_up = up
            await asyncio.sleep(every)


def progress() -> dict[str, float]:
    """How far the worker is, cheaply (the KPI gauges are not rendered): events in, rollup
    messages applied, Kafka messages written by kind."""
    found: dict[str, float] = {}
    for metric in (EVENTS_IN, ROLLUP_MESSAGES, MESSAGES_WRITTEN, DEAD_LETTERED, SKIPPED):
        for family in metric.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    kind = next(iter(sample.labels.values()), "")
                    key = sample.name + (
                        f":{kind}" if kind and "topic" not in sample.labels else ""
                    )
                    found[key] = found.get(key, 0.0) + sample.value
    return found


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
