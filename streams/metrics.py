"""The worker in Prometheus form: KPI values, alert state, and the pipeline's own health.

Names follow Prometheus conventions: a `kpiwatch_` prefix, base units in the name (`_seconds`),
`_total` on counters. KPI gauges have one label set for every rule (absent scope labels are
empty) and a cap on the number of series, because a rule grouped by SKU across many stores
could otherwise create millions of series and take Prometheus down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from rules.alerts import Alert

log = logging.getLogger(__name__)

REGISTRY: Final = CollectorRegistry()
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


class KpiGauges(Collector):
    """kpiwatch_kpi_value{rule, kpi, <scope labels>}, at most `cap` series (new ones beyond
    the cap are counted in kpiwatch_kpi_series_dropped_total, existing ones keep updating)."""

    def __init__(self, cap: int = DEFAULT_KPI_SERIES_CAP) -> None:
        self.cap = cap
        self._values: dict[tuple[str, ...], float] = {}

    def set(self, rule: str, kpi: str, scope: Mapping[str, str], value: Decimal | None) -> None:
        key = (rule, kpi, *(scope.get(name, "") for name in SCOPE_LABELS))
        if value is None:  # undefined (zero denominator): no sample beats a made-up 0
            self._values.pop(key, None)
            return
        if key not in self._values and len(self._values) >= self.cap:
            KPI_SERIES_DROPPED.inc()
            return
        self._values[key] = float(value)

    def clear(self) -> None:
        self._values.clear()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "kpiwatch_kpi_value",
            "Latest value of a KPI a rule watches, per scope (units as in the KPI catalog).",
            labels=["rule", "kpi", *SCOPE_LABELS],
        )
        for key, value in list(self._values.items()):
            family.add_metric(list(key), value)
        yield family


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
    """What the notifier learns from each transition: alert state, the KPI value that
    caused it, and how long the transition took to reach it."""
    ALERT_STATE.observe(alert)
    KPI_GAUGES.set(alert.rule, alert.kpi, alert.labels, alert.value)
    seconds = (now if now is not None else time.time()) - alert.at.timestamp()
    EVENT_TO_ALERT.observe(max(0.0, seconds))


class DeliveryMetrics:
    """The dispatcher's observer (sinks.dispatch.Observer) in Prometheus."""

    def delivered(self, lane: str, alerts: int, seconds: float) -> None:
        DELIVERIES.labels(sink=lane, outcome="delivered").inc(alerts)
        DELIVERY_DURATION.labels(sink=lane).observe(seconds)

    def dead_lettered(self, lane: str, alerts: int) -> None:
        DELIVERIES.labels(sink=lane, outcome="dead_lettered").inc(alerts)
        ALERTS_DEAD_LETTERED.labels(sink=lane).inc(alerts)

    def deduplicated(self, lane: str, alerts: int) -> None:
        DELIVERIES.labels(sink=lane, outcome="deduplicated").inc(alerts)

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
