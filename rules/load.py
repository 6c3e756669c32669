"""Load rule files: YAML -> `RuleFile` -> `CompiledRule`s, with every problem at once, file:line.

Defaults are resolved here, once, so the evaluator never guesses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rules.errors import ConfigError, Problem
from rules.kpis import CATALOG, LEVEL_LABELS, KpiSpec, Level, level_of
from rules.schema import (
    SEVERITY_ORDER,
    Guard,
    RuleFile,
    RuleSpec,
    Severity,
    Threshold,
    is_currency,
)
from rules.yamlfile import line_of, parse_yaml, plain, problems_of

DEFAULT_RULES = "default.yaml"


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

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


class RuleSet:
    """Compiled rules indexed by (kpi, scope level): an update meets only rules that can match."""

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.rules = tuple(rules)
        self._index: dict[tuple[str, frozenset[str]], list[CompiledRule]] = {}
        for rule in self.rules:
            self._index.setdefault((rule.kpi.name, rule.level), []).append(rule)

    def matching(self, kpis: Iterable[str], level: frozenset[str]) -> list[CompiledRule]:
        found: list[CompiledRule] = []
        for kpi in kpis:
            found.extend(self._index.get((kpi, level), ()))
        return found

    def __len__(self) -> int:
        return len(self.rules)


def load_paths(paths: Sequence[Path]) -> RuleSet:
    """Load and compile rule files (or folders of *.yaml); raises ConfigError with every problem."""
    problems: list[Problem] = []
    compiled: list[CompiledRule] = []
    for path in _expand(paths, problems):
        try:
            compiled.extend(load_text(path.read_text(encoding="utf-8"), str(path)))
        except ConfigError as exc:
            problems.extend(exc.problems)
        except OSError as exc:
            problems.append(Problem(str(path), None, f"cannot read: {exc.strerror}"))
    problems.extend(_duplicate_names(compiled))  # across files; load_text did each file
    if problems:
        raise ConfigError(problems)
    return RuleSet(compiled)


def load_default() -> RuleSet:
    """The rules shipped inside the package, used by `kpiwatch demo`."""
    text = resources.files("rules").joinpath("library", DEFAULT_RULES).read_text("utf-8")
    return RuleSet(load_text(text, f"<kpiwatch>/rules/library/{DEFAULT_RULES}"))


def load_text(text: str, source: str) -> list[CompiledRule]:
    """Compile one file's rules; every problem in it is reported at once."""
    document = parse_yaml(text, source)
    problems: list[Problem] = []
    compiled: list[CompiledRule] = []
    for index, raw in enumerate(_rule_items(document, source, problems)):
        spec = _validate_rule(raw, document, index, source, problems)
        if spec is None:
            continue
        rule_problems = [
            Problem(source, line_of(document, ("rules", index, key)), message)
            for key, message in _check(spec)
        ]
        problems.extend(rule_problems)
        if not rule_problems:
            compiled.append(_compile(spec, source, line_of(document, ("rules", index))))
    problems.extend(_duplicate_names(compiled))
    if problems:
        raise ConfigError(problems)
    return compiled


def _rule_items(document: Any, source: str, problems: list[Problem]) -> list[Any]:
    """The raw rules of a file whose outer shape (`rules:` and nothing else) is right."""
    try:
        # The rules themselves are validated one by one, so that each gets its own problems.
        shell = plain(document)
        if isinstance(shell, dict) and "rules" in shell:
            shell["rules"] = []
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
) -> RuleSpec | None:
    try:
        return RuleSpec.model_validate(raw)
    except ValidationError as exc:
        problems.extend(problems_of(exc, document, ("rules", index), source))
        return None


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


def _check(rule: RuleSpec) -> list[tuple[str, str]]:
    """Checks against the KPI catalog, as (key at fault, message), all reported together."""
    where = f"rule {rule.name!r}"
    spec = CATALOG.get(rule.kpi)
    if spec is None:
        return [("kpi", f"{where}: unknown kpi {rule.kpi!r} (known: {_known()})")]
    level = level_of(rule.by)
    problems = _scopeproblems_of(where, spec, rule, level) + _windowproblems_of(where, spec, rule)
    for threshold in rule.thresholds.values():
        problems.extend(("thresholds", m) for m in _unitproblems_of(where, spec, threshold))
    for guard in rule.require:
        problems.extend(("require", m) for m in _guardproblems_of(where, guard, level))
    return problems


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


def _compile(rule: RuleSpec, file: str, line: int | None) -> CompiledRule:
    spec = CATALOG[rule.kpi]
    return CompiledRule(
        name=rule.name,
        description=rule.description,
        kpi=spec,
        level=_rule_level(rule),
        window=rule.window or spec.default_window,
        thresholds=tuple((s, rule.thresholds[s]) for s in SEVERITY_ORDER if s in rule.thresholds),
        guards=tuple(rule.require),
        filters=tuple((k, frozenset(v)) for k, v in sorted(rule.filters.items())),
        labels=tuple(sorted(rule.labels.items())),
        file=file,
        line=line,
    )


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
