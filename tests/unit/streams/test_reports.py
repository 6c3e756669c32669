"""`kpiwatch report`: the workbook read back and compared with `kpiwatch kpis`, the HTML and
PDF rendered and looked into, the alerts of the period with their time to resolve."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from connectors.simulator import simulate
from rules.alerts import Alert
from streams.cli import main
from streams.events import encode
from streams.reports.build import _alert_lines, previous_day

openpyxl = pytest.importorskip("openpyxl")
pdfium = pytest.importorskip("pypdfium2")
Image = pytest.importorskip("PIL.Image")

DAY = "2026-11-24"
TEAM = "marketplace-ops"
TEAMS = (
    "platform,marketplace,store,team\n"
    "amazon,US,amazon-us-01,marketplace-ops\namazon,JP,amazon-jp-02,marketplace-ops\n"
    "shopee,MY,shopee-my-03,advertising\n"
)
FX = "date,currency,rate\n2026-10-01,JPY,0.0066\n2026-10-01,MYR,0.22\n"
TARGETS = (
    "month,level,platform,marketplace,store,team,amount,currency\n"
    "2026-11,team,,,,marketplace-ops,45000,USD\n"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    start = datetime(2026, 11, 11, tzinfo=UTC)
    events = simulate(start, hours=14 * 24, stores=3, seed=7)
    (folder / "events.jsonl").write_bytes(b"\n".join(encode(e) for e in events) + b"\n")
    (folder / "teams.csv").write_text(TEAMS, encoding="utf-8")
    (folder / "fx.csv").write_text(FX, encoding="utf-8")
    (folder / "targets.csv").write_text(TARGETS, encoding="utf-8")
    return folder


def reference_args(files: Path) -> list[str]:
    return ["--teams", str(files / "teams.csv"), "--fx", str(files / "fx.csv"),
            "--targets", str(files / "targets.csv")]  # fmt: skip


def report(files: Path, out: Path, period: str = "week") -> Path:
    argv = ["report", str(files / "events.jsonl"), "--team", TEAM, "--period", period,
            "--day", DAY, "--out", str(out), *reference_args(files)]  # fmt: skip
    assert main(argv) == 0
    return out


def kpis(files: Path, capsys: pytest.CaptureFixture[str], window: str, day: str) -> dict[str, Any]:
    capsys.readouterr()
    argv = ["kpis", str(files / "events.jsonl"), "--by", "team", "--window", window,
            "--day", day, *reference_args(files)]  # fmt: skip
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    values: dict[str, Any] = next(r["values"] for r in rows if r["scope"]["team"] == TEAM)
    return values


def sheet_rows(sheet: Any) -> dict[str, list[Any]]:
    return {row[0].value: row for row in sheet.iter_rows(min_row=2) if row[0].value}


def test_the_workbook_holds_the_numbers_kpiwatch_kpis_prints(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = openpyxl.load_workbook(report(files, tmp_path / "week.xlsx"))
    assert book.sheetnames == [
        "Summary", "KPIs", "Scorecard", "Movers SKUs GMV", "Movers campaigns ad sales",
        "Alerts", "Per day", "Charts",
    ]  # fmt: skip
    week = kpis(files, capsys, "7d", DAY)
    before = kpis(files, capsys, "7d", str(previous_day("week", date.fromisoformat(DAY))))
    rows = sheet_rows(book["KPIs"])
    for name in ("gmv", "orders", "units", "aov", "ad_spend", "ad_sales", "acos", "cancel_rate"):
        value, previous = rows[name][1], rows[name][2]
        assert value.data_type == "n", f"{name} is written as a number, not text"
        assert value.value == pytest.approx(float(Decimal(week[name])), rel=1e-12)
        assert previous.value == pytest.approx(float(Decimal(before[name])), rel=1e-12)
    assert rows["gmv"][1].number_format == "#,##0.00"
    assert rows["acos"][1].number_format == "0.00%"
    assert rows["orders"][1].number_format == "#,##0"
    # Each day of the week, as `kpiwatch kpis --window 1d --day` gives it.
    days = {k: v for k, v in sheet_rows(book["Per day"]).items() if isinstance(k, datetime)}
    assert len(days) == 7
    for stamp, row in sorted(days.items())[::6]:  # the first and the last day
        day = stamp.date()
        assert row[0].number_format == "yyyy-mm-dd"
        gmv = kpis(files, capsys, "1d", day.isoformat())["gmv"]
        assert row[1].value == pytest.approx(float(Decimal(gmv)), rel=1e-12)
    assert len(book["Charts"]._images) == 2


def test_alert_times_are_excel_times_and_durations(files: Path, tmp_path: Path) -> None:
    book = openpyxl.load_workbook(report(files, tmp_path / "week.xlsx"))
    rows = list(book["Alerts"].iter_rows(min_row=2, values_only=True))
    resolved = [r for r in rows if isinstance(r[5], timedelta)]
    assert resolved, "the simulated fortnight has alerts that fire and resolve"
    for rule, _severity, _scope, fired, ended, took in resolved:
        assert isinstance(fired, datetime), rule
        assert isinstance(ended, datetime), rule
        assert ended - fired == took


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.headings: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        self._in = tag

    def handle_data(self, data: str) -> None:
        if self._in == "h2":
            self.headings.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def test_the_html_report_stands_alone_with_its_charts_inline(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = _Page()
    page.feed(report(files, tmp_path / "week.html").read_text(encoding="utf-8"))
    assert page.headings == [
        "KPIs", "Scorecard", "Top movers: SKUs (GMV)", "Top movers: campaigns (ad sales)",
        "Alerts", "Per day", "Charts",
    ]  # fmt: skip
    assert len(page.images) == 2
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :]))) as png:
            png.save(tmp_path / f"chart-{page.images.index(src)}.png")
            assert png.format == "PNG"
            assert png.size == (825, 352)
    gmv = Decimal(kpis(files, capsys, "7d", DAY)["gmv"])
    assert f"{gmv:,.2f}" in (tmp_path / "week.html").read_text(encoding="utf-8")


def test_the_pdf_renders_and_reads_as_the_report(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    document = pdfium.PdfDocument(report(files, tmp_path / "month.pdf", "month"))
    request.addfinalizer(document.close)
    assert len(document) >= 2
    words = ""
    for number, page in enumerate(document):
        bitmap = page.render(scale=1).to_pil()
        bitmap.save(tmp_path / f"page-{number}.png")
        assert bitmap.getextrema() != ((255, 255), (255, 255), (255, 255)), "a blank page"
        words += page.get_textpage().get_text_range()
    for heading in ("KPIs", "Scorecard", "Top movers", "Alerts", "Per day", "ACoS trend"):
        assert heading in words
    gmv = Decimal(kpis(files, capsys, "mtd", DAY)["gmv"])
    assert f"{gmv:,.2f}" in words


def test_markdown_links_its_charts_written_beside_it(files: Path, tmp_path: Path) -> None:
    text = report(files, tmp_path / "day.md", "day").read_text(encoding="utf-8")
    assert text.startswith(f"# {TEAM}: day report, {DAY}\n")
    assert "![GMV per day vs target](day-gmv.png)" in text
    with Image.open(tmp_path / "day-acos.png") as png:
        assert png.format == "PNG"


def test_binary_formats_need_a_file(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["report", str(files / "events.jsonl"), "--team", TEAM, "--format", "xlsx"]
    assert main(argv) == 1
    assert "give --out FILE" in capsys.readouterr().err


def test_an_unknown_team_is_named(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["report", str(files / "events.jsonl"), "--team", "nobody", *reference_args(files)]
    assert main(argv) == 1
    assert "team 'nobody' owns no store" in capsys.readouterr().err


def alert(status: str, at: str, started: str | None = None, store: str = "us-1") -> Alert:
    return Alert(
        rule="acos-high", severity="warning", status=status,  # type: ignore[arg-type]
        labels={"platform": "amazon", "marketplace": "US", "store": store},
        value=None, threshold="> 35%", window_start=None, window_end=None,
        at=datetime.fromisoformat(at), kpi="acos", fingerprint=f"fp-{store}", summary="ACoS",
        started_at=datetime.fromisoformat(started) if started else None,
    )  # fmt: skip


def test_time_to_resolve_is_from_the_episode_start_to_its_resolve() -> None:
    period = {
        "window_start": "2026-11-24T00:00:00+00:00",
        "window_end": "2026-11-25T00:00:00+00:00",
    }
    stores = {("amazon", "US", "us-1")}
    alerts = [
        alert("firing", "2026-11-23T22:00:00+00:00", "2026-11-23T22:00:00+00:00"),
        alert("firing", "2026-11-24T01:00:00+00:00", "2026-11-23T22:00:00+00:00"),  # a repeat
        alert("resolved", "2026-11-24T02:30:00+00:00"),
        alert("firing", "2026-11-24T05:00:00+00:00", "2026-11-24T05:00:00+00:00"),
        alert("firing", "2026-11-24T06:00:00+00:00", store="other"),  # not the team's
        alert("firing", "2026-11-22T06:00:00+00:00", store="us-1").model_copy(
            update={"fingerprint": "old"}
        ),
        alert("resolved", "2026-11-22T07:00:00+00:00").model_copy(update={"fingerprint": "old"}),
    ]
    lines = _alert_lines(alerts, stores, "ops", period)
    assert [(line.fired_at.hour, line.time_to_resolve) for line in lines if line.fired_at] == [
        (22, timedelta(hours=4, minutes=30)),
        (5, None),
    ]


def test_a_real_browser_draws_the_html_report_with_its_charts(files: Path, tmp_path: Path) -> None:
    """Headless Chromium's screenshot of the page: tables on top, the two charts below (the
    inline PNGs decoded and drawn, not broken-image boxes). Skipped without Chromium."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    page = report(files, tmp_path / "week.html")
    shot = tmp_path / "week-html.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1000,3600", f"--screenshot={shot}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    with Image.open(shot) as image:
        rgb = image.convert("RGB")
        # The GMV bars' green (#2e7d32) and the ACoS line's orange (#ef6c00) are on the page.
        colours = {colour for _, colour in rgb.getcolors(maxcolors=1 << 20) or []}
    assert (0x2E, 0x7D, 0x32) in colours
    assert (0xEF, 0x6C, 0x00) in colours
