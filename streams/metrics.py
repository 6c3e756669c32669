"""The worker's own health in Prometheus form (names follow Prometheus conventions)."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY: Final = CollectorRegistry()
EVENTS_IN: Final = Counter(
    "kpiwatch_events_in_total", "Events read from the input topics.", ["topic"], registry=REGISTRY
)
DEAD_LETTERED: Final = Counter(
    "kpiwatch_events_dead_lettered_total",
    "Events sent to the dead-letter topic.",
    ["topic"],
    registry=REGISTRY,
)
ALERTS: Final = Counter(
    "kpiwatch_alerts_total", "Alert transitions emitted.", ["rule", "status"], registry=REGISTRY
)
DELIVERIES: Final = Counter(
    "kpiwatch_deliveries_total",
    "Alert deliveries per sink and outcome.",
    ["sink", "outcome"],
    registry=REGISTRY,
)


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
