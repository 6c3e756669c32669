"""Prometheus Alertmanager: POST alerts to its v2 API, so SREs reuse its routing and silences.

Docs: https://prometheus.io/docs/alerting/latest/clients/ (PostableAlert in api/v2/openapi.yaml)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx

from rules.alerts import Alert
from sinks import http, redact
from sinks.base import SinkError
from sinks.config import AlertmanagerConfig
from sinks.links import Links
from sinks.render import render

log = logging.getLogger(__name__)

# endsAt of a firing alert, in resend intervals ahead: three re-posts may fail before
# Alertmanager counts it resolved (Prometheus: 4 x max(evaluation interval, resend delay)).
LIFETIMES: Final = 4


class AlertmanagerSink:
    """Clients are expected to re-send active alerts (every 30 s to 3 min): a firing alert is
    posted with endsAt `LIFETIMES` resend intervals ahead, and posted again every interval
    while it fires; a resolved one is posted with endsAt = when it resolved, and forgotten.

    What fires is remembered by the worker that delivered it; after a restart or a rebalance,
    an alert nobody re-posts resolves in Alertmanager once its endsAt passes, until its rule's
    `repeat:` sends it again.
    """

    links: Links | None = None  # set by sinks.notifier: the description carries them

    def __init__(
        self,
        config: AlertmanagerConfig,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = config.name
        self._config = config
        self._client = client
        self._clock = clock
        self._endpoint = config.url.rstrip("/") + "/api/v2/alerts"
        self._firing: dict[str, Alert] = {}
        self._resender: asyncio.Task[None] | None = None
        redact.install()

    @classmethod
    def from_config(cls, config: AlertmanagerConfig, client: httpx.AsyncClient) -> AlertmanagerSink:
        return cls(config, client)

    async def send(self, alerts: Sequence[Alert]) -> None:
        await self._post(alerts)
        for alert in alerts:
            if alert.status == "firing":
                self._firing[alert.fingerprint] = alert
            else:
                self._firing.pop(alert.fingerprint, None)
        if self._firing and self._resender is None:
            self._resender = asyncio.create_task(self._resend(), name=f"{self.name} re-post")

    @property
    def firing(self) -> list[Alert]:
        """What this sink re-posts."""
        return list(self._firing.values())

    async def resend_once(self) -> None:
        """Post every firing alert again with a fresh endsAt."""
        if self._firing:
            await self._post(list(self._firing.values()))

    async def close(self) -> None:
        if self._resender is not None:
            self._resender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resender
            self._resender = None

    async def _resend(self) -> None:
        while True:
            await asyncio.sleep(self._config.resend_interval)
            try:
                await self.resend_once()
            except SinkError as exc:
                # The next interval tries again; endsAt leaves room for three misses.
                log.warning("re-posting %d firing alert(s) failed: %s", len(self._firing), exc)

    async def _post(self, alerts: Sequence[Alert]) -> None:
        body = http.json_bytes([self.postable(alert) for alert in alerts])
        response = await http.post(self._client, self.name, self._endpoint, body, self._headers())
        http.raise_for_status(self.name, response)

    def postable(self, alert: Alert) -> dict[str, Any]:
        labels = {**alert.labels, "alertname": alert.rule, "severity": alert.severity}
        annotations = {
            "summary": alert.messages.get("en") or alert.summary,
            "description": render([alert], "en", self.links).text(),
            "kpi": alert.kpi,
            "value": "" if alert.value is None else str(alert.value),
            "threshold": alert.threshold,
        }
        if self.links is not None and (grafana := self.links.grafana(alert)) is not None:
            annotations["dashboard"] = grafana
        if alert.status == "resolved":
            timing = {"endsAt": alert.at.isoformat()}
        else:
            # Alertmanager keeps the earliest startsAt of an alert it already holds.
            ahead = timedelta(seconds=LIFETIMES * self._config.resend_interval)
            ends = datetime.fromtimestamp(self._clock(), UTC) + ahead
            timing = {"startsAt": alert.at.isoformat(), "endsAt": ends.isoformat()}
        source = {"generatorURL": self._config.generator_url} if self._config.generator_url else {}
        return {"labels": labels, "annotations": annotations, **timing, **source}

    def _headers(self) -> dict[str, str]:
        token = self._config.bearer_token
        return (
            {} if token is None else {"authorization": f"Bearer {token.get().get_secret_value()}"}
        )
