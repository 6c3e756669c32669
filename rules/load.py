"""Load rule files: YAML -> `RuleFile` -> `CompiledRule`s, with every problem at once, file:line.

Defaults are resolved here, once, so the evaluator never guesses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from rules import calendars as cal
from rules.calendars import Calendar
from rules.errors import ConfigError, Problem
from rules.kpis import CATALOG, LEVEL_LABELS, STORE, TEAM, KpiSpec, Level, level_of
from rules.messages import template_problems
from rules.schema import (
    SEVERITY_ORDER,
    Baseline,
    CalendarSpec,
    Guard,
    NoData,
    RuleFile,
    RuleSpec,
    ScorecardCheck,
    Severity,
    Threshold,
    duration_text,
    is_currency,
)
from rules.scorecard import (
    PERIOD_WINDOWS,
    Scorecard,
    is_scorecard_document,
    load_scorecard_text,
    merge,
)
from rules.yamlfile import line_of, parse_yaml, plain, problems_of, read_text

DEFAULT_RULES = "default.yaml"
_Ranked = tuple[int, "CompiledRule"]  # a rule and its position among all loaded rules
# Filters the rule index looks rules up by, most selective first.
INDEXED_LABELS = ("store", "sku", "campaign", "marketplace", "platform", "team")
# Silence is counted in hour buckets, which are kept 72 hours.
MAX_SILENCE = timedelta(hours=72)
# Counts a feed's silence shows in (orders or units for the order feed, clicks or impressions
# for the ads feed).
SILENCE_KPIS = ("orders", "units", "clicks", "impressions", "feed_syncs")


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready to run: catalog entry looked up, scope level and severities ordered."""

    name: str
    description: str
    kpi: KpiSpec
    level: frozenset[str]
    window: str | None
    thresholds: tuple[tuple[Severity, Threshold], ...]
    guards: tuple[Guard, ...]
    filters: tuple[tuple[str, frozenset[str]], ...]
    labels: tuple[tuple[str, str], ...]
    file: str
    line: int | None
    clear: Threshold | None = None
    for_: timedelta | None = None
    repeat: timedelta | None = None
    mute: tuple[Calendar, ...] = ()
    messages: tuple[tuple[str, str], ...] = ()
    baseline: Baseline | None = None
    no_data: NoData | None = None
    during: tuple[Calendar, ...] = ()
    # The currency the thresholds are written in, if any (what a money value is picked in).
    money_unit: str | None = None
    scorecard: ScorecardCheck | None = None
    # The team scorecards a `scorecard:` rule judges (from the files loaded with it).
    cards: Mapping[str, Scorecard] = field(default_factory=dict, hash=False, compare=False)

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass(frozen=True)
class WindowPlan:
    """The rules a scope is judged by over one window, and what they read: their KPIs and
    guards (those the window has) and their baselines."""

    window: str | None
    rules: tuple[CompiledRule, ...]
    names: tuple[str, ...]
    baselines: tuple[Baseline, ...]


class RuleSet:
    """Compiled rules indexed by scope level and KPI family, and rules with filters also by the
    value of their most selective filter: a scope meets only the rules that can match it, so
    thousands of per-store rules cost a store's update little more than its own. What a scope
    (level, families, labels) is judged by is worked out once and remembered (`plan`)."""

    PLANS_KEPT = 100_000

    def __init__(
        self, rules: Sequence[CompiledRule], scorecards: Mapping[str, Scorecard] | None = None
    ) -> None:
        self.rules = tuple(rules)
        # Team scorecards found among the rule files (`kpiwatch scorecard`, `/scorecards`).
        self.scorecards: Mapping[str, Scorecard] = dict(scorecards or {})
        # no_data rules judge silence, which no update touches: the pipeline checks them apart.
        self.silent = tuple(rule for rule in self.rules if rule.no_data is not None)
        self._all: dict[tuple[str, Level], list[_Ranked]] = {}
        self._open: dict[tuple[str, Level], list[_Ranked]] = {}
        self._by_label: dict[tuple[str, Level, str, str], list[_Ranked]] = {}
        self._plans: dict[tuple[Level, frozenset[str], tuple[str, ...]], tuple[WindowPlan, ...]]
        self._plans = {}
        for ranked in enumerate(self.rules):
            self._add(ranked)

    def _add(self, ranked: _Ranked) -> None:
        rule = ranked[1]
        if rule.no_data is not None:
            return
        for family in rule.kpi.families:
            key = (family, rule.level)
            self._all.setdefault(key, []).append(ranked)
            filters = dict(rule.filters)
            # Indexed under its most selective filter; `passes_filters` still checks them all.
            label = next((name for name in INDEXED_LABELS if name in filters), None)
            if label is None:
                self._open.setdefault(key, []).append(ranked)
                continue
            for value in filters[label]:
                self._by_label.setdefault((*key, label, value), []).append(ranked)

    def plan(
        self, level: Level, families: frozenset[str], labels: Mapping[str, str]
    ) -> tuple[WindowPlan, ...]:
        """The rules that judge a scope of `level` with `labels` when events of `families`
        changed it, grouped by window in file order."""
        values = tuple(labels.get(name, "") for name in INDEXED_LABELS)
        key = (level, families, values)
        found = self._plans.get(key)
        if found is None:
            if len(self._plans) >= self.PLANS_KEPT:
                self._plans.clear()
            found = self._plans[key] = self._make_plan(level, families, labels)
        return found

    def _make_plan(
        self, level: Level, families: frozenset[str], labels: Mapping[str, str]
    ) -> tuple[WindowPlan, ...]:
        ranked: dict[int, CompiledRule] = {}
        for family in families:
            for rank, rule in self._open.get((family, level), ()):
                ranked[rank] = rule
            for label in INDEXED_LABELS:
                if label in labels:
                    for rank, rule in self._by_label.get((family, level, label, labels[label]), ()):
                        ranked[rank] = rule
        by_window: dict[str | None, list[CompiledRule]] = {}
        for _, rule in sorted(ranked.items()):
            if all(labels.get(name) in allowed for name, allowed in rule.filters):
                by_window.setdefault(rule.window, []).append(rule)
        return tuple(_window_plan(window, group) for window, group in by_window.items())

    def matching(
        self, kpis: Iterable[str], level: Level, labels: Mapping[str, str] | None = None
    ) -> list[CompiledRule]:
        """The rules of these KPIs at this level (per KPI, in file order); with the scope's
        `labels`, only those whose filters admit the scope. A scan: the engine uses `plan`."""
        return [
            rule
            for kpi in kpis
            for rule in self.rules
            if rule.no_data is None
            and rule.level == level
            and rule.kpi.name == kpi
            and (labels is None or all(labels.get(n) in a for n, a in rule.filters))
        ]

    def __len__(self) -> int:
        return len(self.rules)


def _window_plan(window: str | None, rules: list[CompiledRule]) -> WindowPlan:
    names: dict[str, None] = {}
    for rule in rules:
        names[rule.kpi.name] = None
        for guard in rule.guards:
            names[guard.kpi] = None
        for card in rule.cards.values():  # a scorecard rule reads its cards' KPIs
            names.update(dict.fromkeys(card.names()))
    kept = tuple(name for name in names if _has_window(name, window))
    baselines = {r.baseline.key: r.baseline for r in rules if r.baseline is not None}
    return WindowPlan(window, tuple(rules), kept, tuple(baselines.values()))


def _has_window(name: str, window: str | None) -> bool:
    spec = CATALOG.get(name)
    if spec is None:
        return False
    return window in spec.windows if window is not None else not spec.windowed


def load_paths(paths: Sequence[Path]) -> RuleSet:
    """Load and compile rule files (or folders of *.yaml); raises ConfigError with every problem."""
    problems: list[Problem] = []
    compiled: list[CompiledRule] = []
    texts: list[tuple[str, str]] = []
    for path in _expand(paths, problems):
        try:
            texts.append((read_text(path), str(path)))
        except ConfigError as exc:
            problems.extend(exc.problems)
    # A calendar named in one file may be used by the rules of another (a calendars file).
    shared = _shared_calendars(texts, problems)
    cards: list[Mapping[str, Scorecard]] = []
    for text, source in texts:
        try:
            if _is_scorecard_file(text, source):
                cards.append(load_scorecard_text(text, source))
            else:
                compiled.extend(load_text(text, source, shared))
        except ConfigError as exc:
            problems.extend(exc.problems)
    problems.extend(_duplicate_names(compiled))  # across files; load_text did each file
    scorecards, repeated = merge(cards)
    problems.extend(repeated)
    problems.extend(_cardless(compiled, scorecards))
    if problems:
        raise ConfigError(problems)
    compiled = [replace(r, cards=scorecards) if r.scorecard else r for r in compiled]
    return RuleSet(compiled, scorecards)


def _cardless(rules: Sequence[CompiledRule], cards: Mapping[str, Scorecard]) -> list[Problem]:
    if cards:
        return []
    return [
        Problem(
            r.file,
            r.line,
            f"rule {r.name!r}: scorecard: needs a scorecards: file loaded "
            "with the rules (none found)",
        )
        for r in rules
        if r.scorecard is not None
    ]


def _is_scorecard_file(text: str, source: str) -> bool:
    """A scorecard file may sit next to the rule files it is loaded with (`scorecards:`)."""
    try:
        return is_scorecard_document(parse_yaml(text, source))
    except ConfigError:
        return False  # load_text reports it


def load_default() -> RuleSet:
    """The rules shipped inside the package, used by `kpiwatch demo`."""
    text = resources.files("rules").joinpath("library", DEFAULT_RULES).read_text("utf-8")
    return RuleSet(load_text(text, f"<kpiwatch>/rules/library/{DEFAULT_RULES}"))


def load_library() -> RuleSet:
    """The whole shipped library (rules, calendars, the example scorecards)."""
    with resources.as_file(resources.files("rules").joinpath("library")) as folder:
        return load_paths([folder])


def load_text(
    text: str, source: str, shared: Mapping[str, Calendar] | None = None
) -> list[CompiledRule]:
    """Compile one file's rules; every problem in it is reported at once. `shared` holds the
    calendars of every file loaded together (this file's own are added)."""
    document = parse_yaml(text, source)
    problems: list[Problem] = []
    compiled: list[CompiledRule] = []
    items = _rule_items(document, source, problems)
    own = _calendars_of(document, source, problems if shared is None else [])
    calendars = {**own, **(shared or {})}
    defaults = plain(document.get("defaults")) if items else None
    for index, raw in enumerate(items):
        spec, faulty = _validate_rule(_inherit(raw, defaults), document, index, source, problems)
        if spec is None:
            continue
        rule_problems = [
            Problem(source, line_of(document, ("rules", index, key)), message)
            for key, message in _check(spec, calendars)
            if key not in faulty  # already reported by the schema
        ]
        problems.extend(rule_problems)
        if not rule_problems and not faulty:
            line = line_of(document, ("rules", index))
            compiled.append(_compile(spec, source, line, calendars))
    problems.extend(_duplicate_names(compiled))
    if problems:
        raise ConfigError(problems)
    return compiled


def _inherit(raw: Any, defaults: Any) -> Any:
    """The rule with the file's defaults under it; labels are merged, the rule's win."""
    if not isinstance(raw, dict) or not isinstance(defaults, dict):
        return raw
    if "scorecard" in raw:  # the file's window: or require: are not a scorecard's
        defaults = {k: v for k, v in defaults.items() if k not in _NOT_FOR_SCORECARDS}
    merged = {**defaults, **raw}
    if isinstance(defaults.get("labels"), dict) and isinstance(raw.get("labels"), dict):
        merged["labels"] = {**defaults["labels"], **raw["labels"]}
    return merged


def _calendars_of(document: Any, source: str, problems: list[Problem]) -> dict[str, Calendar]:
    """The file's valid calendars; what is wrong with the others goes to `problems`."""
    raw = document.get("calendars") if isinstance(document, dict) else None
    found: dict[str, Calendar] = {}
    if not isinstance(raw, dict):
        return found
    for name, body in raw.items():
        try:
            spec = CalendarSpec.model_validate(plain(body))
        except ValidationError as exc:
            for problem in problems_of(exc, document, ("calendars", name), source):
                # A whole-calendar error has no key of its own to name.
                message = problem.message.replace("file: ", f"calendar {name!r}: ", 1)
                problems.append(Problem(problem.file, problem.line, message))
            continue
        messages = cal.problems_of(str(name), spec)
        line = line_of(document, ("calendars", name))
        problems.extend(Problem(source, line, m) for m in messages)
        if not messages:
            found[str(name)] = Calendar(str(name), spec)
    return found


def _shared_calendars(texts: list[tuple[str, str]], problems: list[Problem]) -> dict[str, Calendar]:
    shared: dict[str, Calendar] = {}
    where: dict[str, str] = {}
    for text, source in texts:
        try:
            document = parse_yaml(text, source)
        except ConfigError:
            continue  # load_text reports it
        found = _calendars_of(document, source, problems)
        for name in found:
            if name in where:
                line = line_of(document, ("calendars", name))
                problems.append(
                    Problem(source, line, f"calendar {name!r} is already defined in {where[name]}")
                )
            where.setdefault(name, source)
        shared = {**found, **shared}
    return shared


def _rule_items(document: Any, source: str, problems: list[Problem]) -> list[Any]:
    """The raw rules of a file whose outer shape (`rules:` and nothing else) is right."""
    try:
        # The rules themselves are validated one by one, so that each gets its own problems.
        shell = plain(document)
        if isinstance(shell, dict) and "rules" in shell:
            shell["rules"] = []
        if isinstance(shell, dict) and isinstance(shell.get("calendars"), dict):
            shell["calendars"] = {}  # checked one by one in _calendars_of
        RuleFile.model_validate(shell)
    except ValidationError as exc:
        problems.extend(problems_of(exc, document, (), source))
        return []
    rules = document.get("rules")
    if not isinstance(rules, list):
        problems.append(
            Problem(
                source,
                line_of(document, ("rules",)),
                "rules: expected a list of rules, each starting with '- name:'",
            )
        )
        return []
    return [plain(rule) for rule in rules]


def _validate_rule(
    raw: Any, document: Any, index: int, source: str, problems: list[Problem]
) -> tuple[RuleSpec | None, frozenset[str]]:
    """The rule's spec and the keys the schema found wrong. A rule with schema errors is
    validated again without its faulty keys, so that its other keys are still checked against
    the catalog and the calendars (every problem at once); such a spec is never compiled."""
    try:
        return RuleSpec.model_validate(raw), frozenset()
    except ValidationError as exc:
        problems.extend(problems_of(exc, document, ("rules", index), source))
        errors = exc.errors(include_url=False)
    faulty = frozenset(str(e["loc"][0]) for e in errors if e["loc"])
    if not isinstance(raw, dict) or not faulty or "name" in faulty:
        return None, faulty
    try:
        return RuleSpec.model_validate({k: v for k, v in raw.items() if k not in faulty}), faulty
    except ValidationError:
        return None, faulty  # a required key is at fault: nothing left to check


def _expand(paths: Sequence[Path], problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        elif path.exists():
            files.append(path)
        else:
            problems.append(Problem(str(path), None, "no such file or folder"))
    return files


def _check(rule: RuleSpec, calendars: Mapping[str, Calendar]) -> list[tuple[str, str]]:
    """Checks against the KPI catalog and the calendars, as (key at fault, message), all
    reported together."""
    where = f"rule {rule.name!r}"
    if rule.scorecard is not None:
        return _scorecardproblems_of(where, rule)
    if rule.kpi is None:
        return [("kpi", "missing required key 'kpi'")]
    if not rule.thresholds and rule.no_data is None:
        # A rule without thresholds is unfinished: reported like any missing key, alone.
        return [("thresholds", "missing required key 'thresholds'")]
    spec = CATALOG.get(rule.kpi)
    if spec is None:
        return [("kpi", f"{where}: unknown kpi {rule.kpi!r} (known: {_known()})")]
    level = level_of(rule.by)
    problems = _scopeproblems_of(where, spec, rule, level) + _windowproblems_of(where, spec, rule)
    problems.extend(_kindproblems_of(where, spec, rule, level))
    for threshold in rule.thresholds.values() if not rule.baseline else ():
        problems.extend(("thresholds", m) for m in _unitproblems_of(where, spec, threshold))
    for guard in rule.require:
        problems.extend(("require", m) for m in _guardproblems_of(where, guard, level))
    problems.extend(("thresholds", m) for m in _orderproblems_of(where, rule))
    problems.extend(("clear", m) for m in _clearproblems_of(where, spec, rule))
    problems.extend(_calendarproblems_of(where, rule, calendars))
    for language, template in rule.message.items():
        problems.extend(
            ("message", f"{where}: message {language}: {m}") for m in template_problems(template)
        )
    return problems


def _kindproblems_of(
    where: str, spec: KpiSpec, rule: RuleSpec, level: Level | None
) -> list[tuple[str, str]]:
    """What a baseline or no_data rule needs beyond a plain threshold rule."""
    if rule.no_data is not None:
        return _nodataproblems_of(where, rule, level)
    if rule.baseline is None:
        return []
    problems = []
    if (rule.window or spec.default_window) != "1d" or not spec.windowed:
        problems.append(
            (
                "window",
                f"{where}: a baseline compares local days; use a KPI kept per day and window: 1d",
            )
        )
    if any(t.unit != "%" for t in rule.thresholds.values()):
        problems.append(
            (
                "thresholds",
                f"{where}: a baseline rule judges the value as a share of the usual one; "
                "write thresholds such as '< 60%' (down 40%) or '> 150%' (up 50%)",
            )
        )
    return problems


def _scorecardproblems_of(where: str, rule: RuleSpec) -> list[tuple[str, str]]:
    """A scorecard rule judges a team's score against its card's bands, nothing else."""
    problems = []
    if level_of(rule.by) != TEAM:
        problems.append(("by", f"{where}: a scorecard is a team's; write by: [team]"))
    taken = [k for k in _NOT_FOR_SCORECARDS if getattr(rule, k)]
    problems.extend(
        (key, f"{where}: a scorecard rule judges the card's bands; remove {key}:") for key in taken
    )
    check = rule.scorecard
    if check is not None and check.warning is None and check.critical is None:
        problems.append(("scorecard", f"{where}: scorecard: name a band for warning or critical"))
    if check is not None and check.warning == "red" and check.critical == "yellow":
        problems.append(("scorecard", f"{where}: scorecard: critical must be the worse band (red)"))
    return problems


_NOT_FOR_SCORECARDS = ("kpi", "thresholds", "window", "require", "clear", "baseline", "no_data")


def _nodataproblems_of(where: str, rule: RuleSpec, level: Level | None) -> list[tuple[str, str]]:
    problems = []
    if rule.kpi not in SILENCE_KPIS:
        problems.append(
            ("kpi", f"{where}: no_data counts {' or '.join(SILENCE_KPIS)}, not {rule.kpi}")
        )
    if rule.thresholds:
        problems.append(
            ("thresholds", f"{where}: a no_data rule fires on silence; remove thresholds:")
        )
    if level != STORE:
        problems.append(("by", f"{where}: no_data watches one store's feed; write by: [store]"))
    if rule.no_data is not None and rule.no_data.after > MAX_SILENCE:
        problems.append(
            ("no_data", f"{where}: no_data after: is at most 72h (hourly counts are kept 3 days)")
        )
    if rule.baseline is not None or rule.window is not None:
        problems.append(("no_data", f"{where}: a no_data rule takes no baseline: or window:"))
    return problems


def _orderproblems_of(where: str, rule: RuleSpec) -> list[str]:
    """Critical is judged first: a warning that critical always covers can never fire."""
    warning, critical = rule.thresholds.get("warning"), rule.thresholds.get("critical")
    if warning is None or critical is None or warning.upward != critical.upward:
        return []
    if _warning_can_fire(warning, critical):
        return []
    side = "above" if warning.upward else "below"
    return [
        f"{where}: warning '{warning}' can never fire: every value {side} it is already "
        f"critical '{critical}'; critical must be beyond warning"
    ]


def _warning_can_fire(warning: Threshold, critical: Threshold) -> bool:
    """Some value breaches warning but not critical (both point the same way)."""
    if warning.value != critical.value:
        return (critical.value > warning.value) == warning.upward
    return warning.op in (">=", "<=") and critical.op in (">", "<")


def _clearproblems_of(where: str, spec: KpiSpec, rule: RuleSpec) -> list[str]:
    clear = rule.clear
    if clear is None:
        return []
    unit = _unitproblems_of(where, spec, clear) if rule.baseline is None else []
    if unit:
        return unit
    for severity, threshold in rule.thresholds.items():
        if clear.upward == threshold.upward:
            return [
                f"{where}: clear '{clear}' points the same way as {severity} '{threshold}'; "
                f"a clear threshold says when the value is back to normal"
            ]
        if clear.overlaps(threshold):
            return [
                f"{where}: clear '{clear}' overlaps {severity} '{threshold}': a value could "
                f"breach and clear at once"
            ]
    return []


def _calendarproblems_of(
    where: str, rule: RuleSpec, calendars: Mapping[str, Calendar]
) -> list[tuple[str, str]]:
    known = ", ".join(sorted(calendars)) or "none defined; add them under calendars:"
    named = [("mute", n) for n in rule.mute]
    named += [("no_data", n) for n in (rule.no_data.during if rule.no_data else [])]
    return [
        (key, f"{where}: unknown calendar {name!r} (known: {known})")
        for key, name in named
        if name not in calendars
    ]


def _scopeproblems_of(
    where: str, spec: KpiSpec, rule: RuleSpec, level: Level | None
) -> list[tuple[str, str]]:
    if level is not None and level in spec.levels:
        return []
    return [
        (
            "by",
            f"{where}: {spec.name} is kept {_levels_text(spec)}, not per "
            f"{' and '.join(rule.by)}; write {_by_choices(spec)} and use "
            f"filters: to pick marketplaces or stores",
        )
    ]


def _windowproblems_of(where: str, spec: KpiSpec, rule: RuleSpec) -> list[tuple[str, str]]:
    if rule.window is None:
        return []
    if not spec.windowed:
        return [
            (
                "window",
                f"{where}: {spec.name} is a current level, not a total over time; remove window:",
            )
        ]
    if rule.window not in spec.windows:
        return [
            (
                "window",
                f"{where}: {spec.name} takes window {' or '.join(spec.windows)}, not {rule.window}",
            )
        ]
    return []


def _guardproblems_of(where: str, guard: Guard, level: Level | None) -> list[str]:
    guard_spec = CATALOG.get(guard.kpi)
    if guard_spec is None:
        return [f"{where}: require: {guard.kpi!r} is not a KPI (known: {_known()})"]
    if level is not None and level not in guard_spec.levels:
        return [f"{where}: require: {guard.kpi} is not kept per {' and '.join(_ordered(level))}"]
    return _unitproblems_of(where, guard_spec, guard.threshold)


def _known() -> str:
    return ", ".join(sorted(CATALOG))


def _levels(spec: KpiSpec) -> list[Level]:
    return [level for level in LEVEL_LABELS if level in spec.levels]


def _ordered(level: Level) -> list[str]:
    return [label for label in LEVEL_LABELS[level] if label in level]


def _levels_text(spec: KpiSpec) -> str:
    return " or ".join(f"per {' and '.join(_ordered(lvl))}" for lvl in _levels(spec))


def _by_choices(spec: KpiSpec) -> str:
    return " or ".join(f"by: [{', '.join(_ordered(lvl))}]" for lvl in _levels(spec))


def _unitproblems_of(where: str, spec: KpiSpec, threshold: Threshold) -> list[str]:
    unit = threshold.unit
    if unit == "%" and spec.unit != "ratio":
        return [f"{where}: '{threshold}' is a percentage but {spec.name} is a {spec.unit}"]
    if unit == "d" and spec.unit != "days":
        return [f"{where}: '{threshold}' is in days but {spec.name} is a {spec.unit}"]
    if unit == "d":
        return []
    if unit not in (None, "%") and spec.unit != "money":
        return [f"{where}: '{threshold}' has a currency but {spec.name} is a {spec.unit}"]
    if unit not in (None, "%") and not is_currency(unit):
        return [f"{where}: '{threshold}': {unit} is not an ISO 4217 currency code"]
    return []


def _rule_level(rule: RuleSpec) -> Level:
    level = level_of(rule.by)
    if level is None:  # pragma: no cover - _check reports it before anything compiles
        raise ValueError(f"rule {rule.name!r}: no scope level for by: {rule.by}")
    return level


def _compile(
    rule: RuleSpec, file: str, line: int | None, calendars: Mapping[str, Calendar]
) -> CompiledRule:
    if rule.scorecard is not None:
        return _compile_scorecard(rule, rule.scorecard, file, line, calendars)
    spec = CATALOG[str(rule.kpi)]
    thresholds = _thresholds(rule)
    return CompiledRule(
        name=rule.name,
        description=rule.description,
        kpi=spec,
        level=_rule_level(rule),
        window=None if rule.no_data else rule.window or spec.default_window,
        thresholds=thresholds,
        guards=tuple(rule.require),
        filters=tuple((k, frozenset(v)) for k, v in sorted(rule.filters.items())),
        labels=tuple(sorted(rule.labels.items())),
        file=file,
        line=line,
        clear=rule.clear,
        for_=rule.for_,
        repeat=rule.repeat,
        mute=tuple(calendars[name] for name in rule.mute),
        messages=tuple(sorted(rule.message.items())),
        baseline=rule.baseline,
        no_data=rule.no_data,
        during=tuple(calendars[n] for n in (rule.no_data.during if rule.no_data else [])),
        money_unit=next((t.unit for _, t in thresholds if t.unit not in (None, "%", "d")), None),
    )


def _thresholds(rule: RuleSpec) -> tuple[tuple[Severity, Threshold], ...]:
    if rule.no_data is not None:
        # Silence is "fewer than one in the span": the lifecycle then treats it like any breach.
        text = f"none for {duration_text(rule.no_data.after)}"
        return ((rule.no_data.severity, Threshold("<", Decimal(1), None, text)),)
    return tuple((s, rule.thresholds[s]) for s in SEVERITY_ORDER if s in rule.thresholds)


def _duplicate_names(rules: Sequence[CompiledRule]) -> list[Problem]:
    seen: dict[str, CompiledRule] = {}
    problems = []
    for rule in rules:
        if rule.name in seen:
            first = seen[rule.name].source
            problems.append(
                Problem(rule.file, rule.line, f"rule name {rule.name!r} is already used at {first}")
            )
        seen.setdefault(rule.name, rule)
    return problems


# What a scorecard rule judges: a team's score (0-100), read from the KPIs of its card.
SCORE_KPI = "scorecard_score"
_BAND_THRESHOLDS: Final[Mapping[str, str]] = {
    "yellow": "below green (yellow or red)",
    "red": "below yellow (red)",
}


def _compile_scorecard(
    rule: RuleSpec,
    check: ScorecardCheck,
    file: str,
    line: int | None,
    calendars: Mapping[str, Calendar],
) -> CompiledRule:
    window = PERIOD_WINDOWS[check.period]
    spec = KpiSpec(
        SCORE_KPI, "count", frozenset({TEAM}), frozenset({"orders", "ads"}), (window,), window,
        f"the team's scorecard score over the {check.period}",
    )  # fmt: skip
    # Nominal: each card has its own bands (rules.evaluate judges with them); these name the
    # band in a resolved alert.
    bands: tuple[tuple[Severity, str | None], ...] = (
        ("critical", check.critical),
        ("warning", check.warning),
    )
    thresholds = tuple(
        (severity, Threshold("<", Decimal(0), None, _BAND_THRESHOLDS[band]))
        for severity, band in bands
        if band is not None
    )
    return CompiledRule(
        name=rule.name,
        description=rule.description,
        kpi=spec,
        level=TEAM,
        window=window,
        thresholds=thresholds,
        guards=(),
        filters=tuple((k, frozenset(v)) for k, v in sorted(rule.filters.items())),
        labels=tuple(sorted(rule.labels.items())),
        file=file,
        line=line,
        for_=rule.for_,
        repeat=rule.repeat,
        mute=tuple(calendars[name] for name in rule.mute),
        messages=tuple(sorted(rule.message.items())),
        scorecard=check,
    )
