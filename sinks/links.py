"""The links an alert carries: its Grafana panel, and signed "silence" / "acknowledge" actions
that the worker's HTTP API serves (streams/notify.py), so a person acts from the chat message
without logging in anywhere.

A link is `{url}/silence-link?a=<action>&fp=<fingerprint>&d=<seconds>&exp=<unix>&r=<rule>&sig=`
where `sig` is HMAC-SHA256 over every other field: changing any of them voids it, and so does
time passing `exp`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlencode

from pydantic import SecretStr

from rules.alerts import Alert
from sinks.config import LinksConfig

Action = Literal["silence", "ack"]
ACTIONS: Final[tuple[Action, ...]] = ("silence", "ack")
PATH: Final = "/silence-link"

# The dashboard's panel for a KPI (deploy/grafana/dashboards/kpiwatch.json); any other KPI
# links to "Firing alerts by rule and severity".
PANELS: Final[dict[str, int]] = {
    "gmv": 23,
    "acos": 24,
    "days_of_cover": 25,
    "stockout": 26,
    "pace": 27,
    "target_attainment": 27,
}
ALERTS_PANEL: Final = 11


class LinkError(ValueError):
    """A silence link that must not be honoured: expired, tampered with, or malformed."""


@dataclass(frozen=True)
class SignedAction:
    """What a verified link asks for."""

    action: Action
    fingerprint: str
    seconds: float
    rule: str
    expires: int


def sign(key: SecretStr, fields: Mapping[str, str]) -> str:
    text = "\n".join(f"{name}={fields[name]}" for name in sorted(fields))
    digest = hmac.new(key.get_secret_value().encode(), text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def verify(key: SecretStr, query: Mapping[str, str], now: float) -> SignedAction:
    """The action a link's query asks for; LinkError when it is expired, altered or incomplete."""
    fields = {name: query.get(name, "") for name in ("a", "fp", "d", "exp", "r")}
    if not all(fields[name] for name in ("a", "fp", "d", "exp")):
        raise LinkError("incomplete link")
    if not hmac.compare_digest(sign(key, fields), query.get("sig", "")):
        raise LinkError("the link's signature does not match (altered, or the key has changed)")
    action = fields["a"]
    if action not in ACTIONS:
        raise LinkError(f"unknown action {action!r}")
    try:
        expires, seconds = int(fields["exp"]), float(fields["d"])
    except ValueError:
        raise LinkError("malformed link") from None
    if now >= expires:
        raise LinkError("the link has expired")
    chosen: Action = "silence" if action == "silence" else "ack"
    return SignedAction(chosen, fields["fp"], seconds, fields["r"], expires)


class Links:
    """Builds each alert's links from the sinks file's `links:` settings."""

    def __init__(self, config: LinksConfig, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock

    @property
    def silence_duration(self) -> float | None:
        silence = self._config.silence
        return silence.duration if silence is not None else None

    def grafana(self, alert: Alert) -> str | None:
        grafana = self._config.grafana
        if grafana is None:
            return None
        params = {"orgId": "1", "viewPanel": str(PANELS.get(alert.kpi, ALERTS_PANEL))}
        if alert.window_start is not None and alert.window_end is not None:
            params["from"] = str(int(alert.window_start.timestamp() * 1000))
            params["to"] = str(int(alert.window_end.timestamp() * 1000))
        base = grafana.url.rstrip("/")
        return f"{base}/d/{grafana.dashboard_uid}/kpiwatch?{urlencode(params)}"

    def action(self, alert: Alert, action: Action) -> str | None:
        silence = self._config.silence
        if silence is None or alert.status != "firing":
            return None
        fields = {
            "a": action,
            "fp": alert.fingerprint,
            "d": f"{silence.duration:g}",
            "exp": str(int(self._clock() + silence.lifetime)),
            "r": alert.rule,
        }
        query = urlencode({**fields, "sig": sign(silence.key.get(), fields)})
        return f"{silence.url.rstrip('/')}{PATH}?{query}"
