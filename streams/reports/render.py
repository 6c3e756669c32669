"""A report as Markdown (chat robots, files) and as HTML (email: charts inline as data URIs)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping

from streams.reports.build import Report
from streams.reports.tables import Cell, Table, tables, text

CHART_TITLES = {"gmv": "GMV per day vs target", "acos": "ACoS trend"}
_NUMERIC = frozenset({"money", "ratio", "count", "number", "change", "duration"})


def markdown(report: Report, images: Mapping[str, str] | None = None) -> str:
    """Markdown; `images` maps a chart (`gmv`, `acos`) to a URL or relative path. Without it
    the charts are left out (a chat robot shows images by public URL only)."""
    out = [f"# {report.title}", "", f"Stores: {', '.join(report.stores)}", ""]
    for table in tables(report):
        out.extend(_md_table(table))
    if images:
        out.append("## Charts")
        out.append("")
        for name, url in images.items():
            out.append(f"![{CHART_TITLES.get(name, name)}]({url})")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def _md_table(table: Table) -> list[str]:
    lines = [f"## {table.title}", ""]
    if table.note:
        lines += [f"_{_md(table.note)}_", ""]
    if not table.rows:
        return [*lines, "(none)", ""]
    lines.append("| " + " | ".join(table.headers) + " |")
    lines.append("|" + "|".join(_md_align(c) for c in table.rows[0]) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_md(text(c)) for c in row) + " |")
    return [*lines, ""]


def _md_align(cell: Cell) -> str:
    return " ---: " if cell.kind in _NUMERIC else " --- "


def _md(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


_CSS = """
body{font-family:Arial,Helvetica,sans-serif;color:#1f1f1f;max-width:860px;margin:16px auto}
h1{font-size:20px}h2{font-size:16px;margin-top:22px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #ddd;padding:3px 8px}th{background:#f3f3f3;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#666;font-size:12px}.good{color:#2e7d32}.bad{color:#c62828}
.green{background:#e8f5e9}.yellow{background:#fff8e1}.red{background:#ffebee}
img{max-width:100%}
"""


def html_report(
    report: Report, charts: Mapping[str, bytes], sources: Mapping[str, str] | None = None
) -> str:
    """A whole HTML page that stands alone: the charts are PNG data URIs (or `sources[name]`,
    e.g. `cid:gmv` for an email's inline parts), the style inline."""
    body = [
        f"<h1>{_h(report.title)}</h1>",
        f"<p class='note'>Stores: {_h(', '.join(report.stores))}</p>",
    ]
    for table in tables(report):
        body.append(_html_table(table))
    if charts:
        body.append("<h2>Charts</h2>")
    for name, png in charts.items():
        src = (sources or {}).get(name) or "data:image/png;base64," + base64.b64encode(png).decode()
        alt = _h(CHART_TITLES.get(name, name))
        body.append(f"<p><img alt='{alt}' src='{_h(src)}'></p>")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{_h(report.title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _html_table(table: Table) -> str:
    parts = [f"<h2>{_h(table.title)}</h2>"]
    if table.note:
        parts.append(f"<p class='note'>{_h(table.note)}</p>")
    if not table.rows:
        return "\n".join([*parts, "<p>(none)</p>"])
    head = "".join(f"<th>{_h(h)}</th>" for h in table.headers)
    rows = ["<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in table.rows]
    parts.append(f"<table><tr>{head}</tr>\n" + "\n".join(rows) + "</table>")
    return "\n".join(parts)


def _html_cell(cell: Cell) -> str:
    classes = []
    if cell.kind in _NUMERIC:
        classes.append("n")
    if cell.kind == "change" and cell.value is not None and str(cell.value).strip("0.-"):
        rose = str(cell.value)[0] != "-"
        classes.append("good" if rose != cell.lower_is_better else "bad")
    if cell.value in ("green", "yellow", "red"):
        classes.append(str(cell.value))
    attr = f" class='{' '.join(classes)}'" if classes else ""
    return f"<td{attr}>{_h(text(cell))}</td>"


def _h(value: str) -> str:
    return html.escape(value, quote=True)
