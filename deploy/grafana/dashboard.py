"""The kpiwatch Grafana dashboard, built with Grafana's typed builders (grafana-foundation-sdk).

    .venv/bin/python deploy/grafana/dashboard.py          # rewrites dashboards/kpiwatch.json
    .venv/bin/python deploy/grafana/dashboard.py --check  # exit 1 if the JSON is out of date

The JSON is what Grafana loads (provisioning/ points at it); this file is where it is edited.
Every query here is run against a real Prometheus scraping a real worker and connector by
tests/integration/test_dashboard.py, which also checks that the JSON is this file's output.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from grafana_foundation_sdk.builders import (
    bargauge,
    dashboard,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

HERE: Final = Path(__file__).resolve().parent
OUTPUT: Final = HERE / "dashboards" / "kpiwatch.json"
UID: Final = "kpiwatch"
DATASOURCE: Final = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Grafana's own interval variables; the test puts real durations in their place.
RATE: Final = "$__rate_interval"
RANGE: Final = "$__range"
# The scope filter of KPI and connector panels. "All" is `.*`, which also matches the empty
# label of scopes without one (a marketplace rollup has no store).
SCOPE: Final = 'store=~"$store", marketplace=~"$marketplace", team=~"$team"'
STORE: Final = 'store=~"$store"'
KPI_TOPIC: Final = 'kpi="{kpi}", window="{window}", store!="", sku{sku}"", campaign="", ' + SCOPE

Kind = str  # "timeseries", "stat", "table", "bargauge"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: Kind = "timeseries"
    width: int = 8
    height: int = 8


def q(expr: str, legend: str = "", *, instant: bool = False) -> Query:
    return Query(" ".join(expr.split()), legend, instant)


def kpi(name: str, window: str, *, per_sku: bool) -> str:
    """The selector of one KPI's gauges at store (or store+SKU) scope: not the rollups per
    marketplace, platform or team, whose store label is empty."""
    return KPI_TOPIC.format(kpi=name, window=window, sku="!=" if per_sku else "=")


PIPELINE: Final = (
    PanelSpec(
        "Events in per second, by topic",
        "Events read from the input topics, all workers (kpiwatch_events_in_total).",
        (q(f"sum by (topic) (rate(kpiwatch_events_in_total[{RATE}]))", "{{topic}}"),),
        "ops",
    ),
    PanelSpec(
        "Dead-lettered share",
        "Bad events sent to the dead-letter topic, as a share of events in (rules page at 10%).",
        (
            q(
                f"sum by (topic) (rate(kpiwatch_events_dead_lettered_total[{RATE}]))"
                f" / sum by (topic) (rate(kpiwatch_events_in_total[{RATE}]))",
                "{{topic}}",
            ),
        ),
        "percentunit",
    ),
    PanelSpec(
        "Processing time per event, p50 and p95",
        "Validate, aggregate, evaluate and make durable, per event (a batch's time over its "
        "events).",
        tuple(
            q(
                f"histogram_quantile({quantile}, sum by (le) "
                f"(rate(kpiwatch_event_processing_seconds_bucket[{RATE}])))",
                f"p{int(quantile * 100)}",
            )
            for quantile in (0.5, 0.95)
        ),
        "s",
    ),
    PanelSpec(
        "Consumer lag per partition",
        "Messages not read yet, per topic and partition (each worker reports its own).",
        (
            q(
                "max by (topic, partition) (kpiwatch_consumer_lag_messages)",
                "{{topic}} [{{partition}}]",
            ),
        ),
        width=12,
    ),
    PanelSpec(
        "Event-to-alert latency, p95",
        "From an alert transition's event time to the notifier reading it.",
        (
            q(
                "histogram_quantile(0.95, sum by (le) "
                f"(rate(kpiwatch_event_to_alert_seconds_bucket[{RATE}])))",
                "p95",
            ),
        ),
        "s",
        width=12,
    ),
    PanelSpec(
        "Table recovery: changelog messages left",
        "0 once a worker has read its newly assigned partitions' state; rises at a rebalance.",
        (
            q(
                "sum by (instance, table) (kpiwatch_table_recovery_remaining_messages)",
                "{{instance}} {{table}} left",
            ),
            q(
                f"sum by (instance, table) (rate(kpiwatch_table_recovered_messages_total[{RATE}]))",
                "{{instance}} {{table}} read/s",
            ),
        ),
    ),
    PanelSpec(
        "Worker restarts",
        "Process starts of each worker over the dashboard's time range.",
        (
            q(
                f'changes(process_start_time_seconds{{job="kpiwatch"}}[{RANGE}])',
                "{{instance}}",
                instant=True,
            ),
        ),
        kind="stat",
    ),
    PanelSpec(
        "Workers up, Kafka reachable",
        "Scrapes answered (up) and the worker's own probe of the Kafka bootstrap servers.",
        (
            q('sum(up{job="kpiwatch"})', "workers up", instant=True),
            q("min(kpiwatch_kafka_up)", "Kafka reachable (1 = yes)", instant=True),
        ),
        kind="stat",
    ),
)

ALERTS: Final = (
    PanelSpec(
        "Firing alerts by rule and severity",
        "Alerts firing now (kpiwatch_alerts_firing), all workers.",
        (q("sum by (rule, severity) (kpiwatch_alerts_firing)", "{{rule}} {{severity}}"),),
        width=12,
    ),
    PanelSpec(
        "Alert transitions per minute",
        "Transitions emitted by the rules, per rule and status.",
        (
            q(
                f"60 * sum by (rule, status) (rate(kpiwatch_alerts_total[{RATE}]))",
                "{{rule}} {{status}}",
            ),
        ),
        "short",
        width=12,
    ),
    PanelSpec(
        "Muted transitions",
        "Transitions held back by a silence or an acknowledgement, over the time range.",
        (
            q(
                f"sum by (rule) (increase(kpiwatch_alerts_muted_total[{RANGE}]))",
                "{{rule}}",
                instant=True,
            ),
        ),
        kind="bargauge",
    ),
    PanelSpec(
        "Deliveries per sink: ok, failed, retried",
        "Alerts delivered, dead-lettered (failed) and deduplicated per sink, and retried sends.",
        (
            q(
                f"sum by (sink, outcome) (rate(kpiwatch_deliveries_total[{RATE}]))",
                "{{sink}} {{outcome}}",
            ),
            q(
                f"sum by (sink) (rate(kpiwatch_delivery_retries_total[{RATE}]))",
                "{{sink}} retried",
            ),
        ),
        "ops",
    ),
    PanelSpec(
        "Delivery time, p95",
        "Time to deliver a notification to a sink, retries included.",
        (
            q(
                "histogram_quantile(0.95, sum by (sink, le) "
                f"(rate(kpiwatch_delivery_duration_seconds_bucket[{RATE}])))",
                "{{sink}}",
            ),
        ),
        "s",
    ),
    PanelSpec(
        "Rate-limit waits",
        "Share of time notifications waited for a sink's rate limit (a DingTalk robot takes "
        "about 20 a minute), and waits per second.",
        (
            q(
                f"sum by (sink) (rate(kpiwatch_rate_limit_wait_seconds_total[{RATE}]))",
                "{{sink}} waiting",
            ),
            q(
                f"sum by (sink) (rate(kpiwatch_rate_limit_waits_total[{RATE}]))",
                "{{sink}} waits/s",
            ),
        ),
        width=12,
    ),
    PanelSpec(
        "Alerts dead-lettered",
        "Alerts a sink could not take within the retry budget (topic alerts-dead-letter).",
        (
            q(
                f"sum by (sink) (increase(kpiwatch_alerts_dead_lettered_total[{RANGE}]))",
                "{{sink}}",
                instant=True,
            ),
        ),
        kind="stat",
        width=12,
    ),
)

CONNECTORS: Final = (
    PanelSpec(
        "Age of the last successful sync",
        "Seconds since each source last finished a page or handed off a push, per store.",
        (
            q(
                "time() - max by (source, store) "
                f"(kpiwatch_connector_last_success_timestamp_seconds{{{STORE}}})",
                "{{source}} {{store}}",
            ),
        ),
        "s",
    ),
    PanelSpec(
        "Failed passes",
        "Passes that failed after retries (a receiver: pushes Kafka did not take).",
        (
            q(
                f"sum by (source) (increase(kpiwatch_connector_pass_failures_total[{RANGE}]))",
                "{{source}}",
                instant=True,
            ),
        ),
        kind="bargauge",
    ),
    PanelSpec(
        "Rejected records",
        "Platform records that could not be mapped, dead-lettered with their reason.",
        (
            q(
                f"sum by (source) (increase(kpiwatch_connector_rejected_total[{RANGE}]))",
                "{{source}}",
                instant=True,
            ),
        ),
        kind="bargauge",
    ),
)

KPIS: Final = (
    PanelSpec(
        "GMV today per store (reporting currency)",
        "Today's GMV in each store's own local day, converted to the reporting currency. KPI "
        "gauges show what the rules watch: this needs a rule on gmv by store (rules/library/"
        "sales.yaml has one).",
        (
            q(
                "max by (platform, marketplace, store, currency) "
                f"(kpiwatch_kpi_money{{{kpi('gmv', '1d', per_sku=False)}}})",
                "{{store}} ({{currency}})",
                instant=True,
            ),
        ),
        "short",
        kind="bargauge",
        width=12,
    ),
    PanelSpec(
        "Top 10 ACoS by SKU (today)",
        "Ad spend / ad sales per SKU, today; from the ACoS rules (rules/library/default.yaml).",
        (
            q(
                "topk(10, max by (store, sku) "
                f"(kpiwatch_kpi_ratio{{{kpi('acos', '1d', per_sku=True)}}}))",
                "{{store}} {{sku}}",
                instant=True,
            ),
        ),
        "percentunit",
        kind="bargauge",
        width=12,
    ),
    PanelSpec(
        "Lowest 10 days of cover",
        "Sellable stock / units sold per day (trailing 7 days) per SKU: the stockout forecast.",
        (
            q(
                "bottomk(10, min by (store, sku) "
                f"(kpiwatch_kpi_seconds{{{kpi('days_of_cover', '7d', per_sku=True)}}}))",
                "{{store}} {{sku}}",
                instant=True,
            ),
        ),
        "s",
        kind="bargauge",
    ),
    PanelSpec(
        "Stockouts per store",
        "SKUs with nothing sellable left (available < 1), per store; 0 is good.",
        (
            q(
                "sum by (store) (max by (store, sku) "
                f"(kpiwatch_kpi_quantity{{{kpi('available', '', per_sku=True)}}}) < bool 1)",
                "{{store}}",
                instant=True,
            ),
        ),
        kind="stat",
    ),
    PanelSpec(
        "Target pace per store",
        "Month-to-date attainment / share of the month gone: 100% is on pace. Needs monthly "
        "targets (KPIWATCH_TARGETS_FILE) and rules/library/targets.yaml.",
        (
            q(
                f"max by (store) (kpiwatch_kpi_ratio{{{kpi('pace', 'mtd', per_sku=False)}}})",
                "{{store}}",
                instant=True,
            ),
        ),
        "percentunit",
        kind="bargauge",
    ),
)

ROWS: Final = (
    ("Pipeline", PIPELINE),
    ("Alerts", ALERTS),
    ("Connectors", CONNECTORS),
    ("KPIs", KPIS),
)


def target(query: Query, ref: str) -> prometheus.Dataquery:
    built = (
        prometheus.Dataquery()
        .expr(query.expr)
        .legend_format(query.legend or "__auto")
        .ref_id(ref)
        .datasource(DATASOURCE)
    )
    return built.instant() if query.instant else built.range()


PanelBuilder = timeseries.Panel | stat.Panel | table.Panel | bargauge.Panel


def panel(spec: PanelSpec, panel_id: int) -> PanelBuilder:
    built: PanelBuilder
    last = common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    if spec.kind == "timeseries":
        built = (
            timeseries.Panel()
            .fill_opacity(10)
            .span_nulls(True)
            .legend(
                common_builders.VizLegendOptions()
                .display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM)
                .show_legend(True)
            )
            .tooltip(
                common_builders.VizTooltipOptions()
                .mode(common.TooltipDisplayMode.MULTI)
                .sort(common.SortOrder.DESCENDING)
            )
        )
    elif spec.kind == "stat":
        built = stat.Panel().reduce_options(last)
    elif spec.kind == "table":
        built = table.Panel()
    else:
        built = (
            bargauge.Panel()
            .orientation(common.VizOrientation.HORIZONTAL)
            .display_mode(common.BarGaugeDisplayMode.GRADIENT)
            .reduce_options(last)
        )
    built = (
        built.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
    )
    for index, query in enumerate(spec.queries):
        built = built.with_target(target(query, chr(ord("A") + index)))
    return built


def variable(name: str, label: str, selector: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": f"label_values({selector}, {name})", "refId": "PrometheusVariableQuery"})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )


# The series a scope variable's values come from: every KPI gauge, and for stores also the
# connectors' (a store whose feed is connected before any rule has judged it).
KPI_SERIES: Final = '{__name__=~"kpiwatch_kpi_(ratio|money|quantity|seconds|flag)"'
VARIABLES: Final = (
    ("marketplace", "Marketplace", KPI_SERIES + ', marketplace!=""}'),
    (
        "store",
        "Store",
        '{__name__=~"kpiwatch_kpi_(ratio|money|quantity|seconds|flag)'
        '|kpiwatch_connector_last_success_timestamp_seconds", store!=""}',
    ),
    ("team", "Team", KPI_SERIES + ', team!=""}'),
)


def build() -> dashboard.Dashboard:
    board = (
        dashboard.Dashboard("kpiwatch")
        .uid(UID)
        .description(
            "kpiwatch's pipeline, alerts, connectors and the KPIs its rules watch "
            "(deploy/grafana/dashboard.py)."
        )
        .tags(["kpiwatch"])
        .timezone("browser")
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(
            dashboard.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
            .current(model.VariableOption(selected=True, text="Prometheus", value="prometheus"))
        )
    )
    for name, label, selector in VARIABLES:
        board = board.with_variable(variable(name, label, selector))
    panel_id = 0
    for title, specs in ROWS:
        panel_id += 1
        board = board.with_row(dashboard.Row(title).id(panel_id))
        for spec in specs:
            panel_id += 1
            board = board.with_panel(panel(spec, panel_id))
    return board


def render() -> str:
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the JSON is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
