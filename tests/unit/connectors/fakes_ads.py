"""A fake Amazon Ads API in the documented shapes (reporting v3 get-started guide): LWA tokens,
POST /reporting/reports -> PENDING, GET /reporting/reports/{id} -> PROCESSING -> COMPLETED with a
`url` this same fake serves as gzipped JSON; plus Marketing Stream records (sp-performance)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from unit.connectors.fakes import Reply, _json

S3 = "https://s3.fake"


def row(day: str, campaign: int, sku: str, cost: str = "1.25", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "date": day,
        "campaignId": campaign,
        "campaignName": f"Campaign {campaign}",
        "adId": campaign * 10,
        "advertisedSku": sku,
        "advertisedAsin": "B000000001",
        "impressions": 100,
        "clicks": 4,
        "cost": Decimal(cost),
        "sales7d": Decimal("20.00"),
        "purchases7d": 1,
    }
    data.update(changes)
    return data


def _dumps(rows: Any) -> bytes:
    # Decimals as JSON numbers (Amazon sends doubles), not strings.
    return json.dumps(rows, default=lambda d: float(d) if isinstance(d, Decimal) else d).encode()


@dataclass
class FakeAds:
    """`rows` is what every report holds; `polls` PROCESSING answers precede COMPLETED;
    `script[(operation, n)]` injects replies for the n-th call of an operation."""

    rows: list[Any]
    polls: int = 1
    token_calls: int | None = None
    fail_report: bool = False
    script: dict[tuple[str, int], list[Reply]] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    tokens_issued: int = 0
    _uses: int = 0
    _counts: dict[str, int] = field(default_factory=dict)
    _status_calls: dict[str, int] = field(default_factory=dict)

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> Reply:
        if path == "/auth/o2/token":
            return self._token(body)
        operation = self._operation(method, path)
        self.calls.append((operation, path, dict(headers)))
        self._counts[operation] = self._counts.get(operation, 0) + 1
        injected = self.script.get((operation, self._counts[operation]))
        if injected:
            return injected.pop(0)
        if operation == "download":
            return (
                200,
                {"content-type": "application/octet-stream"},
                gzip.compress(_dumps(self.rows)),
            )
        if not self._authorised(headers.get("authorization", "")):
            return _json(401, {"code": "UNAUTHORIZED", "details": "Access token expired"})
        if operation == "createReport":
            return self._create(body)
        return self._status(path.rsplit("/", 1)[1])

    @staticmethod
    def _operation(method: str, path: str) -> str:
        if path.startswith("/download/"):
            return "download"
        return "createReport" if method == "POST" else "getReport"

    def _create(self, body: bytes) -> Reply:
        request = json.loads(body)
        self.created.append(request)
        report_id = f"report-{len(self.created)}"
        return _json(200, {"reportId": report_id, "status": "PENDING", "url": None, **request})

    def _status(self, report_id: str) -> Reply:
        seen = self._status_calls[report_id] = self._status_calls.get(report_id, 0) + 1
        body: dict[str, Any] = {"reportId": report_id, "status": "PROCESSING", "url": None}
        if self.fail_report:
            body.update(status="FAILURE", failureReason="Report generation failed")
        elif seen > self.polls:
            body.update(status="COMPLETED", url=f"{S3}/download/{report_id}?X-Amz-Signature=s3cr")
        return _json(200, body)

    def _token(self, body: bytes) -> Reply:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("refresh_token") != "Atzr|ads-refresh":
            return _json(400, {"error": "invalid_grant", "error_description": "bad refresh token"})
        self.tokens_issued += 1
        self._uses = 0
        token = f"Atza|ads-token-{self.tokens_issued}"
        return _json(200, {"access_token": token, "token_type": "bearer", "expires_in": 3600})

    def _authorised(self, header: str) -> bool:
        if header != f"Bearer Atza|ads-token-{self.tokens_issued}":
            return False
        self._uses += 1
        return self.token_calls is None or self._uses <= self.token_calls


def traffic(rid: str, hour: str, clicks: int = 3, cost: str = "1.50", **changes: Any) -> Any:
    data: dict[str, Any] = {
        "idempotency_id": rid,
        "dataset_id": "sp-traffic",
        "marketplace_id": "ATVPDKIKX0DER",
        "currency": "USD",
        "advertiser_id": "A3ADVERTISER",
        "campaign_id": "111",
        "ad_group_id": "222",
        "ad_id": "333",
        "keyword_id": "444",
        "keyword_text": "shoes",
        "match_type": "EXACT",
        "placement": "Top of Search on-Amazon",
        "time_window_start": hour,
        "clicks": clicks,
        "impressions": 100,
        "cost": Decimal(cost),
    }
    data.update(changes)
    return data


def conversion(rid: str, hour: str, sales: str = "30.00", orders: int = 2, **changes: Any) -> Any:
    data: dict[str, Any] = {
        key: value
        for key, value in traffic(rid, hour).items()
        if key not in ("clicks", "impressions", "cost", "keyword_text", "match_type")
    }
    data["dataset_id"] = "sp-conversion"
    for window in ("1d", "7d", "14d", "30d"):
        data[f"attributed_sales_{window}"] = Decimal(sales)
        data[f"attributed_conversions_{window}"] = orders
        data[f"attributed_units_ordered_{window}"] = orders
    data.update(changes)
    return data


def message(record: Any, sns: bool = True) -> bytes:
    raw = _dumps(record).decode()
    if not sns:
        return raw.encode()
    envelope = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:906013806264:sp-traffic",
        "Message": raw,
        "Timestamp": "2026-11-20T11:05:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/cert.pem",
    }
    return json.dumps(envelope).encode()
