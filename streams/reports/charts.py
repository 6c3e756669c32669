"""The report's charts as PNG bytes (matplotlib, Agg: no display, no system libraries)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from decimal import Decimal

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from streams.reports.build import DayPoint, Report

_GREEN, _RED = "#2e7d32", "#c62828"


def _figure() -> tuple[Figure, Axes]:
    # A bare Figure, not pyplot: no global state, no display, safe in a worker's threads.
    fig = Figure(figsize=(7.5, 3.2), dpi=110)
    return fig, fig.subplots()


def _floats(values: Sequence[Decimal | None]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def gmv_chart(report: Report) -> bytes:
    """GMV per local day as bars, the day target as a line."""
    points: list[DayPoint] = report.daily
    labels = [p.day.strftime("%m-%d") for p in points]
    fig, ax = _figure()
    gmv = _floats([p.gmv for p in points])
    colors = [_GREEN if p.target is None or (p.gmv or 0) >= p.target else _RED for p in points]
    ax.bar(labels, gmv, color=colors)
    # Swatches of their own: a bar's legend takes the first bar's colour, whatever it is.
    handles = [
        Patch(color=_GREEN, label=f"GMV ({report.currency}), on target"),
        Patch(color=_RED, label="below target"),
    ]
    if any(p.target is not None for p in points):
        ax.plot(labels, _floats([p.target for p in points]), color="#1f1f1f",
                linestyle="--", marker="", label="target")  # fmt: skip
    ax.set_title(f"GMV per day vs target, {report.team}")
    ax.set_ylabel(report.currency)
    ax.set_ylim(0, _top(gmv + _floats([p.target for p in points])))
    ax.grid(axis="y", alpha=0.3)
    lines, _ = ax.get_legend_handles_labels()
    ax.legend(handles=[*handles, *lines], loc="upper left", fontsize=8)
    _thin_labels(ax, len(labels))
    fig.tight_layout()
    return _png(fig)


def acos_chart(report: Report) -> bytes:
    """ACoS per local day, in percent; days without ad sales are gaps."""
    points = report.daily
    labels = [p.day.strftime("%m-%d") for p in points]
    fig, ax = _figure()
    acos = [v * 100 for v in _floats([p.acos for p in points])]
    ax.plot(labels, acos, color="#ef6c00", marker="o", label="ACoS")
    ax.set_title(f"ACoS trend, {report.team}")
    ax.set_ylabel("ACoS (%)")
    ax.set_ylim(0, _top(acos))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    _thin_labels(ax, len(labels))
    fig.tight_layout()
    return _png(fig)


def _top(values: Sequence[float]) -> float:
    """Room above the highest value for the legend."""
    known = [v for v in values if v == v]  # NaN marks an undefined day
    return max(known, default=1.0) * 1.3 or 1.0


def charts(report: Report) -> dict[str, bytes]:
    """Every chart by file stem: `gmv`, `acos`."""
    return {"gmv": gmv_chart(report), "acos": acos_chart(report)}


def _thin_labels(ax: Axes, count: int) -> None:
    step = max(1, count // 12)
    for i, label in enumerate(ax.get_xticklabels()):
        label.set_visible(i % step == 0)


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
