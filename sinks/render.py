"""The words of a notification, in zh or en: one alert or a group of them as title, text,
markdown, Slack mrkdwn or HTML. Every sink renders through here; none has its own wording."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import iso4217

from rules.alerts import Alert, Money, format_value
from rules.kpis import CATALOG
from rules.schema import parse_threshold

if TYPE_CHECKING:
    from sinks.links import Links

Language = Literal["zh", "en"]

WORDS: Final[dict[Language, dict[str, str]]] = {
    "en": {
        "critical": "CRITICAL",
        "warning": "WARNING",
        "resolved": "RESOLVED",
        "value": "Value",
        "threshold": "Threshold",
        "scope": "Scope",
        "window": "Window",
        "time": "Time",
        "count": "{n} alerts",
        "more": "... and {n} more",
        "platform": "platform",
        "marketplace": "marketplace",
        "store": "store",
        "sku": "SKU",
        "grafana": "Grafana",
        "silence": "Silence {duration}",
        "ack": "Acknowledge",
        "hours": "{n} h",
    },
    "zh": {
        "critical": "严重",
        "warning": "警告",
        "resolved": "已恢复",
        "value": "当前值",
        "threshold": "阈值",
        "scope": "范围",
        "window": "统计窗口",
        "time": "时间",
        "count": "{n} 条告警",
        "more": "……另有 {n} 条",
        "platform": "平台",
        "marketplace": "站点",
        "store": "店铺",
        "sku": "SKU",
        "grafana": "Grafana 面板",
        "silence": "静默 {duration}",
        "ack": "确认",
        "hours": "{n} 小时",
    },
}
# The symbol a person expects; other currencies show their ISO code after the amount.
SYMBOLS: Final[dict[str, str]] = {
    "USD": "$", "JPY": "¥", "CNY": "CN¥", "EUR": "€", "GBP": "£", "KRW": "₩",
    "CAD": "CA$", "AUD": "A$", "MXN": "MX$", "SGD": "S$", "HKD": "HK$", "TWD": "NT$",
}  # fmt: skip
SCOPE_ORDER: Final = ("platform", "marketplace", "store", "sku")
BADGE: Final[dict[Language, str]] = {"en": "[{}] ", "zh": "【{}】"}
COLON: Final[dict[Language, str]] = {"en": ": ", "zh": "："}  # noqa: RUF001 - Chinese typography


@dataclass(frozen=True)
class Item:
    """One alert: a headline and (name, value) facts."""

    headline: str
    facts: tuple[tuple[str, str], ...]
    links: tuple[tuple[str, str], ...] = ()  # (words, URL)


@dataclass(frozen=True)
class Message:
    """A rendered group of alerts; `omitted` counts items cut to fit a platform's size limit."""

    language: Language
    title: str
    level: Literal["critical", "warning", "resolved"]
    items: tuple[Item, ...]
    omitted: int = 0

    def keep(self, count: int) -> Message:
        return replace(
            self, items=self.items[:count], omitted=self.omitted + len(self.items[count:])
        )

    @property
    def more(self) -> str:
        return WORDS[self.language]["more"].format(n=self.omitted) if self.omitted else ""

    def text(self) -> str:
        blocks = [self.title, *(_item_text(item, "  ") for item in self.items), self.more]
        return "\n\n".join(b for b in blocks if b)

    def markdown(self) -> str:
        """CommonMark subset the chat robots share: `###`, `**bold**`, `- ` lists."""
        blocks = [f"### {self.title}", *(item_markdown(item) for item in self.items), self.more]
        return "\n\n".join(b for b in blocks if b)

    def html(self) -> str:
        items = "".join(_item_html(item) for item in self.items)
        more = f"<p>{html.escape(self.more)}</p>" if self.more else ""
        return f"<html><body><h2>{html.escape(self.title)}</h2>{items}{more}</body></html>"


def render(alerts: Sequence[Alert], language: Language, links: Links | None = None) -> Message:
    """The group as one message; its level is the worst alert's (resolved only if all are).
    A rule's own message template, in this language, is the headline when it has one."""
    if not alerts:
        raise ValueError("nothing to render: no alerts")
    level = _level(alerts)
    words = WORDS[language]
    if len(alerts) == 1:
        own = alerts[0].messages.get(language)
        subject = own or f"{alerts[0].rule}{COLON[language]}{alerts[0].kpi} {_value(alerts[0])}"
    else:
        rules = ", ".join(dict.fromkeys(a.rule for a in alerts))
        subject = f"{rules}{COLON[language]}{words['count'].format(n=len(alerts))}"
    title = BADGE[language].format(words[level]) + subject
    return Message(language, title, level, tuple(_item(a, language, links) for a in alerts))


def fit(message: Message, form: Callable[[Message], str], max_bytes: int) -> str:
    """`form(message)` with as many items as fit in `max_bytes` of UTF-8 (platform limits)."""
    for count in range(len(message.items), 0, -1):
        text = form(message.keep(count))
        if len(text.encode()) <= max_bytes:
            return text
    return form(message.keep(1)).encode()[:max_bytes].decode(errors="ignore")


def item_markdown(item: Item) -> str:
    facts = "\n".join(f"- {name}: {value}" for name, value in item.facts)
    links = " · ".join(f"[{words}]({url})" for words, url in item.links)
    return f"**{item.headline}**\n\n{facts}" + (f"\n\n{links}" if links else "")


def item_mrkdwn(item: Item) -> str:
    """Slack's mrkdwn: single-asterisk bold; &, <, > escaped as Slack documents."""
    facts = "\n".join(f"• {_slack(name)}: {_slack(value)}" for name, value in item.facts)
    links = " · ".join(f"<{url}|{_slack(words)}>" for words, url in item.links)
    return f"*{_slack(item.headline)}*\n{facts}" + (f"\n{links}" if links else "")


def _slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _item_text(item: Item, indent: str) -> str:
    facts = [*item.facts, *item.links]
    return "\n".join([item.headline, *(f"{indent}{n}: {v}" for n, v in facts)])


def _item_html(item: Item) -> str:
    rows = "".join(
        f'<tr><th align="left">{html.escape(n)}</th><td>{html.escape(v)}</td></tr>'
        for n, v in item.facts
    )
    links = " · ".join(
        f'<a href="{html.escape(url)}">{html.escape(words)}</a>' for words, url in item.links
    )
    return f"<h3>{html.escape(item.headline)}</h3><table>{rows}</table>" + (
        f"<p>{links}</p>" if links else ""
    )


def _level(alerts: Sequence[Alert]) -> Literal["critical", "warning", "resolved"]:
    firing = [a for a in alerts if a.status == "firing"]
    if not firing:
        return "resolved"
    return "critical" if any(a.severity == "critical" for a in firing) else "warning"


def _item(alert: Alert, language: Language, links: Links | None = None) -> Item:
    words = WORDS[language]
    state = "resolved" if alert.status == "resolved" else alert.severity
    facts = [
        (words["value"], f"{alert.kpi} {_value(alert)}"),
        (words["threshold"], alert.threshold),
        (words["scope"], _scope(alert.labels, language)),
    ]
    zone = _zoneinfo(alert.zone)
    if alert.window_start is not None and alert.window_end is not None:
        facts.append((words["window"], _window(alert.window_start, alert.window_end, zone)))
    at = alert.at.astimezone(zone) if zone is not None else alert.at
    facts.append((words["time"], f"{at:%Y-%m-%d %H:%M:%S} {_zone(at)}"))
    headline = BADGE[language].format(words[state]) + (alert.messages.get(language) or alert.rule)
    return Item(headline, tuple(facts), _links(alert, language, links))


def _links(alert: Alert, language: Language, links: Links | None) -> tuple[tuple[str, str], ...]:
    if links is None:
        return ()
    words = WORDS[language]
    duration = links.silence_duration or 0
    hours = words["hours"].format(n=f"{duration / 3600:g}")
    found = [
        (words["grafana"], links.grafana(alert)),
        (words["silence"].format(duration=hours), links.action(alert, "silence")),
        (words["ack"], links.action(alert, "ack")),
    ]
    return tuple((text, url) for text, url in found if url is not None)


def _value(alert: Alert) -> str:
    """The value as read; money in the selling and the reporting currency: ¥1,980 / $12.87."""
    monies = [m for m in (alert.selling, alert.reporting) if m is not None]
    if monies and alert.value is not None:
        return " / ".join(dict.fromkeys(money(m) for m in monies))
    spec = CATALOG.get(alert.kpi)
    unit = spec.unit if spec is not None else "count"
    return format_value(alert.value, unit, _currency(alert.threshold))


def money(amount: Money) -> str:
    """`¥1,980`, `$12.87`, `1,234.50 PLN`: the currency's own minor digits."""
    try:
        digits = iso4217.Currency(amount.currency).exponent or 0
    except ValueError:
        digits = 2
    text = f"{amount.amount.quantize(Decimal(1).scaleb(-digits)):,}"
    symbol = SYMBOLS.get(amount.currency)
    return f"{symbol}{text}" if symbol is not None else f"{text} {amount.currency}"


def _currency(threshold: str) -> str | None:
    # The alert carries no currency; a money threshold names the one its value is in.
    try:
        unit = parse_threshold(threshold).unit
    except ValueError:
        return None
    return unit if unit not in (None, "%") else None


def _scope(labels: dict[str, str], language: Language) -> str:
    words = WORDS[language]
    keys: list[str] = [k for k in SCOPE_ORDER if k in labels]
    keys += sorted(k for k in labels if k not in SCOPE_ORDER)
    return " · ".join(f"{words.get(k, k)} {labels[k]}" for k in keys)


def _zoneinfo(name: str | None) -> ZoneInfo | None:
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _window(start: datetime, end: datetime, zone: ZoneInfo | None = None) -> str:
    """In the marketplace's zone: a local day `11-30 JST`, days `11-24 → 11-30 JST`, hours
    `11-30 14:00-15:00 JST`. Old records without a zone keep the full form in their offset."""
    if zone is None:
        return f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} {_zone(end)}"
    start, end = start.astimezone(zone), end.astimezone(zone)
    name = _zone(start)
    if start.time() == end.time() == datetime.min.time():
        last = end - timedelta(days=1)
        days = f"{start:%m-%d}" if last.date() == start.date() else f"{start:%m-%d} → {last:%m-%d}"
        return f"{days} {name}"
    return f"{start:%m-%d %H:%M}-{end:%H:%M} {name}"


def _zone(moment: datetime) -> str:
    return moment.tzname() or "UTC"
