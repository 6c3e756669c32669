"""The shipped rule library against simulated traffic with injected incidents.

Five stores in four time zones are simulated for eleven days; incidents start only after the
first week, so that `gmv-drop-vs-usual` has a same-weekday baseline, and not in the last day, so
that the rules have time to answer. The events go through
`kpiwatch replay --rules rules/library --fx FX` (the CLI, in-process), and then:

- every injected incident has the rule made for it firing on the right store (and SKU or
  campaign) within a delay the rule's own mechanics explain (see DETECTION);
- alerts that no incident explains stay few (see test_alerts_without_an_incident_stay_few).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.simulator import Incident, IncidentKind, simulate
from streams.cli import main
from streams.events import encode
from streams.windows import marketplace_zone

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
DAYS, STORES, SEED, RATE = 11, 5, 6, 2.0
LIBRARY = Path(__file__).parents[3] / "rules" / "library"
FX = "date,currency,rate\n2026-03-01,JPY,0.0067\n2026-03-01,MYR,0.22\n2026-03-01,SGD,0.74\n"

# Which rules answer to which incident, and how long after its start one of them must be firing.
# stockout: the next inventory snapshot (every 2 h) after a few hours of sales.
# acos_spike: the 1d window mixes the day's normal hours in, and the guard wants 20 USD spent:
#   a spike starting in the local evening shows the next local morning.
# silent_feed: no orders in the local hours overlapping the last 2 h: whole hours, so <= 3 h.
# sales_cliff: today vs the usual day so far, `for: 2h`, and `orders >= 5` at a tenth of the
#   usual rate: a cliff starting in the evening shows the next local morning.
DETECTION: dict[IncidentKind, tuple[frozenset[str], timedelta]] = {
    "stockout": (frozenset({"stockout", "low-days-of-cover"}), timedelta(hours=8)),
    "acos_spike": (
        frozenset({"acos-high", "acos-high-jp", "campaign-acos-high", "spend-without-sales"}),
        timedelta(hours=24),
    ),
    "silent_feed": (frozenset({"silent-order-feed"}), timedelta(hours=3, minutes=5)),
    "sales_cliff": (frozenset({"gmv-drop-vs-usual"}), timedelta(hours=24)),
}
# What else an incident may cause, on its own store, until a day after it ended: a silent feed
# or a sales cliff also lowers today's GMV (also the marketplace's), a cliff leaves hours
# without orders, a sold-out SKU stops selling.
SIDE_EFFECTS: dict[IncidentKind, frozenset[str]] = {
    "stockout": frozenset(),
    "acos_spike": frozenset(),
    "silent_feed": frozenset({"gmv-drop-vs-usual", "marketplace-gmv-drop"}),
    "sales_cliff": frozenset({"silent-order-feed", "marketplace-gmv-drop"}),
}
BASELINE_RULES = frozenset({"gmv-drop-vs-usual", "marketplace-gmv-drop"})


@dataclass(frozen=True)
class Episode:
    """One firing episode of one alert fingerprint: from firing until resolved (or the end)."""

    rule: str
    labels: dict[str, str]
    start: datetime
    end: datetime | None

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start <= end and (self.end is None or self.end >= start)


@dataclass(frozen=True)
class Run:
    incidents: list[Incident]
    episodes: list[Episode]
    store_days: int


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("incidents")
    incidents: list[Incident] = []
    events = simulate(
        START,
        hours=24 * DAYS,
        stores=STORES,
        seed=SEED,
        incident_rate=RATE,
        showcase=False,
        incident_window=(START + timedelta(days=7), START + timedelta(days=DAYS - 1)),
        on_incident=incidents.append,
    )
    (folder / "events.jsonl").write_bytes(b"".join(encode(e) + b"\n" for e in events))
    (folder / "fx.csv").write_text(FX, encoding="utf-8")
    alerts = _replay(folder)
    return Run(incidents, list(_episodes(alerts)), STORES * DAYS)


def _replay(folder: Path) -> list[dict[str, Any]]:
    capture = folder / "alerts.jsonl"
    argv = ["replay", str(folder / "events.jsonl"), "--rules", str(LIBRARY)]
    argv += ["--fx", str(folder / "fx.csv")]
    with pytest.MonkeyPatch.context() as patch, capture.open("w", encoding="utf-8") as out:
        patch.setattr("sys.stdout", out)
        assert main(argv) == 0
    return [json.loads(line) for line in capture.read_text(encoding="utf-8").splitlines()]


def _episodes(alerts: list[dict[str, Any]]) -> Iterator[Episode]:
    open_: dict[str, Episode] = {}
    for alert in alerts:
        at = datetime.fromisoformat(alert["at"])
        key = alert["fingerprint"]
        if alert["status"] == "firing" and key not in open_:
            open_[key] = Episode(alert["rule"], alert["labels"], at, None)
        elif alert["status"] == "resolved" and key in open_:
            episode = open_.pop(key)
            yield Episode(episode.rule, episode.labels, episode.start, at)
    yield from open_.values()


def _on_target(episode: Episode, incident: Incident) -> bool:
    """The episode is about the incident's store, and its SKU or campaign when it has one."""
    labels = episode.labels
    if labels.get("store") != incident.store_id:
        return False
    if "sku" in labels and incident.sku is not None:
        return labels["sku"] == incident.sku
    if "campaign" in labels and incident.campaign_id is not None:
        return labels["campaign"] == incident.campaign_id
    return "sku" not in labels and "campaign" not in labels


def test_every_kind_of_incident_was_injected(run: Run) -> None:
    assert {i.kind for i in run.incidents} == set(DETECTION)
    assert len(run.incidents) >= 6


def test_every_incident_fires_its_rule_on_its_store_in_time(run: Run) -> None:
    missed = []
    for incident in run.incidents:
        rules, delay = DETECTION[incident.kind]
        until = min(incident.start + delay, incident.end + timedelta(hours=3))
        if not any(
            e.rule in rules and _on_target(e, incident) and e.overlaps(incident.start, until)
            for e in run.episodes
        ):
            missed.append(incident.to_json())
    assert not missed, f"incidents no rule caught: {missed}"


def _explained(episode: Episode, incidents: list[Incident]) -> bool:
    for incident in incidents:
        if not episode.overlaps(incident.start, incident.end + timedelta(days=1)):
            continue
        rules = DETECTION[incident.kind][0]
        if episode.rule in rules and _on_target(episode, incident):
            return True
        side = SIDE_EFFECTS[incident.kind]
        same_market = episode.labels.get("marketplace") == _marketplace(incident.store_id)
        if episode.rule in side and (
            episode.labels.get("store") == incident.store_id
            or ("store" not in episode.labels and same_market)
        ):
            return True
    return False


def _marketplace(store_id: str) -> str:
    return store_id.split("-")[1].upper()


def _local_hour(episode: Episode) -> int:
    labels = episode.labels
    zone: ZoneInfo = marketplace_zone(labels.get("platform", ""), labels["marketplace"])
    return episode.start.astimezone(zone).hour


def test_alerts_without_an_incident_stay_few(run: Run) -> None:
    """Traffic noise alone may page someone now and then, not every day.

    The bound: at most one unexplained episode per ten store-days (seeds 2, 3, 5, 6 and 7 give
    0 to 2 in 55 store-days: ACoS early in a local day, a cancellation spike on 20 orders), none
    of them a stockout,
    a days-of-cover or a silent-feed alert (the simulator restocks at 30 days of cover and
    every store sells several orders an hour in business hours, so those have no excuse).

    The GMV baseline rules count like any other: the usual day is cut by the past days' own
    orders by local hour, so a store's night trough no longer reads as a morning drop.
    """
    rest = [e for e in run.episodes if not _explained(e, run.incidents)]
    summary = [(e.rule, e.labels.get("store"), e.start.isoformat()) for e in rest]
    assert len(rest) <= run.store_days // 10, summary
    strict = {"stockout", "low-days-of-cover", "silent-order-feed"}
    assert not [s for s in summary if s[0] in strict], summary
