"""Team scorecards over the engine's own KPI values: the embedded runtime, `kpiwatch
scorecard`, the scorecard rule kind and the Prometheus gauges."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from rules.load import RuleSet, load_paths
from streams.cli import main
from streams.embedded import Engine, reader
from streams.events import OrderEvent, encode
from streams.query import kpi_rows
from streams.reference import Reference, load_reference
from streams.reportmetrics import ScorecardGauges
from streams.scorecards import scorecard_rows, scorecard_table

CARDS = """\
scorecards:
  ops:
    bands: {green: 90, yellow: 70}
    kpis:
      - {kpi: gmv, target: {day: 1000, week: 5000}, weight: 3, direction: higher}
      - {kpi: cancel_rate, target: "5%", weight: 1, direction: lower}
      - {kpi: acos, target: "25%", weight: 1, direction: higher}
  nobody:
    kpis:
      - {kpi: orders, target: 10, direction: higher}
"""
RULE = """\
rules:
  - name: ops-score-low
    description: The operations team's day is in the red.
    scorecard: {period: day, warning: yellow, critical: red}
    by: [team]
"""
TEAMS = "platform,marketplace,store,team\namazon,US,us-1,ops\namazon,JP,jp-1,ops\n"
FX = "date,currency,rate\n2026-11-01,JPY,0.0065\n"


def order(n: int, at: str, amount: str, store: str = "us-1", status: str = "placed") -> OrderEvent:
    currency, marketplace = ("JPY", "JP") if store.startswith("jp") else ("USD", "US")
    return OrderEvent.model_validate(
        {
            "event_id": f"o-{n}-{status}",
            "occurred_at": at,
            "platform": "amazon",
            "marketplace": marketplace,
            "store_id": store,
            "order_id": f"o-{n}",
            "status": status,
            "lines": [
                {"sku": "A", "quantity": 1, "unit_price": {"amount": amount, "currency": currency}}
            ],
        }
    )


# Each store's own 2026-11-30: Pacific for Amazon US, JST for Amazon JP.
EVENTS = [
    order(1, "2026-11-30T12:00:00+09:00", "20000", "jp-1"),  # 130.00 USD at 0.0065
    order(2, "2026-11-30T10:00:00-08:00", "300.00"),
    order(3, "2026-11-30T11:00:00-08:00", "200.00"),
    order(4, "2026-11-30T12:00:00-08:00", "90.00"),
    order(4, "2026-11-30T13:00:00-08:00", "90.00", status="cancelled"),
]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "cards.yaml").write_text(CARDS, encoding="utf-8")
    (tmp_path / "teams.csv").write_text(TEAMS, encoding="utf-8")
    (tmp_path / "fx.csv").write_text(FX, encoding="utf-8")
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(encode(e) for e in EVENTS) + b"\n")
    return tmp_path


def reference(files: Path) -> Reference:
    return load_reference("USD", fx=files / "fx.csv", teams=files / "teams.csv")


def test_the_score_is_computed_by_hand_from_the_engines_own_team_kpis(files: Path) -> None:
    rules = load_paths([files / "rules"])
    ref = reference(files)
    engine = Engine(RuleSet([]), ref)
    engine.process_events(EVENTS)
    view = reader(engine.state, ref)
    (row,) = scorecard_rows(view, rules.scorecards, "day", None, day=date(2026, 11, 30), team="ops")
    # gmv: 300 + 200 + 130 (20,000 JPY at 0.0065) = 630.00 USD (order 4 was cancelled);
    # cancel_rate: 1 cancelled / 4 orders = 0.25; acos: no ad sales, undefined.
    # gmv 630 / 1000 = 63 (weight 3); cancel_rate lower is better: 0.05 / 0.25 = 20 (weight 1);
    # acos left out with its weight: (3 x 63 + 1 x 20) / 4 = 209 / 4 = 52.25, red.
    assert (row["score"], row["band"], row["days"]) == ("52.25", "red", "2026-11-30")
    assert [(k["kpi"], k["value"], k["attainment"], k["band"]) for k in row["kpis"]] == [
        ("gmv", "630.00", "63.00", "red"),
        ("cancel_rate", "0.250000", "20.00", "red"),
        ("acos", None, None, None),
    ]
    assert row["kpis"][2]["note"] == "undefined: no ad sales in this period"
    # The values are the team rollup `kpiwatch kpis --by team` prints, not a second calculation.
    (team,) = kpi_rows(view, "team", "1d", None, day=date(2026, 11, 30))
    assert team["values"]["gmv"] == row["kpis"][0]["value"]
    assert team["values"]["cancel_rate"] == row["kpis"][1]["value"]


def test_a_card_without_events_has_no_score(files: Path) -> None:
    rules = load_paths([files / "rules"])
    engine = Engine(RuleSet([]), reference(files))
    engine.process_events(EVENTS)
    view = reader(engine.state, engine.reference)
    rows = scorecard_rows(view, rules.scorecards, "week", "2026-12-01T00:00:00Z")
    nobody = next(r for r in rows if r["team"] == "nobody")
    assert (nobody["score"], nobody["band"]) == (None, None)
    assert nobody["kpis"][0]["note"] == "no events of the team's stores in this period"
    assert scorecard_rows(view, rules.scorecards, "week", None, held_only=True)[0]["team"] == "ops"
    with pytest.raises(ValueError, match="no scorecard for team 'ghost'"):
        scorecard_rows(view, rules.scorecards, "week", None, team="ghost")


def test_kpiwatch_scorecard_prints_json_and_a_table(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [
        str(files / "events.jsonl"),
        "--rules",
        str(files / "rules"),
        "--teams",
        str(files / "teams.csv"),
        "--fx",
        str(files / "fx.csv"),
        "--team",
        "ops",
        "--period",
        "day",
        "--day",
        "2026-11-30",
    ]
    assert main(["scorecard", *common, "--format", "json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["team"], row["period"], row["score"], row["band"]) == ("ops", "day", "52.25", "red")
    assert main(["scorecard", *common]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].endswith("score 52.25 RED")
    acos = next(line.split() for line in table.splitlines() if line.split()[:1] == ["acos"])
    assert acos[:6] == ["acos", "-", "0.25", "1", "higher", "-"]
    assert " ".join(acos[6:]) == "undefined: no ad sales in this period"
    assert table == scorecard_table([row]) + "\n"


def test_kpiwatch_scorecard_names_the_cards_it_knows(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(files / "events.jsonl"), "--rules", str(files / "rules"), "--team", "ghost"]
    assert main(["scorecard", *args]) == 1
    assert "no scorecard for team 'ghost' (cards: nobody, ops)" in capsys.readouterr().err


def test_the_scorecard_rule_fires_when_the_score_falls_into_a_band(files: Path) -> None:
    (files / "rules" / "rules.yaml").write_text(RULE, encoding="utf-8")
    engine = Engine(load_paths([files / "rules"]), reference(files))
    alerts = []
    # One message per batch, and a later event, so the team rollup is judged at whole hours.
    late = order(9, "2026-11-30T20:00:00-08:00", "1.00")
    for event in [*EVENTS, late]:
        alerts.extend(engine.process_events([event]))
    firing = [a for a in alerts if a.rule == "ops-score-low"]
    assert firing, "the team's red day must raise the scorecard rule"
    first = firing[0]
    assert (first.status, first.severity, first.labels["team"]) == ("firing", "critical", "ops")
    assert first.value is not None
    assert first.value < Decimal(70)
    assert "ops-score-low: scorecard_score" in first.summary
    assert "(red or worse); team=ops" in first.summary


def test_gauges_export_score_band_and_attainment(files: Path) -> None:
    rules = load_paths([files / "rules"])
    engine = Engine(RuleSet([]), reference(files))
    engine.process_events(EVENTS)
    view = reader(engine.state, engine.reference)

    def rows_of(period: str) -> list[dict[str, object]]:
        return scorecard_rows(view, rules.scorecards, period, None, day=date(2026, 11, 30))

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in ScorecardGauges(rows_of).collect()
        for s in family.samples
    }
    day = (("period", "day"), ("team", "ops"))
    assert samples[("kpiwatch_scorecard_score_ratio", day)] == 0.5225
    red, green = (("band", "red"), *day), (("band", "green"), *day)
    assert samples[("kpiwatch_scorecard_band_flag", red)] == 1
    assert samples[("kpiwatch_scorecard_band_flag", green)] == 0
    gmv = (("kpi", "gmv"), ("period", "day"), ("team", "ops"))
    assert samples[("kpiwatch_scorecard_attainment_ratio", gmv)] == 0.63
    # No sample for a card with no score (nobody) or a KPI without a value (acos).
    assert not [k for k in samples if ("team", "nobody") in k[1]]
    assert not [k for k in samples if ("kpi", "acos") in k[1]]


def test_the_score_at_a_moment_counts_nothing_after_it(files: Path) -> None:
    rules = load_paths([files / "rules"])
    engine = Engine(RuleSet([]), reference(files))
    cut = datetime.fromisoformat("2026-11-30T10:30:00-08:00")
    engine.process_events([e for e in EVENTS if e.occurred_at <= cut])
    view = reader(engine.state, engine.reference)
    (row,) = scorecard_rows(view, rules.scorecards, "day", cut + timedelta(0), team="ops")
    # 130 + 300 = 430 -> 43 (x3), no cancellation -> 100: (129 + 100) / 4 = 57.25
    assert row["score"] == "57.25"


def test_rules_schema_prints_the_scorecard_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "schema", "--scorecards"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "kpiwatch scorecard file"


def test_rules_check_counts_the_scorecards(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", str(files / "rules")]) == 0
    assert capsys.readouterr().out == "ok: 0 rule(s), 2 scorecard(s) in 1 path(s)\n"
