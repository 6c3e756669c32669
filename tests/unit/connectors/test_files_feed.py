"""CSV exports against the bug classes of issue 13: an order counts on the day it was created
when the export has both dates, and two columns for one field are refused, not guessed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.files import FileOptions, read_events_file
from rules.errors import KpiwatchError
from streams import cli

HEADER = (
    "occurred_at,placed_at,platform,marketplace,store_id,order_id,status,sku,quantity,"
    "unit_price,currency"
)


def test_an_order_exported_after_an_update_counts_on_the_day_it_was_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "orders.csv"
    export.write_text(
        f"{HEADER}\n"
        "2026-11-21T09:00:00+08:00,2026-11-20T23:30:00+08:00,shopee,MY,my-1,A-1,shipped,SKU-1,2,19.99,MYR\n"
    )
    argv = ["kpis", str(export), "--kind", "order", "--window", "1d", "--day", "2026-11-20"]
    assert cli.main(argv) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["values"]["orders"], row["native"]["gmv"]) == ("1", "39.98")


def test_two_columns_for_one_field_are_refused(tmp_path: Path) -> None:
    export = tmp_path / "erp.csv"
    export.write_text(
        "Order date,Last update,platform,marketplace,store_id,order_id,status,sku,quantity,"
        "unit_price,currency\n"
        "2026-11-20T23:30:00+08:00,2026-11-21T09:00:00+08:00,shopee,MY,my-1,A-1,placed,S,1,1.00,MYR\n"
    )
    columns = {"Order date": "occurred_at", "Last update": "occurred_at"}
    options = FileOptions(kind="order", columns=columns)
    with pytest.raises(KpiwatchError, match="more than one column for occurred_at"):
        list(read_events_file(export, options))
