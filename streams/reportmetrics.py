"""Metrics of what the worker tells people rather than how it runs: team scorecard scores and
money it could not convert for want of an FX rate.

Registered on the worker's registry (`streams.metrics.REGISTRY`), apart from the pipeline's
own metrics in `streams.metrics`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any, Final

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rules.scorecard import PERIOD_WINDOWS
from streams.metrics import REGISTRY
from streams.reference import FxRates

log = logging.getLogger(__name__)

# How a scorecard collector gets its rows (`streams.scorecards.scorecard_rows` over the
# worker's tables, for one period).
RowsOf = Callable[[str], list[dict[str, Any]]]
BANDS: Final = ("red", "yellow", "green")


class ScorecardGauges(Collector):
    """kpiwatch_scorecard_score_ratio{team, period} (the 0-100 score as 0-1, as Prometheus
    wants ratios), kpiwatch_scorecard_band_flag{team, period, band} (1 for the card's band, 0
    for the others) and kpiwatch_scorecard_attainment_ratio{team, period, kpi}, computed when
    Prometheus scrapes; a card or KPI with no value has no sample (never a made-up 0)."""

    def __init__(self, rows_of: RowsOf) -> None:
        self.rows_of = rows_of

    def collect(self) -> Iterator[GaugeMetricFamily]:
        score = GaugeMetricFamily(
            "kpiwatch_scorecard_score_ratio",
            "Team scorecard score: weighted KPI attainment, 0-1 (the card shows 0-100).",
            labels=["team", "period"],
        )
        band = GaugeMetricFamily(
            "kpiwatch_scorecard_band_flag",
            "1 for the band (red, yellow, green) a team's scorecard is in, 0 for the others.",
            labels=["team", "period", "band"],
        )
        attained = GaugeMetricFamily(
            "kpiwatch_scorecard_attainment_ratio",
            "Attainment of one scorecard KPI against its target, 0-1, capped at 1.",
            labels=["team", "period", "kpi"],
        )
        for period in PERIOD_WINDOWS:
            try:
                rows = self.rows_of(period)
            except Exception:  # a scrape must not fail for a card; the page says what broke
                log.exception("scorecards for %s", period)
                continue
            for row in rows:
                labels = [row["team"], period]
                if row["score"] is not None:
                    score.add_metric(labels, float(row["score"]) / 100)
                    for name in BANDS:
                        band.add_metric([*labels, name], float(name == row["band"]))
                for kpi in row["kpis"]:
                    if kpi["attainment"] is not None:
                        value = float(kpi["attainment"]) / 100
                        attained.add_metric([*labels, kpi["kpi"]], value)
        yield from (score, band, attained)


def watch_missing_rates(fx: FxRates, counter: Counter | None = None) -> None:
    """Log once per currency (a warning) and count it when money cannot be converted."""
    counted = counter if counter is not None else MISSING_RATES

    def missed(currency: str, day: date) -> None:
        log.warning(
            "no FX rate %s -> %s for %s: money KPIs with %s in them are undefined until one "
            "arrives (kpiwatch produce-fx)",
            currency,
            fx.reporting,
            day,
            currency,
        )
        counted.labels(currency=currency).inc()

    fx.on_missing = missed


def _no_cards(period: str) -> list[dict[str, Any]]:
    return []


# One of each per process, on the worker's registry: `streams.app.build_app` points them at
# its tables and reference data.
MISSING_RATES: Final = Counter(
    "kpiwatch_fx_rate_missing_total",
    "Currencies found without an FX rate to the reporting currency (money KPIs in them are "
    "undefined), counted once per currency.",
    ["currency"],
    registry=REGISTRY,
)
SCORECARDS: Final = ScorecardGauges(_no_cards)
REGISTRY.register(SCORECARDS)
