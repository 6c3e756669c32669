"""What a first-time user tripped on (issue 14, section 4): `kpis --at` and `--day`, missing FX
rates, backtest order, an unknown reporting currency."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from rules.load import RuleSet
from streams import reportmetrics
from streams.cli import main
from streams.embedded import replay
from streams.events import RawRecord
from streams.reference import FxRates


def order(n: int, at: str, amount: str, store: str = "us-1", currency: str = "USD") -> str:
    platform, marketplace = ("amazon", "JP") if currency == "JPY" else ("amazon", "US")
    return json.dumps(
        {
            "type": "order",
            "event_id": f"o-{n}",
            "occurred_at": at,
            "platform": platform,
            "marketplace": marketplace,
            "store_id": store,
            "order_id": f"o-{n}",
            "status": "placed",
            "lines": [
                {"sku": "A", "quantity": 1, "unit_price": {"amount": amount, "currency": currency}}
            ],
        }
    )


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


# Amazon US days are Pacific: 2026-11-30 local is 08:00Z on the 30th to 08:00Z on 12-01.
DAY = (
    order(1, "2026-11-30T10:00:00-08:00", "10.00"),
    order(2, "2026-11-30T15:00:00-08:00", "20.00"),
    order(3, "2026-12-01T01:00:00-08:00", "40.00"),
)


def test_kpis_at_counts_nothing_after_it_and_the_window_ends_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = write(tmp_path, *DAY)
    at = "2026-11-30T12:00:00-08:00"
    assert main(["kpis", str(events), "--at", at]) == 0
    (row,) = rows(capsys)
    # Before: the whole local day (orders 1 and 2, 30 USD), window_end at local midnight.
    assert row["values"]["orders"] == "1"
    assert row["values"]["gmv"] == "10.00"
    assert row["window_start"] == "2026-11-30T08:00:00+00:00"
    assert row["window_end"] == "2026-11-30T20:00:00+00:00"


def test_kpis_at_says_how_many_later_events_it_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = write(tmp_path, *DAY)
    assert main(["kpis", str(events), "--at", "2026-11-30T12:00:00-08:00"]) == 0
    assert "2 after --at left out" in capsys.readouterr().err


def test_kpis_day_is_each_stores_own_local_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jp = (
        order(4, "2026-11-30T23:30:00+09:00", "1000", "jp-1", "JPY"),  # 14:30Z on the 30th
        order(5, "2026-12-01T00:30:00+09:00", "3000", "jp-1", "JPY"),  # 15:30Z, the JST 1st
    )
    events = write(tmp_path, *DAY, *jp)
    assert main(["kpis", str(events), "--day", "2026-11-30"]) == 0
    found = {row["scope"]["store"]: row for row in rows(capsys)}
    assert found["us-1"]["values"]["orders"] == "2"  # not the 01:00 order of December 1st
    assert found["us-1"]["window_start"] == "2026-11-30T08:00:00+00:00"
    assert found["us-1"]["window_end"] == "2026-12-01T08:00:00+00:00"
    assert found["jp-1"]["values"]["orders"] == "1"
    assert found["jp-1"]["native"]["gmv"] == "1000"
    assert found["jp-1"]["window_start"] == "2026-11-29T15:00:00+00:00"


def test_kpis_day_and_at_are_one_or_the_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = write(tmp_path, *DAY)
    with pytest.raises(SystemExit):
        main(["kpis", str(events), "--day", "2026-11-30", "--at", "2026-11-30T12:00:00Z"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_kpis_with_an_unknown_reporting_currency_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = write(tmp_path, *DAY)
    assert main(["kpis", str(events), "--reporting-currency", "XYZ"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "kpiwatch: reporting currency: unknown currency 'XYZ' (expected an ISO 4217 code)"
    )
    assert "Traceback" not in err


def test_missing_fx_rate_warns_once_per_currency_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jp = [
        order(10 + n, f"2026-11-{25 + n}T12:00:00+09:00", "1000", "jp-1", "JPY") for n in range(5)
    ]
    events = write(tmp_path, *jp, *DAY)
    assert main(["kpis", str(events), "--window", "7d", "--by", "marketplace"]) == 0
    err = capsys.readouterr().err
    assert err.count("no FX rate") == 1
    assert "kpiwatch: warning: no FX rate JPY -> reporting currency" in err
    assert "money KPIs with JPY in them are null" in err


def test_worker_logs_and_counts_a_missing_rate_once_per_currency(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fx = FxRates("USD")
    before = reportmetrics.MISSING_RATES.labels(currency="THB")._value.get()
    reportmetrics.watch_missing_rates(fx)
    with caplog.at_level(logging.WARNING, logger="streams.reportmetrics"):
        for day in range(1, 4):
            assert fx.rate("THB", date(2026, 11, day)) is None
    assert [r.getMessage() for r in caplog.records] == [
        "no FX rate THB -> USD for 2026-11-01: money KPIs with THB in them are undefined until "
        "one arrives (kpiwatch produce-fx)"
    ]
    assert reportmetrics.MISSING_RATES.labels(currency="THB")._value.get() == before + 1


BACKTEST_RULES = """\
rules:
  - name: any-order
    kpi: orders
    by: [store]
    window: 1h
    thresholds: {warning: "> 0"}
"""


def test_rules_test_prints_transitions_in_time_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The file holds store b's earlier orders after store a's later one.
    lines = (
        order(1, "2026-11-30T10:00:00Z", "5.00", "a"),
        order(2, "2026-11-30T09:00:00Z", "5.00", "b"),
        order(3, "2026-11-30T08:00:00Z", "5.00", "c"),
    )
    events = write(tmp_path, *lines)
    rules = tmp_path / "rules.yaml"
    rules.write_text(BACKTEST_RULES, encoding="utf-8")
    from rules.load import load_paths

    engine_order: list[str] = []
    records = (RawRecord(source=str(n), value=line.encode()) for n, line in enumerate(lines))
    replay(records, load_paths([rules]), lambda a: engine_order.append(a.at.isoformat()))
    assert engine_order != sorted(engine_order), "the engine must report them out of order"

    assert main(["rules", "test", str(rules), "--events", str(events)]) == 0
    printed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if "FIRING" in line]
    assert printed == sorted(engine_order)
    assert len(printed) == 3


def test_replay_leaves_out_events_after_until() -> None:
    lines = [order(1, "2026-11-30T10:00:00Z", "5.00"), order(2, "2026-11-30T12:00:00Z", "5.00")]
    from datetime import datetime

    records = (RawRecord(source=str(n), value=line.encode()) for n, line in enumerate(lines))
    until = datetime.fromisoformat("2026-11-30T11:00:00Z")
    report = replay(records, RuleSet([]), lambda _: None, until=until)
    assert (report.events, report.later) == (1, 1)
