"""What the commands read: event files (with their rejects), reference data, settings, rules."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rules.errors import InvalidEventError, KpiwatchError
from rules.load import RuleSet, load_default, load_paths
from streams.cli.options import FileArgs, KafkaArgs, ReferenceArgs
from streams.reference import Reference, load_reference
from streams.settings import Settings

if TYPE_CHECKING:
    from connectors.files import FileOptions
    from streams.events import RawRecord

log = logging.getLogger("kpiwatch")

PROGRESS_EVERY = 10_000  # records between progress lines with -v


def file_options(files: FileArgs) -> FileOptions:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from connectors.files import FileOptions

    zone = None
    if files.timezone:
        try:
            zone = ZoneInfo(files.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise KpiwatchError(f"--timezone {files.timezone!r} is not a time zone") from exc
    delimiter = {"\\t": "\t", "tab": "\t"}.get(files.delimiter or "", files.delimiter)
    return FileOptions(
        format=files.format,
        kind=files.kind,
        columns=_column_map(files.columns) if files.columns else {},
        delimiter=delimiter,
        timezone=zone,
        encoding=files.encoding,
    )


def _column_map(path: Path) -> dict[str, str]:
    """`{export name: our name}` from YAML (JSON is YAML too); every target must be ours."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from connectors.files import FIELDS

    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8-sig"))
    except (OSError, YAMLError) as exc:
        raise KpiwatchError(f"{path}: cannot read the column map: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise KpiwatchError(f"{path}: expected a mapping of export column -> our field name")
    unknown = sorted(v for v in data.values() if v not in FIELDS)
    if unknown:
        raise KpiwatchError(
            f"{path}: {', '.join(unknown)}: not a field name; use one of {', '.join(FIELDS)}"
        )
    return {str(k).strip(): v for k, v in data.items()}


class EventFile:
    """An event file being read: its valid records, and every rejected one on stderr, in the
    --rejects CSV and the --dead-letter file."""

    def __init__(self, path: Path, files: FileArgs, dead_letter: Path | None = None) -> None:
        from connectors.files import RejectsReport

        self.path = path
        self.options = file_options(files)
        self.count = 0
        report = files.rejects
        delimiter = _report_delimiter(path, files, self.options) if report else ","
        self._report = RejectsReport(report, delimiter) if report else None
        self._dead = dead_letter.open("w", encoding="utf-8") if dead_letter else None

    def __call__(self, exc: InvalidEventError) -> None:
        self.count += 1
        print(f"rejected {exc}", file=sys.stderr)
        if self._report is not None:
            self._report.write(exc)
        if self._dead is not None:
            self._dead.write(json.dumps({"source": exc.source, "reason": exc.reason}) + "\n")

    def records(self) -> Iterator[RawRecord]:
        """The valid records of the file; rejected ones go to `self`; progress with -v."""
        from connectors.files import RejectedRow, read_events_file

        for read, item in enumerate(read_events_file(self.path, self.options), 1):
            if read % PROGRESS_EVERY == 0:
                log.info("%s: %d records read, %d rejected", self.path, read, self.count)
            if isinstance(item, RejectedRow):
                self(item)
            else:
                yield item

    def close(self) -> None:
        for handle in (self._report, self._dead):
            if handle is not None:
                handle.close()


def _report_delimiter(path: Path, files: FileArgs, options: FileOptions) -> str:
    # The report opens in the same Excel as the export: keep its delimiter.
    if options.delimiter:
        return options.delimiter
    if path.suffix.lower() == ".csv" or files.format == "csv":
        from connectors.files import sniff_file

        return sniff_file(path, options.encoding)
    return ","


def reference(args: ReferenceArgs) -> Reference:
    settings = Settings()
    loaded = load_reference(
        args.reporting_currency or settings.reporting_currency,
        fx=args.fx or settings.fx_file,
        costs=args.costs or settings.costs_file,
        targets=args.targets or settings.targets_file,
        teams=args.teams or settings.teams_file,
    )
    loaded.fx.on_missing = _warn_missing_rate
    return loaded


def _warn_missing_rate(currency: str, day: date) -> None:
    print(
        f"kpiwatch: warning: no FX rate {currency} -> reporting currency for {day} (give one "
        f"with --fx): money KPIs with {currency} in them are null",
        file=sys.stderr,
    )


def rules(paths: Sequence[Path] | None) -> RuleSet:
    return load_paths(paths) if paths else load_default()


def settings(kafka: KafkaArgs, **overrides: Any) -> Settings:
    """The environment's settings, with what was given on the command line over them."""
    overrides |= {"kafka_bootstrap": kafka.broker, "topic_prefix": kafka.topic_prefix}
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def aware(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise KpiwatchError(f"{option} {text!r}: not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise KpiwatchError(f"{option} {text}: give a time zone, e.g. 2026-11-23T12:00:00+09:00")
    return moment
