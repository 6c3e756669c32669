"""The `kpiwatch` command: demo, replay, simulate, produce, worker, rules, alerts."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rules.alerts import Alert
from rules.errors import ConfigError, InvalidEventError, KpiwatchError
from rules.load import RuleSet, load_default, load_paths
from rules.schema import json_schema
from sinks.console import alert_json, alert_text
from streams.heap import Heap
from streams.reference import Reference, load_reference
from streams.settings import Settings

if TYPE_CHECKING:
    from connectors.files import FileOptions
    from streams.events import RawRecord

log = logging.getLogger("kpiwatch")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["silence"]:
        # The silence tool has its own parser; argparse's REMAINDER would not pass it options.
        from redis.exceptions import ConnectionError as RedisDown

        from sinks.silence import main as silence_main

        try:
            return silence_main(argv[1:])
        except RedisDown as exc:
            print(f"kpiwatch silence: cannot reach Redis: {exc}", file=sys.stderr)
            return 1
    parser = _parser()
    args = parser.parse_args(argv)
    Heap.set_up()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"kpiwatch: {len(exc.problems)} problem(s) in the rules:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except KpiwatchError as exc:
        print(f"kpiwatch: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `kpiwatch replay ... | head`
        return 0
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kpiwatch",
        description="Real-time KPI alerts for e-commerce sellers. Start with `kpiwatch demo`.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the embedded engine on simulated traffic and show the alerts",
        description="Simulate a few stores (Amazon US/JP, Shopee MY, ...) with a stockout and an "
        "ACoS spike in them (and random incidents at --incident-rate), run the default rules "
        "over it in-process (no Kafka, no Redis) and print the alerts.",
    )
    _simulation_args(demo)
    demo.add_argument("--json", action="store_true", help="print alerts as JSON lines")
    demo.set_defaults(run=_demo)

    replay = commands.add_parser(
        "replay",
        help="run rules over an event file (JSON lines or CSV), in-process",
        description="Validate, aggregate and evaluate every event of EVENTS_FILE in file order, "
        "exactly as the worker does, and print each alert as one JSON line. "
        "Rejected lines are reported on stderr with file:line and reason.",
    )
    replay.add_argument("events", type=Path, metavar="EVENTS_FILE")
    _file_args(replay)
    replay.add_argument(
        "--rules",
        type=Path,
        action="append",
        metavar="PATH",
        help="rule file or folder (repeatable; default: the shipped rules)",
    )
    _reference_args(replay)
    replay.add_argument(
        "--dead-letter",
        type=Path,
        metavar="FILE",
        help="also write rejected lines to FILE as JSON with their reason",
    )
    replay.set_defaults(run=_replay)

    kpis = commands.add_parser(
        "kpis",
        help="print KPI values per scope from an event file (JSON lines or CSV), in-process",
        description="Aggregate EVENTS_FILE exactly as the worker does and print, for every "
        "scope of the --by level, the KPI values over --window ending at --at (or with the "
        "local --day), as JSON lines. Example: kpiwatch kpis events.jsonl --by store "
        "--window 1d --day 2026-11-30 --fx fx.csv",
    )
    kpis.add_argument("events", type=Path, metavar="EVENTS_FILE")
    _file_args(kpis)
    kpis.add_argument(
        "--by",
        default="store",
        help="scope level: store | store,sku | store,campaign | marketplace | "
        "platform | team (default store)",
    )
    kpis.add_argument("--window", default="1d", help="1h, 24h, 1d, 7d, 28d or mtd (default 1d)")
    when = kpis.add_mutually_exclusive_group()
    when.add_argument(
        "--at",
        metavar="TIME",
        help="end of the window, ISO 8601 with zone: events after it are not counted, the "
        "window is the buckets (local hours or days) up to it (default: the newest event)",
    )
    when.add_argument(
        "--day",
        type=_iso_day,
        metavar="YYYY-MM-DD",
        help="the window ending with this local day, in each store's own time zone "
        "(--window 1d: that whole day; 7d: it and the 6 days before)",
    )
    _reference_args(kpis)
    kpis.set_defaults(run=_kpis)

    _scorecard_parser(commands)
    _report_parser(commands)

    simulate = commands.add_parser(
        "simulate",
        help="print simulated events as JSON lines",
        description="Print the simulator's events (the same traffic `kpiwatch demo` uses) as "
        "JSON lines, for `kpiwatch replay` or `kpiwatch produce`.",
    )
    _simulation_args(simulate)
    simulate.add_argument(
        "--incidents",
        type=Path,
        metavar="FILE",
        help="write the injected incidents to FILE as JSON lines (kind, store_id, sku, "
        "campaign_id, start, end)",
    )
    simulate.set_defaults(run=_simulate)

    produce = commands.add_parser(
        "produce",
        help="validate an event file (JSON lines or CSV) and put it on the Kafka topics",
        description="Create the topics if needed and produce each valid event to its topic, "
        "keyed by store_id. Broker and topic prefix come from KPIWATCH_KAFKA_BOOTSTRAP "
        "and KPIWATCH_TOPIC_PREFIX unless given.",
    )
    produce.add_argument("events", type=Path, metavar="EVENTS_FILE")
    _file_args(produce)
    _kafka_args(produce)
    produce.set_defaults(run=_produce)

    produce_fx = commands.add_parser(
        "produce-fx",
        help="publish FX rates from a CSV file to the fx-rates topic (running workers use them)",
        description="Check FX_FILE (date,currency,rate: 1 currency = rate reporting currency "
        "from that date) and put each rate on the fx-rates topic. Running workers read money "
        "in the reporting currency with it from then on, for every day it is in effect.",
    )
    produce_fx.add_argument("fx", type=Path, metavar="FX_FILE")
    _kafka_args(produce_fx)
    produce_fx.set_defaults(run=_produce_fx)

    worker = commands.add_parser(
        "worker",
        help="run the Kafka runtime (Faust worker)",
        description="Consume the event topics, keep KPI tables, evaluate rules and deliver alerts "
        "to the alerts topic, the console and (if KPIWATCH_WEBHOOK_URL is set) a JSON "
        "webhook. Metrics on http://WEB_HOST:WEB_PORT/metrics. Stop with Ctrl-C or "
        "SIGTERM.",
    )
    _kafka_args(worker)
    worker.add_argument(
        "--rules",
        type=Path,
        action="append",
        metavar="PATH",
        help="rule file or folder (repeatable; default: KPIWATCH_RULES or shipped)",
    )
    worker.add_argument("--web-port", type=int, help="HTTP port (default 6066)")
    worker.add_argument("--instance-id", help="static group membership id for this worker")
    worker.add_argument("--no-console", action="store_true", help="do not print alerts on stdout")
    worker.set_defaults(run=_worker)

    _connect_parser(commands)

    silence = commands.add_parser(
        "silence",
        help="add, list and expire silences, acknowledge alerts (kpiwatch silence add --help)",
        add_help=False,
    )
    silence.add_argument("silence_args", nargs=argparse.REMAINDER)  # handled in main()

    _alerts_parser(commands)

    rules = commands.add_parser("rules", help="check rule files, export their JSON Schema")
    rule_commands = rules.add_subparsers(title="rules commands", required=True, metavar="COMMAND")
    check = rule_commands.add_parser(
        "check",
        help="report every problem in rule files, with file and line",
        description="Exit 0 when all files are valid, 2 with every problem listed otherwise.",
    )
    check.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    check.set_defaults(run=_rules_check)
    schema = rule_commands.add_parser("schema", help="print the JSON Schema of rule files")
    schema.add_argument(
        "--scorecards", action="store_true", help="the JSON Schema of scorecard files instead"
    )
    schema.set_defaults(run=_rules_schema)
    backtest = rule_commands.add_parser(
        "test",
        help="backtest rule files on an event file (JSON lines or CSV)",
        description="Replay EVENTS_FILE through the rules in-process, exactly as the worker "
        "would, and print every alert transition with its event time (muted ones marked) in "
        "time order, then per rule how often it fired, was muted and resolved.",
    )
    backtest.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    backtest.add_argument("--events", type=Path, required=True, metavar="EVENTS_FILE")
    _file_args(backtest)
    _reference_args(backtest)
    backtest.set_defaults(run=_rules_test)
    return parser


def _simulation_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stores", type=int, default=3, help="number of stores (default 3)")
    parser.add_argument("--skus", type=int, default=4, help="SKUs per store (default 4)")
    parser.add_argument("--hours", type=int, default=48, help="hours of traffic (default 48)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--start",
        type=datetime.fromisoformat,
        help="first hour, ISO 8601 with zone (default: 2 days ago, UTC)",
    )
    parser.add_argument(
        "--incident-rate",
        type=float,
        default=None,
        metavar="R",
        help="random incidents (stockout, ACoS spike, silent feed, sales cliff) per store per "
        "day, besides the demo's stockout and ACoS spike; 0 disables (default 0.05)",
    )


PROGRESS_EVERY = 10_000  # records between progress lines with -v


def _file_args(parser: argparse.ArgumentParser, *, file_format: bool = True) -> None:
    group = parser.add_argument_group(
        "event files: JSON lines, or CSV (.csv or --format csv), one row per order line"
    )
    if file_format:  # `scorecard --format` is its output's: its files go by their suffix
        group.add_argument("--format", choices=["jsonl", "csv"], help="default: by file suffix")
    else:
        parser.set_defaults(format=None)
    group.add_argument(
        "--kind",
        choices=["order", "ad_spend", "inventory"],
        help="what every row is (CSV without a `type` column)",
    )
    group.add_argument(
        "--columns",
        type=Path,
        metavar="MAP",
        help="YAML or JSON mapping the export's column names to ours, e.g. {订单号: order_id}",
    )
    group.add_argument("--delimiter", help="CSV delimiter (default: read from the header line)")
    group.add_argument(
        "--timezone",
        metavar="AREA/CITY",
        help="local time of timestamps written without a zone (else such rows are rejected)",
    )
    group.add_argument("--encoding", default="utf-8-sig", help="CSV encoding (default UTF-8)")
    group.add_argument(
        "--rejects",
        type=Path,
        metavar="FILE",
        help="write rejected rows to FILE as CSV (line, reason, the row), to fix and re-import",
    )


def _file_options(args: argparse.Namespace) -> FileOptions:
    from connectors.files import FileOptions

    zone = None
    if args.timezone:
        try:
            zone = ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise KpiwatchError(f"--timezone {args.timezone!r} is not a time zone") from exc
    delimiter = {"\\t": "\t", "tab": "\t"}.get(args.delimiter or "", args.delimiter)
    return FileOptions(
        format=args.format,
        kind=args.kind,
        columns=_column_map(args.columns) if args.columns else {},
        delimiter=delimiter,
        timezone=zone,
        encoding=args.encoding,
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


class _Rejects:
    """Every rejected record: on stderr, in the --rejects CSV and the --dead-letter file."""

    def __init__(self, args: argparse.Namespace, options: FileOptions) -> None:
        from connectors.files import RejectsReport

        self.count = 0
        path = getattr(args, "rejects", None)
        self._report = RejectsReport(path, _report_delimiter(args, options)) if path else None
        dead = getattr(args, "dead_letter", None)
        self._dead = dead.open("w", encoding="utf-8") if dead else None

    def __call__(self, exc: InvalidEventError) -> None:
        self.count += 1
        print(f"rejected {exc}", file=sys.stderr)
        if self._report is not None:
            self._report.write(exc)
        if self._dead is not None:
            self._dead.write(json.dumps({"source": exc.source, "reason": exc.reason}) + "\n")

    def close(self) -> None:
        for handle in (self._report, self._dead):
            if handle is not None:
                handle.close()


def _report_delimiter(args: argparse.Namespace, options: FileOptions) -> str:
    # The report opens in the same Excel as the export: keep its delimiter.
    if options.delimiter:
        return options.delimiter
    if args.events.suffix.lower() == ".csv" or args.format == "csv":
        from connectors.files import sniff_file

        return sniff_file(args.events, options.encoding)
    return ","


def _records(
    args: argparse.Namespace, options: FileOptions, rejects: _Rejects
) -> Iterator[RawRecord]:
    """The valid records of the event file; rejected ones go to `rejects`; progress with -v."""
    from connectors.files import RejectedRow, read_events_file

    for read, item in enumerate(read_events_file(args.events, options), 1):
        if read % PROGRESS_EVERY == 0:
            log.info("%s: %d records read, %d rejected", args.events, read, rejects.count)
        if isinstance(item, RejectedRow):
            rejects(item)
        else:
            yield item


def _reference_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reference data (CSV; formats in streams/reference.py)")
    group.add_argument(
        "--reporting-currency",
        default=None,
        help="currency of money KPIs (KPIWATCH_REPORTING_CURRENCY, default USD)",
    )
    group.add_argument("--fx", type=Path, help="FX rates: date,currency,rate")
    group.add_argument(
        "--costs", type=Path, help="unit costs: platform,marketplace,store,sku,unit_cost,currency"
    )
    group.add_argument(
        "--targets", type=Path, help="monthly targets: month,level,...,amount,currency"
    )
    group.add_argument("--teams", type=Path, help="store owners: platform,marketplace,store,team")


def _reference(args: argparse.Namespace) -> Reference:
    settings = Settings()
    reference = load_reference(
        args.reporting_currency or settings.reporting_currency,
        fx=args.fx or settings.fx_file,
        costs=args.costs or settings.costs_file,
        targets=args.targets or settings.targets_file,
        teams=args.teams or settings.teams_file,
    )
    reference.fx.on_missing = _warn_missing_rate
    return reference


def _warn_missing_rate(currency: str, day: date) -> None:
    print(
        f"kpiwatch: warning: no FX rate {currency} -> reporting currency for {day} (give one "
        f"with --fx): money KPIs with {currency} in them are null",
        file=sys.stderr,
    )


def _kafka_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", help="Kafka bootstrap host:port (KPIWATCH_KAFKA_BOOTSTRAP)")
    parser.add_argument("--topic-prefix", help="prefix of every topic (KPIWATCH_TOPIC_PREFIX)")


def _rules(paths: Sequence[Path] | None) -> RuleSet:
    return load_paths(paths) if paths else load_default()


def _simulated(args: argparse.Namespace) -> Iterator[bytes]:
    """The simulator's events as JSON lines, made as they are read (memory stays flat)."""
    from connectors.simulator import DEFAULT_INCIDENT_RATE, Incident, simulate
    from streams.events import encode

    start = args.start or (datetime.now(UTC) - timedelta(hours=args.hours)).replace(
        minute=0, second=0, microsecond=0
    )
    if start.tzinfo is None:
        raise KpiwatchError("--start needs a time zone, e.g. 2026-11-20T00:00:00+00:00")
    rate = DEFAULT_INCIDENT_RATE if args.incident_rate is None else args.incident_rate
    if rate < 0:
        raise KpiwatchError("--incident-rate must be 0 or more")
    out = getattr(args, "incidents", None)
    incidents = out.open("w", encoding="utf-8") if out else None

    def told(incident: Incident) -> None:
        if incidents is not None:
            incidents.write(json.dumps(incident.to_json()) + "\n")

    events = simulate(
        start,
        hours=args.hours,
        stores=args.stores,
        skus=args.skus,
        seed=args.seed,
        incident_rate=rate,
        on_incident=told,
    )
    try:
        for event in events:
            yield encode(event)
    finally:
        if incidents is not None:
            incidents.close()


def _demo(args: argparse.Namespace) -> int:
    from streams.embedded import replay
    from streams.events import RawRecord

    print(
        f"kpiwatch demo: {args.stores} simulated stores over {args.hours} h, default rules, "
        "embedded runtime",
        file=sys.stderr,
    )
    lines = _simulated(args)
    records = (RawRecord(source=f"simulator:{n}", value=v) for n, v in enumerate(lines, 1))
    emit = alert_json if args.json else alert_text
    report = replay(records, _rules(None), lambda alert: print(emit(alert), flush=True))
    print(f"kpiwatch demo: {report.events} events, {report.alerts} alerts", file=sys.stderr)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from streams.embedded import replay

    rules = _rules(args.rules)
    options = _file_options(args)
    rejects = _Rejects(args, options)

    def emit(alert: Alert) -> None:
        print(alert_json(alert), flush=False)

    try:
        records = _records(args, options, rejects)
        report = replay(records, rules, emit, rejects, reference=_reference(args))
    finally:
        rejects.close()
    sys.stdout.flush()
    print(
        f"kpiwatch replay: {report.events} events, {rejects.count} rejected, "
        f"{report.alerts} alerts",
        file=sys.stderr,
    )
    return 0


def _kpis(args: argparse.Namespace) -> int:
    from streams.embedded import State, reader, replay
    from streams.query import kpi_rows

    state, reference = State(), _reference(args)
    at = _aware(args.at, "--at") if args.at else None
    options = _file_options(args)
    rejects = _Rejects(args, options)
    try:
        records = _records(args, options, rejects)
        report = replay(records, RuleSet([]), lambda _: None, rejects, state, reference, until=at)
    finally:
        rejects.close()
    view = reader(state, reference)
    try:
        rows = kpi_rows(view, args.by, args.window, at or view.newest_event(), day=args.day)
    except ValueError as exc:
        raise KpiwatchError(str(exc)) from exc
    for row in rows:
        if at is not None and row["window_end"] is not None:
            # Nothing after --at was counted: the window ends there, not with its bucket.
            end = datetime.fromisoformat(row["window_end"])
            row["window_end"] = min(end, at.astimezone(end.tzinfo)).isoformat()
        print(json.dumps(row, ensure_ascii=False))
    later = f", {report.later} after --at left out" if at is not None else ""
    print(
        f"kpiwatch kpis: {report.events} events, {rejects.count} rejected{later}, "
        f"{len(rows)} scopes",
        file=sys.stderr,
    )
    return 0


def _iso_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day such as 2026-11-30") from None


def _aware(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise KpiwatchError(f"{option} {text!r}: not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise KpiwatchError(f"{option} {text}: give a time zone, e.g. 2026-11-23T12:00:00+09:00")
    return moment


def _simulate(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    for line in _simulated(args):
        out.write(line + b"\n")
    out.flush()
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        "kafka_bootstrap": args.broker,
        "topic_prefix": args.topic_prefix,
        "rules": getattr(args, "rules", None),
        "web_port": getattr(args, "web_port", None),
        "instance_id": getattr(args, "instance_id", None),
        "redis_url": getattr(args, "redis", None),
    }
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _produce(args: argparse.Namespace) -> int:
    from connectors.kafka import EventProducer, ensure_topics
    from streams.events import EVENTS_TOPIC

    settings = _settings(args)
    options = _file_options(args)
    rejects = _Rejects(args, options)

    async def run() -> tuple[int, list[InvalidEventError]]:
        names = [settings.topic(EVENTS_TOPIC)]
        await ensure_topics(settings.kafka_bootstrap, names, settings.partitions)
        async with EventProducer(settings.kafka_bootstrap, settings.topic_prefix) as producer:
            return await producer.send_records(_records(args, options, rejects))

    try:
        sent, refused = asyncio.run(run())
        for exc in refused:
            rejects(exc)
    finally:
        rejects.close()
    print(f"kpiwatch produce: {sent} events sent, {rejects.count} rejected", file=sys.stderr)
    return 0


def _produce_fx(args: argparse.Namespace) -> int:
    from connectors.kafka import ensure_topics
    from streams.fxfeed import publish
    from streams.reference import FX_COLUMNS, csv_rows

    settings = _settings(args)
    load_reference(settings.reporting_currency, fx=args.fx)  # every bad row, with its line
    rows = [row for _, row in csv_rows(args.fx, FX_COLUMNS)]
    topic = settings.topic("fx-rates")

    async def run() -> int:
        await ensure_topics(settings.kafka_bootstrap, [topic], settings.partitions)
        return await publish(settings.kafka_bootstrap, topic, rows)

    print(f"kpiwatch produce-fx: {asyncio.run(run())} rate(s) sent to {topic}", file=sys.stderr)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    return run_worker(_settings(args), console=not args.no_console)


def _connect_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from streams.sourcenames import SECTIONS

    names = ", ".join(f"{name} (section {key}:)" for name, key in SECTIONS.items())
    connect = commands.add_parser(
        "connect",
        help="run a marketplace connector: poll its API / receive its pushes, produce to Kafka",
        description="Run SOURCE as the section of FILE for it describes, until stopped "
        "(Ctrl-C or SIGTERM). Polled cursors are saved in Redis (KPIWATCH_REDIS_URL) only "
        "after Kafka acknowledged the page, so a restart resumes without losing data; "
        "secrets come from the environment or files named in FILE. Sources: "
        f"{names}. Example configs: deploy/kpiwatch/connect.example.yaml.",
    )
    connect.add_argument("source", choices=sorted(SECTIONS), metavar="SOURCE")
    connect.add_argument("--config", type=Path, required=True, metavar="FILE")
    connect.add_argument(
        "--once",
        action="store_true",
        help="one pass over every polled source, then exit (1 if a pass failed); for cron",
    )
    connect.add_argument(
        "--listen",
        default="127.0.0.1:8081",
        metavar="HOST:PORT",
        help="where webhook/push receivers listen (default 127.0.0.1:8081)",
    )
    connect.add_argument(
        "--metrics",
        default="127.0.0.1:9108",
        metavar="HOST:PORT",
        help="Prometheus metrics address (default 127.0.0.1:9108; port 0: none)",
    )
    connect.add_argument("--redis", metavar="URL", help="Redis for cursors (KPIWATCH_REDIS_URL)")
    _kafka_args(connect)
    connect.set_defaults(run=_connect)


def _alerts_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alerts = commands.add_parser("alerts", help="alerts the sinks gave up on: resend them")
    alert_commands = alerts.add_subparsers(title="alerts commands", required=True, metavar="CMD")
    resend = alert_commands.add_parser(
        "resend",
        help="send dead-lettered alerts again, once their sink is back",
        description="Read the alerts-dead-letter topic (where a worker puts the alerts a sink "
        "still refused after every retry) and send each record's alerts again through that "
        "sink, with the worker's sinks file (KPIWATCH_SINKS_FILE, KPIWATCH_WEBHOOK_URL), retry "
        "policy and rate limits. Nothing is sent twice: alerts the workers' dedupe ledger in "
        "Redis knows as delivered are dropped, what is sent goes into that ledger, and each "
        "record sent is marked in Redis as re-sent (30 days), so running the command again "
        "sends nothing again; a record that fails again stays for the next run. A transition "
        "older than one of its fingerprint already delivered is skipped as superseded, so a "
        "firing never lands after its own resolve. One line per record on stdout, a summary "
        "on stderr; exit 1 if a record could not be sent.",
    )
    _kafka_args(resend)
    resend.add_argument("--redis-url", help="the workers' Redis (KPIWATCH_REDIS_URL)")
    resend.add_argument("--sink", metavar="NAME", help="only the records of this sink")
    resend.add_argument(
        "--since",
        metavar="WHEN",
        help="only records dead-lettered since WHEN: 30m, 2h, 1d ago, or an ISO time with zone",
    )
    resend.add_argument(
        "--dry-run", action="store_true", help="list what would be sent; send and mark nothing"
    )
    resend.set_defaults(run=_alerts_resend)


def _alerts_resend(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError

    from streams.resend import parse_since, resend

    settings = _settings(args)
    if args.redis_url:
        settings = settings.model_copy(update={"redis_url": args.redis_url})
    try:
        since = parse_since(args.since) if args.since else None
        tally = asyncio.run(
            resend(settings, sink=args.sink, since=since, dry_run=args.dry_run, out=sys.stdout)
        )
    except ValueError as exc:
        print(f"kpiwatch alerts resend: {exc}", file=sys.stderr)
        return 2
    except RedisError as exc:
        print(f"kpiwatch alerts resend: Redis: {exc}; nothing more was sent", file=sys.stderr)
        return 1
    print(f"kpiwatch alerts resend: {tally.summary(args.dry_run)}", file=sys.stderr)
    return 1 if tally.failed else 0


def _address(value: str, option: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise KpiwatchError(f"{option}: expected HOST:PORT, got {value!r}")
    return host, int(port)


def _connect(args: argparse.Namespace) -> int:
    from streams.connect import Options, connect

    listen = _address(args.listen, "--listen")
    metrics = _address(args.metrics, "--metrics")
    options = Options(args.once, *listen, *metrics)
    return asyncio.run(connect(args.source, args.config, _settings(args), options))


def _rules_check(args: argparse.Namespace) -> int:
    rules = load_paths(args.paths)
    cards = f", {len(rules.scorecards)} scorecard(s)" if rules.scorecards else ""
    print(f"ok: {len(rules)} rule(s){cards} in {len(args.paths)} path(s)")
    return 0


def _rules_test(args: argparse.Namespace) -> int:
    from streams.embedded import replay

    rules = load_paths(args.paths)
    counts = {rule.name: {"fired": 0, "muted": 0, "resolved": 0} for rule in rules.rules}

    transitions: list[Alert] = []

    def record(alert: Alert) -> None:
        outcome = "muted" if alert.muted else "fired" if alert.status == "firing" else "resolved"
        counts[alert.rule][outcome] += 1
        transitions.append(alert)

    options = _file_options(args)
    rejects = _Rejects(args, options)
    try:
        records = _records(args, options, rejects)
        report = replay(records, rules, record, rejects, reference=_reference(args))
    finally:
        rejects.close()
    # The engine reports a file's transitions as it reads them, store by store: a person reads
    # a backtest as a timeline. Stable, so transitions at one instant keep their order.
    for alert in sorted(transitions, key=lambda a: a.at):
        print(transition_line(alert))
    print(f"\n{report.events} events, {rejects.count} rejected; per rule:")
    width = max((len(name) for name in counts), default=0)
    for name, n in counts.items():
        print(
            f"  {name:<{width}}  fired {n['fired']}  muted {n['muted']}  resolved {n['resolved']}"
        )
    return 0


def transition_line(alert: Alert) -> str:
    """One backtest line: event time, transition, and what a person would have read."""
    status = f"{alert.status.upper()}{' (muted)' if alert.muted else ''}"
    return f"{alert.at.isoformat()}  {status:<16} {alert.summary}"


def _rules_schema(args: argparse.Namespace) -> int:
    from rules.scorecard import scorecard_json_schema

    print(json.dumps(scorecard_json_schema() if args.scorecards else json_schema(), indent=2))
    return 0


def _scorecard_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    card = commands.add_parser(
        "scorecard",
        help="team scorecards (weighted KPI attainment, red/yellow/green) from an event file",
        description="Aggregate EVENTS_FILE exactly as the worker does and score each team's "
        "card (a `scorecards:` file among --rules) over the period: the team's KPIs (each "
        "store's own local days, money in the reporting currency) against their targets, "
        "attainment capped at 100 per KPI, weighted. Undefined KPIs (ACoS with no ad sales, "
        "attainment without a target) are left out with their weight. Stores belong to teams "
        "through --teams. Example: kpiwatch scorecard events.jsonl --teams teams.csv "
        "--fx fx.csv --rules rules/library --team marketplace-ops --period week",
    )
    card.add_argument("events", type=Path, metavar="EVENTS_FILE")
    card.add_argument("--team", help="only this team's (or person's) card (default: every card)")
    card.add_argument(
        "--period",
        choices=["day", "week", "month"],
        default="week",
        help="day: the local day; week: the last 7 local days; month: the month so far "
        "(default: week)",
    )
    card.add_argument(
        "--format",
        dest="output",
        choices=["table", "json"],
        default="table",
        help="table (default) or JSON lines, one card each",
    )
    card.add_argument(
        "--rules",
        type=Path,
        action="append",
        metavar="PATH",
        help="rule file or folder holding the scorecard file (repeatable; default: the "
        "shipped library)",
    )
    when = card.add_mutually_exclusive_group()
    when.add_argument("--at", metavar="TIME", help="end of the period, as for `kpiwatch kpis`")
    when.add_argument("--day", type=_iso_day, metavar="YYYY-MM-DD", help="the period's last day")
    _file_args(card, file_format=False)
    _reference_args(card)
    card.set_defaults(run=_scorecard)


def _scorecard(args: argparse.Namespace) -> int:
    from rules.load import load_library
    from streams.embedded import State, reader, replay
    from streams.scorecards import scorecard_rows, scorecard_table

    cards = (load_paths(args.rules) if args.rules else load_library()).scorecards
    state, reference = State(), _reference(args)
    at = _aware(args.at, "--at") if args.at else None
    options = _file_options(args)
    rejects = _Rejects(args, options)
    try:
        records = _records(args, options, rejects)
        replay(records, RuleSet([]), lambda _: None, rejects, state, reference, until=at)
    finally:
        rejects.close()
    view = reader(state, reference)
    try:
        rows = scorecard_rows(
            view, cards, args.period, at or view.newest_event(), day=args.day, team=args.team
        )
    except ValueError as exc:
        raise KpiwatchError(str(exc)) from exc
    if args.output == "json":
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        print(scorecard_table(rows))
    return 0


def _report_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = commands.add_parser(
        "report",
        help="a team's day/week/month report (KPIs, scorecard, movers, alerts, charts)",
        description="Aggregate EVENTS_FILE and run the rules exactly as the worker does, then "
        "write the team's report over the period ending with --day (default: the newest "
        "event's day): its KPIs against target and the previous period, its scorecard, the "
        "SKUs and campaigns that moved most, the alerts of the period (fired, resolved, time "
        "to resolve) and charts (GMV per day vs target, ACoS). Formats: md (Markdown; with "
        "--out, the charts are PNG files beside it), html (charts inline), xlsx (one sheet "
        "per section, real numbers), pdf. Example: kpiwatch report events.jsonl --teams "
        "teams.csv --fx fx.csv --team marketplace-ops --period week --out week.xlsx",
    )
    report.add_argument("events", type=Path, metavar="EVENTS_FILE")
    report.add_argument("--team", required=True, help="the team (or person) of the teams file")
    report.add_argument(
        "--period",
        choices=["day", "week", "month"],
        default="week",
        help="day, the 7 days up to --day, or the month up to it (default week)",
    )
    report.add_argument("--day", type=_iso_day, metavar="YYYY-MM-DD", help="the period's last day")
    report.add_argument(
        "--format",
        dest="output",
        choices=["md", "html", "xlsx", "pdf"],
        help="default: by --out's suffix, else md",
    )
    report.add_argument("--out", type=Path, metavar="FILE", help="default: standard output")
    report.add_argument(
        "--rules",
        type=Path,
        action="append",
        metavar="PATH",
        help="rule files or folders, scorecards among them (default: the shipped library)",
    )
    _file_args(report, file_format=False)
    _reference_args(report)
    report.set_defaults(run=_report)


def _report(args: argparse.Namespace) -> int:
    from rules.load import load_library
    from streams.embedded import State, reader, replay
    from streams.reports.build import build_report
    from streams.reports.output import format_for, render, require

    try:
        require()
    except ImportError as exc:
        raise KpiwatchError(str(exc)) from exc
    fmt = format_for(args.out, args.output)
    if args.out is None and fmt in ("xlsx", "pdf"):
        raise KpiwatchError(f"--format {fmt} is a binary file: give --out FILE")
    rules = load_paths(args.rules) if args.rules else load_library()
    state, reference = State(), _reference(args)
    alerts: list[Alert] = []
    options = _file_options(args)
    rejects = _Rejects(args, options)
    try:
        records = _records(args, options, rejects)
        replay(records, rules, alerts.append, rejects, state, reference)
    finally:
        rejects.close()
    view = reader(state, reference)
    newest = view.newest_event()
    day = args.day or (newest.date() if newest is not None else datetime.now(UTC).date())
    try:
        built = build_report(view, rules.scorecards, alerts, args.team, args.period, day)
    except ValueError as exc:
        raise KpiwatchError(str(exc)) from exc
    for path, data in render(built, fmt, args.out).items():
        if path is None:
            sys.stdout.buffer.write(data)
        else:
            path.write_bytes(data)
            print(f"kpiwatch report: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
