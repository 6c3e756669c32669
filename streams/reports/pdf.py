"""A report as PDF (fpdf2: pure Python), A4 landscape: the tables, then the charts.

The font is the DejaVu Sans that matplotlib ships, so names outside Latin-1 print (CJK needs
a CJK font: KPIWATCH_REPORT_FONT may name one)."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from streams.reports.build import Report
from streams.reports.render import CHART_TITLES
from streams.reports.tables import Table, tables, text

if TYPE_CHECKING:
    from fpdf import FPDF

_NUMERIC = frozenset({"money", "ratio", "count", "number", "change", "duration"})


def _fonts() -> tuple[Path, Path]:
    """Regular and bold (table headings); one font for both when KPIWATCH_REPORT_FONT names it."""
    chosen = os.environ.get("KPIWATCH_REPORT_FONT")
    if chosen:
        return Path(chosen), Path(chosen)
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"


def pdf_report(report: Report, charts: Mapping[str, bytes]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(orientation="landscape", format="A4")
    pdf.set_creator("kpiwatch")
    pdf.set_title(report.title)
    regular, bold = _fonts()
    pdf.add_font("body", "", str(regular))
    pdf.add_font("body", "B", str(bold))
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_font("body", size=16)
    pdf.cell(text=report.title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("body", size=9)
    pdf.multi_cell(0, 5, f"Stores: {', '.join(report.stores)}", new_x="LMARGIN", new_y="NEXT")
    for table in tables(report):
        _table(pdf, table)
    for name, png in charts.items():
        if pdf.get_y() > pdf.h - 90:
            pdf.add_page()
        pdf.ln(4)
        pdf.set_font("body", size=12)
        pdf.cell(text=CHART_TITLES.get(name, name), new_x="LMARGIN", new_y="NEXT")
        pdf.image(io.BytesIO(png), w=180)
    return bytes(pdf.output())


def _table(pdf: FPDF, table: Table) -> None:
    pdf.ln(3)
    pdf.set_font("body", size=12)
    pdf.cell(text=table.title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("body", size=8)
    if table.note:
        pdf.cell(text=table.note, new_x="LMARGIN", new_y="NEXT")
    if not table.rows:
        pdf.cell(text="(none)", new_x="LMARGIN", new_y="NEXT")
        return
    align = ["RIGHT" if c.kind in _NUMERIC else "LEFT" for c in table.rows[0]]
    with pdf.table(text_align=tuple(align), line_height=4.5, first_row_as_headings=True) as grid:
        grid.row(list(table.headers))
        for row in table.rows:
            grid.row([text(c) for c in row])
