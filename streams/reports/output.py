"""One entry point for every format: the report's bytes, and the files that go with it."""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from streams.reports.build import Report
from streams.reports.charts import charts

Format = Literal["md", "html", "xlsx", "pdf"]
FORMATS: Final[tuple[Format, ...]] = ("md", "html", "xlsx", "pdf")
SUFFIXES: Final[dict[str, Format]] = {
    ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".xlsx": "xlsx", ".pdf": "pdf",
}  # fmt: skip


def require() -> None:
    """Refuse early, in words, when the `reports` extra is not installed."""
    import importlib.util

    missing = [m for m in ("matplotlib", "openpyxl", "fpdf") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"reports need {', '.join(missing)}: pip install 'kpiwatch[reports]'")


def render(report: Report, fmt: Format, out: Path | None = None) -> dict[Path | None, bytes]:
    """The files to write: the report itself under `out` (None: standard output), and for
    Markdown written to a file its chart images beside it (`NAME-gmv.png`, linked relatively)."""
    pngs = charts(report)
    if fmt == "md":
        from streams.reports.render import markdown

        if out is None:
            return {None: markdown(report).encode()}
        files: dict[Path | None, bytes] = {}
        images = {}
        for name, png in pngs.items():
            path = out.with_name(f"{out.stem}-{name}.png")
            files[path] = png
            images[name] = path.name
        files[out] = markdown(report, images).encode()
        return files
    if fmt == "html":
        from streams.reports.render import html_report

        return {out: html_report(report, pngs).encode()}
    if fmt == "xlsx":
        from streams.reports.workbook import workbook

        return {out: workbook(report, pngs)}
    from streams.reports.pdf import pdf_report

    return {out: pdf_report(report, pngs)}


def format_for(out: Path | None, given: str | None) -> Format:
    if given is not None:
        return next(f for f in FORMATS if f == given)
    if out is not None and out.suffix.lower() in SUFFIXES:
        return SUFFIXES[out.suffix.lower()]
    return "md"
