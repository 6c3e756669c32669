"""Prometheus Alertmanager: POST alerts to its v2 API, so SREs reuse its routing and silences.

Docs: https://prometheus.io/docs/alerting/latest/clients/ (PostableAlert in api/v2/openapi.yaml)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from rules.alerts import Alert
from sinks import http, redact
from sinks.config import AlertmanagerConfig
from sinks.render import render


class AlertmanagerSink:
    """A firing alert is posted with startsAt and no endsAt, so Alertmanager resolves it by
    itself after its `resolve_timeout` unless it is posted again; a resolved one carries endsAt.
    """

    def __init__(self, config: AlertmanagerConfig, client: httpx.AsyncClient) -> None:
        self.name = config.name
        self._config = config
        self._client = client
        self._endpoint = config.url.rstrip("/") + "/api/v2/alerts"
        redact.install()

    @classmethod
    def from_config(cls, config: AlertmanagerConfig, client: httpx.AsyncClient) -> AlertmanagerSink:
        return cls(config, client)

    async def send(self, alerts: Sequence[Alert]) -> None:
        body = http.json_bytes([self.postable(alert) for alert in alerts])
        response = await http.post(self._client, self.name, self._endpoint, body, self._headers())
        http.raise_for_status(self.name, response)

    def postable(self, alert: Alert) -> dict[str, Any]:
        labels = {**alert.labels, "alertname": alert.rule, "severity": alert.severity}
        annotations = {
            "summary": alert.summary,
            "description": render([alert], "en").text(),
            "kpi": alert.kpi,
            "value": "" if alert.value is None else str(alert.value),
            "threshold": alert.threshold,
        }
        when = alert.at.isoformat()
        timing = {"endsAt": when} if alert.status == "resolved" else {"startsAt": when}
        source = {"generatorURL": self._config.generator_url} if self._config.generator_url else {}
        return {"labels": labels, "annotations": annotations, **timing, **source}

    def _headers(self) -> dict[str, str]:
        token = self._config.bearer_token
        return (
            {} if token is None else {"authorization": f"Bearer {token.get().get_secret_value()}"}
        )
