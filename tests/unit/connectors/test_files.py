"""Event files: CSV exports as sellers have them, JSON lines, and the rejects report."""

from __future__ import annotations

import csv
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.files import (
    FileOptions,
    RejectedRow,
    read_events_file,
)
from rules.errors import KpiwatchError
from streams import cli
from streams.cli import inputs
from streams.events import AdSpendEvent, Event, InventoryEvent, OrderEvent, RawRecord, decode

ORDER_HEADER = (
    "occurred_at,platform,marketplace,store_id,order_id,status,sku,quantity,unit_price,currency"
)
ORDERS = f"""{ORDER_HEADER}
2026-11-20T10:00:00+08:00,shopee,MY,my-1,A-1,placed,SKU-1,2,19.99,MYR
2026-11-20T10:00:00+08:00,shopee,MY,my-1,A-1,placed,SKU-2,1,5.00,MYR
2026-11-20T11:00:00+08:00,shopee,MY,my-1,A-2,placed,SKU-1,1,19.99,MYR
"""


def write(tmp_path: Path, text: str, name: str = "orders.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def split(path: Path, **options: object) -> tuple[list[tuple[str, Event]], list[RejectedRow]]:
    good: list[tuple[str, Event]] = []
    bad: list[RejectedRow] = []
    for item in read_events_file(path, FileOptions(**options)):  # type: ignore[arg-type]
        if isinstance(item, RawRecord):
            good.append((item.source, item.decode()))
        else:
            bad.append(item)
    return good, bad


def test_rows_of_one_order_make_one_event_with_its_lines(tmp_path: Path) -> None:
    path = write(tmp_path, ORDERS)
    good, bad = split(path, kind="order")
    assert not bad
    assert [source for source, _ in good] == [f"{path}:2", f"{path}:4"]
    first = good[0][1]
    assert isinstance(first, OrderEvent)
    assert [(line.sku, line.quantity) for line in first.lines] == [("SKU-1", 2), ("SKU-2", 1)]
    assert first.lines[0].unit_price.amount == Decimal("19.99")
    assert first.occurred_at == datetime(2026, 11, 20, 2, tzinfo=UTC)


def test_event_ids_come_from_content_not_from_line_numbers(tmp_path: Path) -> None:
    once = [e.event_id for _, e in split(write(tmp_path, ORDERS), kind="order")[0]]
    lines = ORDERS.splitlines()
    # Other rows above, a blank line: the same orders keep the same ids.
    moved = "\n".join([lines[0], "", lines[3], lines[1], lines[2]]) + "\n"
    again = [e.event_id for _, e in split(write(tmp_path, moved, "b.csv"), kind="order")[0]]
    assert sorted(again) == sorted(once)
    assert once[0].startswith("csv:order:my-1:A-1:placed:2026-11-20T02:00:00+00:00:")
    fixed = ORDERS.replace("SKU-2,1,5.00", "SKU-2,1,6.00")
    corrected = [e.event_id for _, e in split(write(tmp_path, fixed, "c.csv"), kind="order")[0]]
    assert corrected[0] != once[0]
    assert corrected[1] == once[1]


def test_excel_export_bom_semicolons_blank_lines_and_quoted_newlines(tmp_path: Path) -> None:
    text = (
        "\ufeff" + ORDER_HEADER.replace(",", ";") + ";note\r\n"
        "\r\n"
        '2026-11-20T10:00:00+08:00;shopee;MY;my-1;A-1;placed;SKU-1;1;19.99;MYR;"gift\r\nwrap"\r\n'
        "\r\n"
        "2026-11-20T11:00:00+08:00;shopee;MY;my-1;A-2;placed;SKU-1;1;19,99;MYR;\r\n"
        "2026-11-20T12:00:00+08:00;shopee;MY;my-1;A-3;placed;SKU-1;1;19.99;MYR;\r\n"
    )
    path = write(tmp_path, text)
    good, bad = split(path, kind="order")
    assert [source for source, _ in good] == [f"{path}:3", f"{path}:7"]
    assert [(r.line, r.reason) for r in bad] == [
        (
            6,
            "unit_price '19,99' has a comma: write plain digits with a point for decimals "
            "(1250.00, 12.50); a comma could mean either",
        )
    ]
    assert bad[0].fields["unit_price"] == "19,99"  # the row as the seller wrote it


def test_export_column_names_are_mapped_to_ours(tmp_path: Path) -> None:
    header = "下单时间,平台,站点,店铺,订单号,状态,商品编码,数量,单价,币种"
    text = header + "\n" + ORDERS.splitlines()[3] + "\n"
    columns = dict(zip(header.split(","), ORDER_HEADER.split(","), strict=True))
    good, bad = split(write(tmp_path, text), kind="order", columns=columns)
    assert not bad
    assert good[0][1].store_id == "my-1"


def test_a_header_without_a_needed_column_is_refused_whole(tmp_path: Path) -> None:
    text = ORDERS.replace(",order_id,", ",订单号,")
    with pytest.raises(KpiwatchError, match=r"no column for order_id .* --columns"):
        split(write(tmp_path, text), kind="order")
    with pytest.raises(KpiwatchError, match="a `type` column, or --kind"):
        split(write(tmp_path, ORDERS, "d.csv"))


def test_naive_times_are_refused_unless_the_zone_is_given(tmp_path: Path) -> None:
    text = ORDERS.replace("T10:00:00+08:00", " 10:00:00").replace("T11:00:00+08:00", " 02:30")
    text = text.replace(",my-1,A-2,", ",us-1,A-2,")
    path = write(tmp_path, text)
    good, bad = split(path, kind="order")
    assert not good
    assert bad[0].reason.startswith(
        "occurred_at '2026-11-20 10:00:00' has no time zone: write the offset (+08:00) or say "
        "which local time the file is in with --timezone Area/City"
    )
    assert [r.line for r in bad] == [2, 3, 4]  # the whole first order, and the second
    good, bad = split(path, kind="order", timezone=ZoneInfo("Asia/Kuala_Lumpur"))
    assert not bad
    assert good[0][1].occurred_at == datetime(2026, 11, 20, 2, tzinfo=UTC)
    gap = ORDERS.replace("2026-11-20T11:00:00+08:00", "2026-03-08 02:30")
    _, bad = split(write(tmp_path, gap, "e.csv"), kind="order", timezone=ZoneInfo("US/Eastern"))
    assert "does not exist in US/Eastern (a daylight-saving gap)" in bad[0].reason


def test_one_bad_line_refuses_its_whole_order_and_nothing_else(tmp_path: Path) -> None:
    text = ORDERS.replace("SKU-2,1,5.00", "SKU-2,-1,5.00")
    path = write(tmp_path, text)
    good, bad = split(path, kind="order")
    assert [source for source, _ in good] == [f"{path}:4"]
    assert [r.line for r in bad] == [2, 3]
    assert bad[0].reason == bad[1].reason
    assert "lines.1.quantity: Input should be greater than 0" in bad[0].reason
    assert "(order of lines 2, 3, refused whole)" in bad[0].reason


def test_ad_spend_and_inventory_rows_by_type_column(tmp_path: Path) -> None:
    text = (
        "type,platform,marketplace,store_id,campaign_id,sku,interval_start,interval_end,"
        "impressions,clicks,spend,attributed_sales,currency,attributed_orders,warehouse,"
        "available,inbound,as_of\n"
        "ad_spend,amazon,JP,jp-1,c-1,SKU-1,2026-11-20T10:00+09:00,2026-11-20T11:00+09:00,"
        "900,12,480,2980,JPY,1,,,,\n"
        "inventory,amazon,JP,jp-1,,SKU-1,,,,,,,,,fba,40,100,2026-11-20T11:00+09:00\n"
        "refund,amazon,JP,jp-1,,,,,,,,,,,,,,\n"
    )
    good, bad = split(write(tmp_path, text, "mixed.csv"))
    ad, stock = good[0][1], good[1][1]
    assert isinstance(ad, AdSpendEvent)
    assert isinstance(stock, InventoryEvent)
    assert ad.spend.amount == Decimal(480)
    assert ad.occurred_at == ad.interval_end
    assert (stock.available, stock.inbound, stock.reserved) == (40, 100, 0)
    assert bad[0].reason == "type 'refund' is not one of order, ad_spend, inventory"


def test_undecodable_bytes_reject_their_row_with_a_hint(tmp_path: Path) -> None:
    text = ORDERS.replace("SKU-2", "商品-2")
    path = write(tmp_path, text, encoding="gb18030")
    good, bad = split(path, kind="order")
    assert [r.line for r in bad] == [2, 3]
    assert len(good) == 1
    assert "not valid in the file's encoding (GB18030? use --encoding)" in bad[0].reason
    good, bad = split(path, kind="order", encoding="gb18030")
    assert not bad
    assert good[0][1].lines[1].sku == "商品-2"


def test_json_lines_keep_their_bytes_and_bad_lines_are_rejected(tmp_path: Path) -> None:
    good_line = json.dumps(
        {
            "type": "inventory",
            "event_id": "i-1",
            "occurred_at": "2026-11-20T00:00:00Z",
            "platform": "amazon",
            "marketplace": "US",
            "store_id": "us-1",
            "sku": "A",
            "warehouse": "fba",
            "available": 3,
            "as_of": "2026-11-20T00:00:00Z",
        }
    ).encode()
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"{broken\n\n" + good_line + b"\n")
    items = list(read_events_file(path))
    assert isinstance(items[0], RejectedRow)
    assert items[0].fields == {"raw": "{broken"}
    assert isinstance(items[1], RawRecord)
    assert items[1].value == good_line
    assert items[1].source == f"{path}:3"
    assert decode(items[1].value, "x").event_id == "i-1"


def test_replay_of_a_csv_writes_a_rejects_report_that_reimports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = ORDERS.replace(",A-2,placed,SKU-1,1,19.99", ",A-2,placed,SKU-1,1,19,99")
    path = write(tmp_path, text.replace(",", ";").replace("19;99", "19,99"))
    report = tmp_path / "rejects.csv"
    argv = ["replay", str(path), "--kind", "order", "--rejects", str(report)]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert f"rejected {path}:4: unit_price '19,99' has a comma" in err
    assert "kpiwatch replay: 1 events, 1 rejected, 0 alerts" in err
    raw = report.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines(), delimiter=";"))
    assert rows[0] == ["rejected_line", "rejected_reason", *ORDER_HEADER.split(",")]
    assert rows[1][0] == "4"
    assert rows[1][10] == "19,99"
    report.write_text(raw.decode("utf-8-sig").replace("19,99", "19.99"), encoding="utf-8-sig")
    assert cli.main(["kpis", str(report), "--kind", "order", "--window", "7d"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["native"]["gmv"] == "19.99"
    assert "1 events, 0 rejected" in err


def test_progress_with_verbose(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inputs, "PROGRESS_EVERY", 1)
    caplog.set_level(logging.INFO, logger="kpiwatch")
    path = write(tmp_path, ORDERS)
    rules = str(Path(__file__).parents[3] / "rules" / "library" / "default.yaml")
    argv = ["-v", "rules", "test", rules, "--events", str(path), "--kind", "order"]
    assert cli.main(argv) == 0
    assert f"{path}: 2 records read, 0 rejected" in caplog.messages


def test_bad_options_are_refused_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, ORDERS)
    mapping = tmp_path / "map.yaml"
    mapping.write_text("订单号: order_number\n", encoding="utf-8")
    assert cli.main(["replay", str(path), "--kind", "order", "--columns", str(mapping)]) == 1
    assert "order_number: not a field name" in capsys.readouterr().err
    assert cli.main(["replay", str(path), "--kind", "order", "--timezone", "Mars/Base"]) == 1
    assert "--timezone 'Mars/Base' is not a time zone" in capsys.readouterr().err
