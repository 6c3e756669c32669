"""Event files: JSON lines (our wire format) and CSV exports from a seller's ERP or marketplace
reports, read through one entry point, `read_events_file`, that every CLI command shares.

Each valid event comes out as a RawRecord (`path:line`, the JSON the engine decodes); each bad
one as a RejectedRow naming the line the record starts on, the reason, and the row's original
fields, so a seller can fix the rows in Excel and import them again.

CSV, one row per order LINE: consecutive rows with the same platform, marketplace, store_id,
order_id, status and occurred_at make one OrderEvent; if one of its rows is bad, the whole order
is refused (all its rows are reported), because a partial order imported now would keep its
corrected rows out later (same event_id). Columns carry our field names unless a map names the
export's own headers (`--columns`); a `type` column or `kind` says what each row is.

What real exports bring, and what is done about it. Sources: the `csv` module docs
(https://docs.python.org/3/library/csv.html: open with newline="", `line_num`); Excel reads a
CSV as UTF-8 only when it starts with the bytes EF BB BF (SAP wiki "Excel files - CSV format",
donatstudios.com "CSV: An Encoding Nightmare"), so the rejects report is written with that
mark. Not verified from a primary source: that Excel writes `;` where the list separator is
`;` (locales with a decimal comma), a widely reported habit.
- a UTF-8 byte order mark (Excel's "CSV UTF-8"): read with `utf-8-sig`; other encodings
  (GB18030 from a Chinese ERP) with `encoding`; undecodable bytes reject their row only;
- `;`, tab or `|` delimiters: the most frequent in the header line unless given; quoted fields
  with newlines, blank lines: the csv module, and the reported line is where the row starts;
- timestamps without a zone: refused, unless `timezone` says which local time they are in
  (a time that does not exist there, in a daylight-saving gap, is refused);
- money: Decimal from the text, never float; a comma in an amount is refused, since 1,250
  could be 1250 or 1.25.

event_id, when the file has none, is derived from the record's identity and content
(`csv:order:<store>:<order_id>:<status>:<occurred_at UTC>:<digest>`), never from its line: the
same export imported twice gives the same ids and the engine counts it once, and a corrected
row gets a new id, whose figures replace the old ones (the engine keeps one contribution per
order and per ad interval).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from rules.errors import InvalidEventError, KpiwatchError
from streams.events import EventKind, RawRecord, decode, encode

FileFormat = Literal["jsonl", "csv"]
KINDS: Final[tuple[EventKind, ...]] = ("order", "ad_spend", "inventory")
DELIMITERS: Final = (",", ";", "\t", "|")
REQUIRED: Final[dict[EventKind, tuple[str, ...]]] = {
    "order": (
        "occurred_at",
        "platform",
        "marketplace",
        "store_id",
        "order_id",
        "status",
        "sku",
        "quantity",
        "unit_price",
        "currency",
    ),
    "ad_spend": (
        "platform",
        "marketplace",
        "store_id",
        "campaign_id",
        "interval_start",
        "interval_end",
        "impressions",
        "clicks",
        "spend",
        "attributed_sales",
        "currency",
        "attributed_orders",
    ),
    "inventory": ("platform", "marketplace", "store_id", "sku", "warehouse", "available", "as_of"),
}
OPTIONAL: Final[dict[EventKind, tuple[str, ...]]] = {
    # placed_at: when the order was created, where an export has it beside its last update
    # (occurred_at): the order counts in that hour and day.
    "order": ("event_id", "fulfillment_channel", "is_test", "ship_by", "shipped_at", "placed_at"),
    "ad_spend": ("event_id", "occurred_at", "sku"),
    "inventory": ("event_id", "occurred_at", "inbound", "reserved"),
}
# Every name a column may carry (the targets of a `--columns` map).
FIELDS: Final = tuple(
    sorted({"type", *(n for names in (*REQUIRED.values(), *OPTIONAL.values()) for n in names)})
)
TIMES: Final = frozenset(
    {"occurred_at", "interval_start", "interval_end", "as_of", "ship_by", "shipped_at", "placed_at"}
)
MONEY: Final = frozenset({"unit_price", "spend", "attributed_sales"})
COUNTS: Final = frozenset(
    {"quantity", "impressions", "clicks", "attributed_orders", "available", "inbound", "reserved"}
)
TRUE, FALSE = frozenset({"true", "1", "yes", "y", "t"}), frozenset({"false", "0", "no", "n", "f"})


@dataclass(frozen=True)
class FileOptions:
    """How to read an event file; the defaults read our own JSON lines or CSV."""

    format: FileFormat | None = None  # None: .csv is CSV, anything else JSON lines
    kind: EventKind | None = None  # None: a `type` column (CSV) or field (JSON) says
    columns: Mapping[str, str] = field(default_factory=dict)  # export header -> our field
    delimiter: str | None = None  # None: the most frequent of DELIMITERS in the header
    timezone: ZoneInfo | None = None  # local time of timestamps written without a zone
    encoding: str = "utf-8-sig"


class RejectedRow(InvalidEventError):
    """A record of a file that is not a valid event: `line` where it starts, its original
    fields (header -> text, or `raw` for a JSON line)."""

    def __init__(self, path: Path, line: int, reason: str, fields: Mapping[str, str]) -> None:
        super().__init__(f"{path}:{line}", reason)
        self.line = line
        self.fields = dict(fields)


def read_jsonl(path: Path, kind: EventKind | None = None) -> Iterator[RawRecord]:
    """One RawRecord per non-blank line, its source `path:line`; decoding is the caller's job."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield RawRecord(source=f"{path}:{number}", value=line.rstrip(b"\r\n"), kind=kind)


def read_events_file(
    path: Path, options: FileOptions | None = None
) -> Iterator[RawRecord | RejectedRow]:
    """Every record of an event file, valid ones as RawRecord, bad ones as RejectedRow.

    Raises KpiwatchError when the file as a whole cannot be read (no such file, a header
    without a column the events need)."""
    options = options or FileOptions()
    if not path.is_file():
        raise KpiwatchError(f"{path}: no such file")
    fmt = options.format or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    if fmt == "csv":
        return _csv_records(path, options)
    return _checked_jsonl(path, options.kind)


def _checked_jsonl(path: Path, kind: EventKind | None) -> Iterator[RawRecord | RejectedRow]:
    for record in read_jsonl(path, kind):
        try:
            record.decode()
        except InvalidEventError as exc:
            line = int(record.source.rsplit(":", 1)[1])
            raw = record.value.decode("utf-8", errors="replace")
            yield RejectedRow(path, line, exc.reason, {"raw": raw})
            continue
        yield record


# ---------------------------------------------------------------- CSV rows


@dataclass(frozen=True)
class _Row:
    line: int
    original: dict[str, str]  # export header -> text, as in the file
    values: dict[str, str]  # our field -> text (stripped; empty cells left out)
    kind: EventKind | None
    problem: str | None = None


def _csv_records(path: Path, options: FileOptions) -> Iterator[RawRecord | RejectedRow]:
    with path.open(encoding=options.encoding, errors="surrogateescape", newline="") as handle:
        rows = _rows(path, handle, options)
        for _, group in itertools.groupby(rows, key=_group_key):
            yield from _event(path, list(group), options)


def _rows(path: Path, handle: Any, options: FileOptions) -> Iterator[_Row]:
    lines = _skip_blank_head(handle)
    header_line = next(lines, None)
    if header_line is None:
        return
    number, first = header_line
    delimiter = options.delimiter or _sniff(first)
    header = next(csv.reader([first], delimiter=delimiter))
    names = [options.columns.get(h.strip(), h.strip()) for h in header]
    _check_header(path, names, options.kind)
    reader = csv.reader(_rest(handle), delimiter=delimiter)
    start = number
    for cells in reader:
        line = start + 1
        start = number + reader.line_num
        if any(cell.strip() for cell in cells):
            yield _row(line, header, names, cells, options.kind)


def _skip_blank_head(handle: Any) -> Iterator[tuple[int, str]]:
    for number, text in enumerate(handle, start=1):
        if text.strip():
            yield number, text
            return


def sniff_file(path: Path, encoding: str = "utf-8-sig") -> str:
    """The delimiter of a CSV file, read from its header line (`,` for an empty file)."""
    with path.open(encoding=encoding, errors="surrogateescape", newline="") as handle:
        first = next(_skip_blank_head(handle), None)
    return _sniff(first[1]) if first else ","


def _rest(handle: Any) -> Iterator[str]:
    yield from handle


def _sniff(header: str) -> str:
    """The delimiter the header line uses most (Excel writes `;` where the decimal is `,`)."""
    return max(DELIMITERS, key=header.count)


def _check_header(path: Path, names: Sequence[str], kind: EventKind | None) -> None:
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        # Two columns for one field (an export's "Order date" and "Last update" both mapped
        # to occurred_at): one would silently win on every row.
        raise KpiwatchError(
            f"{path}: more than one column for {', '.join(repeated)}; keep one, or map the "
            "other to another field with --columns (e.g. the creation date to placed_at)"
        )
    if kind is None and "type" not in names:
        raise KpiwatchError(
            f"{path}: say what the rows are: a `type` column, or --kind order|ad_spend|inventory"
        )
    if kind is None:
        return
    missing = [name for name in REQUIRED[kind] if name not in names]
    if missing:
        raise KpiwatchError(
            f"{path}: no column for {', '.join(missing)} (columns: {', '.join(names)}); "
            "map the export's own names to ours with --columns"
        )


def _row(
    line: int, header: list[str], names: list[str], cells: list[str], kind: EventKind | None
) -> _Row:
    original = {h: cells[i] if i < len(cells) else "" for i, h in enumerate(header)}
    values = {n: c.strip() for n, c in zip(names, cells, strict=False) if c.strip()}
    problem = None
    if len(cells) > len(header):
        problem = f"{len(cells)} cells, but the header has {len(header)} columns"
    elif any("\udc80" <= ch <= "\udcff" for cell in cells for ch in cell):
        problem = "bytes that are not valid in the file's encoding (GB18030? use --encoding)"
    row_kind = kind or _kind(values.get("type", ""))
    if row_kind is None and problem is None:
        problem = f"type {values.get('type', '')!r} is not one of {', '.join(KINDS)}"
    return _Row(line, original, values, row_kind, problem)


def _kind(text: str) -> EventKind | None:
    for kind in KINDS:
        if text == kind:
            return kind
    return None


def _group_key(row: _Row) -> tuple[str, ...]:
    """Rows of one order share this key; every other row is a group of its own."""
    if row.kind != "order":
        return ("row", str(row.line))
    identity = ("platform", "marketplace", "store_id", "order_id", "status", "occurred_at")
    return ("order", *(row.values.get(name, "") for name in identity))


# ---------------------------------------------------------------- rows to events


def _event(path: Path, rows: list[_Row], options: FileOptions) -> Iterator[RawRecord | RejectedRow]:
    try:
        data = _build(rows, options)
        event = decode(json.dumps(data), f"{path}:{rows[0].line}")
    except InvalidEventError as exc:
        yield from _reject(path, rows, exc.reason)
        return
    yield RawRecord(source=f"{path}:{rows[0].line}", value=encode(event), kind=event.type)


def _reject(path: Path, rows: list[_Row], reason: str) -> Iterator[RejectedRow]:
    lines = ", ".join(str(row.line) for row in rows)
    why = reason if len(rows) == 1 else f"{reason} (order of lines {lines}, refused whole)"
    for row in rows:
        yield RejectedRow(path, row.line, why, row.original)


def _build(rows: list[_Row], options: FileOptions) -> dict[str, Any]:
    """The event as JSON-able data, from the rows of one record; InvalidEventError if a row
    is bad (source filled in by the caller)."""
    for row in rows:
        if row.problem is not None:
            raise InvalidEventError("", _at(rows, row, row.problem))
    first = rows[0]
    kind = first.kind or "order"
    fields = {
        name: _value(name, text, options.timezone)
        for name, text in first.values.items()
        if name in REQUIRED[kind] or name in OPTIONAL[kind]
    }
    for name in REQUIRED[kind]:
        if name not in fields:
            raise InvalidEventError("", f"{name} is empty")
    data = _shape(kind, fields, rows, options)
    data.setdefault("event_id", _event_id(kind, data))
    return data


def _at(rows: list[_Row], row: _Row, reason: str) -> str:
    return reason if len(rows) == 1 else f"line {row.line}: {reason}"


def _value(name: str, text: str, zone: ZoneInfo | None) -> Any:
    try:
        if name in TIMES:
            return _time(name, text, zone).isoformat()
        if name in MONEY:
            return str(_amount(name, text))
        if name in COUNTS:
            return _count(name, text)
        if name == "is_test":
            return _flag(text)
    except ValueError as exc:
        raise InvalidEventError("", str(exc)) from exc
    return text


def _time(name: str, text: str, zone: ZoneInfo | None) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("/", "-"))
    except ValueError:
        raise ValueError(
            f"{name} {text!r} is not a date and time (2026-11-20T10:00:00+08:00)"
        ) from None
    if moment.tzinfo is not None:
        return moment
    if zone is None:
        raise ValueError(
            f"{name} {text!r} has no time zone: write the offset (+08:00) or say which local "
            "time the file is in with --timezone Area/City"
        )
    local = moment.replace(tzinfo=zone)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment:
        raise ValueError(f"{name} {text!r} does not exist in {zone.key} (a daylight-saving gap)")
    return local


def _amount(name: str, text: str) -> Decimal:
    if "," in text:
        raise ValueError(
            f"{name} {text!r} has a comma: write plain digits with a point for decimals "
            "(1250.00, 12.50); a comma could mean either"
        )
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{name} {text!r} is not a plain number (12.50)") from None
    if not amount.is_finite():
        raise ValueError(f"{name} {text!r} is not a plain number (12.50)")
    return amount


def _count(name: str, text: str) -> int:
    amount = _amount(name, text)
    if amount != amount.to_integral_value():
        raise ValueError(f"{name} {text!r} is not a whole number")
    return int(amount)


def _flag(text: str) -> bool:
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise ValueError(f"is_test {text!r} is not true or false")


def _shape(
    kind: EventKind, fields: dict[str, Any], rows: list[_Row], options: FileOptions
) -> dict[str, Any]:
    data = {"type": kind, **fields}
    currency = data.pop("currency", None)
    if kind == "order":
        data.pop("sku"), data.pop("quantity"), data.pop("unit_price")
        data["lines"] = [_line(row, options, len(rows)) for row in rows]
    elif kind == "ad_spend":
        data.setdefault("occurred_at", data["interval_end"])
        for name in ("spend", "attributed_sales"):
            data[name] = {"amount": data[name], "currency": currency}
    else:
        data.setdefault("occurred_at", data["as_of"])
    return data


def _line(row: _Row, options: FileOptions, count: int) -> dict[str, Any]:
    values = row.values
    try:
        for name in ("sku", "quantity", "unit_price", "currency"):
            if name not in values:
                raise ValueError(f"{name} is empty")
        return {
            "sku": values["sku"],
            "quantity": _count("quantity", values["quantity"]),
            "unit_price": {
                "amount": str(_amount("unit_price", values["unit_price"])),
                "currency": values["currency"],
            },
        }
    except ValueError as exc:
        raise InvalidEventError("", f"line {row.line}: {exc}" if count > 1 else str(exc)) from exc


def _event_id(kind: EventKind, data: dict[str, Any]) -> str:
    """The record's identity, readable, plus a digest of everything in it."""
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    at = datetime.fromisoformat(data["occurred_at"]).astimezone(UTC).isoformat()
    if kind == "order":
        parts = ["order", data["store_id"], data["order_id"], data["status"], at]
    elif kind == "ad_spend":
        start = datetime.fromisoformat(data["interval_start"]).astimezone(UTC).isoformat()
        parts = ["ad", data["store_id"], data["campaign_id"], data.get("sku") or "", start]
    else:
        parts = ["stock", data["store_id"], data["sku"], data["warehouse"], at]
    readable = ":".join(["csv", *parts, digest[:12]])
    return readable if len(readable) <= 200 else f"csv:{kind}:{digest}"


# ---------------------------------------------------------------- the rejects report


class RejectsReport:
    """The rejected rows as a CSV a seller opens in Excel, fixes and imports again: the line
    and reason first, then the row's own columns (extra columns are ignored on import)."""

    def __init__(self, path: Path, delimiter: str = ",") -> None:
        # utf-8-sig: Excel reads a CSV as UTF-8 (Chinese headers and SKUs) only with the mark.
        self._handle = path.open("w", encoding="utf-8-sig", newline="")
        self._delimiter = delimiter
        self._writer: csv.DictWriter[str] | None = None
        self.count = 0

    def write(self, error: InvalidEventError) -> None:
        fields = error.fields if isinstance(error, RejectedRow) else {}
        line = error.line if isinstance(error, RejectedRow) else _line_of(error.source)
        if self._writer is None:
            columns = ["rejected_line", "rejected_reason", *fields]
            self._writer = csv.DictWriter(
                self._handle, columns, delimiter=self._delimiter, extrasaction="ignore"
            )
            self._writer.writeheader()
        self._writer.writerow({"rejected_line": line, "rejected_reason": error.reason, **fields})
        self.count += 1

    def close(self) -> None:
        self._handle.close()


def _line_of(source: str) -> str:
    return source.rsplit(":", 1)[-1]
