"""Message templates in zh and en: `{scope}: {kpi} {value} is above {threshold} ({window})`.

Placeholders are checked when the rule file loads, so a typo is a load error, not a broken
notification at 3 a.m.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Formatter
from typing import Final

PLACEHOLDERS: Final = (
    "rule",
    "kpi",
    "severity",
    "status",
    "value",
    "threshold",
    "baseline",
    "scope",
    "window",
)


def template_problems(template: str) -> list[str]:
    """What is wrong with a template: unknown placeholders, positional `{}`, broken braces."""
    try:
        parts = [
            (f, spec, conv) for _, f, spec, conv in Formatter().parse(template) if f is not None
        ]
    except ValueError as exc:
        return [f"cannot read the template: {exc} (write a literal brace as '{{{{' or '}}}}')"]
    problems = []
    for field, spec, conversion in dict.fromkeys(parts):
        if field not in PLACEHOLDERS:
            problems.append(f"unknown placeholder {{{field}}} (known: {', '.join(PLACEHOLDERS)})")
        elif spec or conversion:
            # Values arrive formatted for people (62.50%, 1,234.00 USD); a format spec cannot apply.
            problems.append(f"write {{{field}}} without a format: values come formatted")
    return problems


def render(template: str, values: Mapping[str, str]) -> str:
    return template.format_map({name: values.get(name, "") for name in PLACEHOLDERS})
