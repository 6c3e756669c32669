"""A report as an Excel workbook (openpyxl): one sheet per section, numbers as numbers with
number formats, times as Excel dates (UTC), the charts on their own sheet."""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from streams.reports.build import Report
from streams.reports.tables import Cell, tables

FORMATS = {
    "money": "#,##0.00",
    "ratio": "0.00%",
    "change": "+0.0%;-0.0%;0.0%",
    "count": "#,##0",
    "number": "General",
    "datetime": "yyyy-mm-dd hh:mm",
    "day": "yyyy-mm-dd",
    "duration": "[h]:mm",
}


def workbook(report: Report, charts: Mapping[str, bytes]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.drawing.image import Image
    from openpyxl.styles import Font

    book = Workbook()
    summary = book.worksheets[0]
    summary.title = "Summary"
    summary.append([report.title])
    summary["A1"].font = Font(bold=True, size=14)
    summary.append(["team", report.team])
    summary.append(["period", report.period])
    summary.append(["first day", report.first_day])
    summary.append(["last day", report.day])
    summary.append(["currency", report.currency])
    summary.append(["stores", ", ".join(report.stores)])
    for line in (4, 5):
        summary.cell(line, 2).number_format = FORMATS["day"]
    summary.column_dimensions["A"].width = 14
    for table in tables(report):
        sheet = book.create_sheet(_sheet_name(table.title))
        sheet.append(list(table.headers))
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in table.rows:
            sheet.append([_value(c) for c in row])
            for column, cell in enumerate(row, 1):
                if cell.kind in FORMATS:
                    sheet.cell(sheet.max_row, column).number_format = FORMATS[cell.kind]
        if table.note:
            sheet.append([])
            sheet.append([table.note])
        for letter in "ABCDEFG":
            sheet.column_dimensions[letter].width = 18
    if charts:
        sheet = book.create_sheet("Charts")
        anchor = 1
        for png in charts.values():
            sheet.add_image(Image(io.BytesIO(png)), f"A{anchor}")
            anchor += 20
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _sheet_name(title: str) -> str:
    # Excel: at most 31 characters, no : \ / ? * [ ]
    cleaned = title.replace("Top movers: ", "Movers ").replace("(", "").replace(")", "")
    return "".join(ch for ch in cleaned if ch not in ":\\/?*[]")[:31]


def _value(cell: Cell) -> object:
    value = cell.value
    if isinstance(value, Decimal):
        return float(value)  # Excel holds doubles; the text formats show the precision kept
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)  # Excel has no zone: UTC, said so
    if isinstance(value, timedelta):
        return value
    return value
