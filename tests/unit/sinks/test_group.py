"""Grouping: a wave becomes one digest after group_wait; later news waits group_interval;
resolved transitions are part of the digest; a transition read twice is sent once."""

from __future__ import annotations

from sinks.group import Grouper
from sinks.load import load_setup_text
from sinks.route import Route, route_labels

from .conftest import AlertFactory

SETUP = """\
sinks:
  - {name: ops, type: console}
route:
  sinks: [ops]
  group_by: [rule, store]
  group_wait: 30s
  group_interval: 5m
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup() -> tuple[Route, Clock, Grouper]:
    clock = Clock()
    return load_setup_text(SETUP, "sinks.yaml", {}).route, clock, Grouper(clock)


def test_a_wave_of_forty_skus_is_one_digest(make_alert: AlertFactory) -> None:
    route, clock, grouper = setup()
    for n in range(40):
        alert = make_alert(sku=f"SKU-{n}")
        grouper.add(route, alert, route_labels(alert))
        clock.now += 0.5
    assert grouper.due() == []  # 20 s in, group_wait is 30 s
    assert grouper.next_due() == 1030.0
    clock.now = 1030.0
    (batch,) = grouper.due()
    assert [a.labels["sku"] for a in batch.alerts] == [f"SKU-{n}" for n in range(40)]
    assert batch.key == "0|rule=acos-high,store=us-1"
    assert grouper.next_due() is None


def test_later_news_waits_for_the_group_interval(make_alert: AlertFactory) -> None:
    route, clock, grouper = setup()
    first = make_alert(sku="A")
    grouper.add(route, first, route_labels(first))
    clock.now += 30
    assert len(grouper.due()) == 1
    resolved = make_alert(sku="A", status="resolved")
    grouper.add(route, resolved, route_labels(resolved))
    clock.now += 299
    assert grouper.due() == []
    clock.now += 1
    (batch,) = grouper.due()
    assert [a.status for a in batch.alerts] == ["resolved"]


def test_a_quiet_group_is_forgotten_and_starts_again(make_alert: AlertFactory) -> None:
    route, clock, grouper = setup()
    alert = make_alert()
    grouper.add(route, alert, route_labels(alert))
    clock.now += 30
    grouper.due()
    clock.now += 600
    assert grouper.due() == []
    grouper.add(route, alert, route_labels(alert))
    assert grouper.next_due() == clock.now + 30


def test_groups_are_separate_and_duplicates_collapse(make_alert: AlertFactory) -> None:
    route, clock, grouper = setup()
    a = make_alert(sku="A")
    other_store = a.model_copy(update={"labels": {**a.labels, "store": "us-2"}})
    for alert in (a, a, other_store):
        grouper.add(route, alert, route_labels(alert))
    clock.now += 30
    assert sorted(len(b.alerts) for b in grouper.due()) == [1, 1]


def test_flush_all_gives_everything_pending(make_alert: AlertFactory) -> None:
    route, _, grouper = setup()
    alert = make_alert()
    grouper.add(route, alert, route_labels(alert))
    (batch,) = grouper.flush_all()
    assert batch.alerts == (alert,)
    assert grouper.next_due() is None
