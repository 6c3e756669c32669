"""Guarantee 7, secrets: a real worker whose every sink fails, and `kpiwatch connect` runs whose
marketplace endpoints fail, write no secret anywhere: not in their logs, not in the dead-letter,
alerts-dead-letter, alerts or events topics.

The secrets are the real kinds (robot tokens in webhook URLs, signing secrets, the SMTP password,
an Alertmanager bearer token, KPIWATCH_WEBHOOK_URL, Login-with-Amazon client secret and refresh
token, the access token LWA hands out, Shopee's partner key and refresh token), given as the
product takes them: environment variables named by `{env: ...}` in the sinks and connect files.
The endpoints are as unhelpful as they come: one refuses connections, others answer 5xx, 401,
an error code in a 200 (DingTalk, Feishu, WeCom), or too slowly, and every answer echoes the
request it got (URL and body), as a proxy's error page or an API's validation error does; the
SMTP server echoes the AUTH line. The scanner (faults.secrets) looks for each secret as written,
JSON-escaped, URL-encoded and inside base64; it is shown to find them in what the endpoints
received, so a clean scan means the processes kept them to themselves.
"""

from __future__ import annotations

import json
import os
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import pytest
from faults.secrets import assert_no_secrets, topic_records
from integration.support import REPO, Services, WorkerFactory, free_port, read_topic

from connectors.kafka import EventProducer, ensure_topics
from connectors.simulator import simulate
from streams.events import EVENTS_TOPIC, TOPICS, RawRecord, encode

pytestmark = [pytest.mark.integration, pytest.mark.faults]

START: Final = datetime(2026, 11, 20, tzinfo=UTC)
# Every secret is distinctive, so that finding it anywhere is no coincidence.
TOKENS: Final[dict[str, str]] = {
    "dingtalk": "dt0ken7f3a9c1e5b2d8f4a6c0e9b3d7f1a5c",
    "dingtalk_secret": "SECdingtalk5b1e9f3a7c2d6e0b4f8a1c5e9d3b7f",
    "feishu": "fs0hook9c2d4e6f8a0b1c3d5e7f9a2b4c6d8e0f",
    "feishu_secret": "feishuSign0d4c8e2a6f1b5d9c3e7a0f4b8d2c6e",
    "wecom": "wc0key3e7a1f5b9d2c6e0a4f8b3d7c1e5a9f2b6d",
    "slack": "sl0ackXYZ4b8d2f6a0c4e8b2d6f0a4c8e2b6d0f4a",
    "teams": "tm0eams6f0a4c8e2b6d0f4a8c2e6b0d4f8a2c6e0b",
    "hook": "hk0token1c5e9a3d7f1b5c9e3a7d1f5b9c3e7a1d5f",
    "hook_signing": "hk0sign8e2a6f0b4d8c2e6a0f4b8d2c6e0a4f8b2d",
    "smtp_password": "smtp0pass-2e6f0a4c8e2b6d0f4a8c2e6b",
    "alertmanager": "am0bearer-9d3b7f1a5c9e3b7d1f5a9c3e7b1d",
    "webhook_url": "kpw0hook-7a1e5b9d3f7c1a5e9b3d7f1c5a9e",
    "lwa_secret": "amzn1.oa2-cs.v1.lwa0sec-e8a1c5f9b3d7e1a5",
    "sp_refresh": "Atzr|IwEBIsp0refresh-3c7f1b5d9a3e7c1f5b9d",
    "sp_access": "Atza|IwEBIsp0access-6b2e0a4d8f2c6a0e4b8d",
    "shopee_key": "shp0partnerkey-4a8b2c6e0d4f8a2c6e0b4d8f",
    "shopee_refresh": "shp0refresh-5c1b9d3f7a1c5e9b3d7f1a5c",
}


# --- Endpoints that fail, and say back what they were sent ----------------------------------


@dataclass
class Hostile:
    """An HTTP server for every sink and connector endpoint: it fails as the path says and
    echoes the request (URL and body). `seen` holds each request as it arrived, headers too."""

    port: int = 0
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def text(self) -> str:
        with self.lock:
            return "\n".join(self.seen)


def _answer(path: str, echo: str, body: bytes) -> tuple[int, dict[str, Any] | str, float]:
    """(status, body, delay) for a request: the path's first segment says how it fails."""
    kind = path.strip("/").split("/", 1)[0]
    if kind == "code":  # a chat robot's error code in a 200: DingTalk, Feishu, WeCom
        return 200, {"errcode": 310000, "errmsg": echo, "code": 19021, "msg": echo}, 0.0
    if kind == "deny":
        return 401, f"<html><body>401 Unauthorized: {echo}</body></html>", 0.0
    if kind == "slow":
        return 200, {"ok": True}, 3.0
    if kind == "auth":  # Login with Amazon: deny, echoing the form (refresh token, secret)
        if path.startswith("/auth/o2/token"):
            token = {"access_token": TOKENS["sp_access"], "token_type": "bearer"}
            return 200, {**token, "expires_in": 3600}, 0.0
        return 400, {"error": "invalid_grant", "error_description": echo}, 0.0
    if kind == "orders":  # SP-API getOrders: a page with one good and one bad order, then 403
        query = parse_qs(urlsplit(path).query)
        if query.get("NextToken"):
            errors = [{"code": "Unauthorized", "message": echo, "details": echo}]
            return 403, {"errors": errors}, 0.0
        orders = [_order(1, "USD"), _order(2, "XXQ")]
        payload = {"Orders": orders, "NextToken": "page-2", "LastUpdatedBefore": _NOW}
        return 200, {"payload": payload}, 0.0
    if kind == "api":  # Shopee: an error with the request in its message
        return 200, {"error": "error_auth", "message": echo, "request_id": "r-1"}, 0.0
    return 500, f"Internal Server Error while handling {echo}", 0.0


_NOW = "2026-11-21T00:00:00Z"


def _order(number: int, currency: str) -> dict[str, Any]:
    return {
        "AmazonOrderId": f"902-0000000-{number:07d}",
        "PurchaseDate": "2026-11-20T10:00:00Z",
        "LastUpdateDate": f"2026-11-20T10:{number:02d}:00Z",
        "OrderStatus": "Unshipped",
        "FulfillmentChannel": "MFN",
        "MarketplaceId": "ATVPDKIKX0DER",
        "OrderTotal": {"CurrencyCode": currency, "Amount": "10.00"},
    }


def _items(order_id: str) -> dict[str, Any]:
    currency = "XXQ" if order_id.endswith("2") else "USD"
    item = {
        "ASIN": "B000000001",
        "OrderItemId": f"item-{order_id}",
        "SellerSKU": "SKU-1",
        "QuantityOrdered": 1,
        "ItemPrice": {"CurrencyCode": currency, "Amount": "10.00"},
    }
    return {"payload": {"AmazonOrderId": order_id, "OrderItems": [item]}}


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    found = Hostile()

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            echo = f"{self.command} {self.path} {body.decode(errors='replace')}"
            with found.lock:  # headers too: bearer tokens travel there (they are not echoed)
                found.seen.append(f"{echo} {dict(self.headers)}")
            answer: dict[str, Any] | str
            if self.path.startswith("/orders/v0/orders/") and self.path.endswith("/orderItems"):
                status, answer, delay = 200, _items(self.path.split("/")[4]), 0.0
            else:
                status, answer, delay = _answer(self.path, echo, body)
            time.sleep(delay)
            data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            kind = "text/html" if isinstance(answer, str) else "application/json"
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the slow path: the sink gave up waiting, as it should

        do_GET = do_POST = do_PUT = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Smtp:
    """An SMTP server that offers AUTH and refuses every login, echoing the AUTH lines."""

    port: int = 0
    seen: list[str] = field(default_factory=list)


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    found = Smtp()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.say("220 hostile ESMTP")
            while line := self.rfile.readline().decode(errors="replace").strip():
                found.seen.append(line)
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    self.say("250-hostile\r\n250 AUTH PLAIN LOGIN")
                elif line.upper().startswith("AUTH LOGIN"):
                    self.say("334 UGFzc3dvcmQ6")
                    password = self.rfile.readline().decode(errors="replace").strip()
                    found.seen.append(password)
                    self.say(f"535 5.7.8 Authentication failed for {line} {password}")
                elif verb == "AUTH":
                    self.say(f"535 5.7.8 Authentication failed for {line}")
                elif verb == "QUIT":
                    self.say("221 bye")
                    return
                else:
                    self.say(f"502 5.5.2 not here: {line}")

        def say(self, text: str) -> None:
            self.wfile.write(text.encode() + b"\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    found.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- The worker's side ----------------------------------------------------------------------

SINKS: Final = ("ding", "feishu", "wecom", "slack", "teams", "hook", "mail", "am")


def sinks_environment(hostile: Hostile, refused: int) -> dict[str, str]:
    """The variables the sinks file names, holding the secrets (URLs with tokens in them)."""
    t = TOKENS
    return {
        "T_DT_URL": hostile.url(f"/code/robot/send?access_token={t['dingtalk']}"),
        "T_DT_SECRET": t["dingtalk_secret"],
        "T_FS_URL": hostile.url(f"/code/open-apis/bot/v2/hook/{t['feishu']}"),
        "T_FS_SECRET": t["feishu_secret"],
        "T_WC_URL": hostile.url(f"/fail/cgi-bin/webhook/send?key={t['wecom']}"),
        "T_SLACK_URL": hostile.url(f"/deny/services/T0001/B0001/{t['slack']}"),
        "T_TEAMS_URL": hostile.url(f"/slow/webhookb2/{t['teams']}"),
        "T_HOOK_URL": hostile.url(f"/fail/hook?token={t['hook']}"),
        "T_HOOK_SIGNING": t["hook_signing"],
        "T_SMTP_PASSWORD": t["smtp_password"],
        "T_AM_TOKEN": t["alertmanager"],
        "KPIWATCH_WEBHOOK_URL": f"http://127.0.0.1:{refused}/hook?token={t['webhook_url']}",
    }


def sinks_file(path: Path, hostile: Hostile, smtp: Smtp) -> Path:
    path.write_text(
        f"""sinks:
  - {{name: ding, type: dingtalk, url: {{env: T_DT_URL}}, secret: {{env: T_DT_SECRET}}}}
  - {{name: feishu, type: feishu, url: {{env: T_FS_URL}}, secret: {{env: T_FS_SECRET}}}}
  - {{name: wecom, type: wecom, url: {{env: T_WC_URL}}}}
  - {{name: slack, type: slack, url: {{env: T_SLACK_URL}}}}
  - {{name: teams, type: teams, url: {{env: T_TEAMS_URL}}}}
  - name: hook
    type: webhook
    url: {{env: T_HOOK_URL}}
    signing_secret: {{env: T_HOOK_SIGNING}}
  - name: mail
    type: email
    host: 127.0.0.1
    port: {smtp.port}
    security: none
    username: ops@example.com
    password: {{env: T_SMTP_PASSWORD}}
    sender: kpiwatch@example.com
    to: [ops@example.com]
    timeout: 5
  - name: am
    type: alertmanager
    url: {hostile.url("/fail/alertmanager")}
    bearer_token: {{env: T_AM_TOKEN}}
route:
  sinks: [{", ".join(SINKS)}]
  group_wait: 0s
  group_interval: 1s
delivery:
  attempts: 2
  base_delay: 0.1s
  max_delay: 0.2s
  timeout: 1s
"""
    )
    return path


async def produce_events(services: Services, prefix: str) -> int:
    """Simulated traffic with a stockout and an ACoS spike (alerts to deliver), and bad events
    (dead letters); returns how many bad ones."""
    names = [prefix + n for n in (EVENTS_TOPIC, *TOPICS.values(), "alerts", "dead-letter")]
    await ensure_topics(services.kafka_bootstrap, names, 4)
    lines = [encode(e) for e in simulate(START, hours=30, stores=3, seed=5)]
    bad = [b"{broken", b"\xff\xfe", b'{"type": "order", "event_id": "x"}', b"[1, 2]"]
    async with EventProducer(services.kafka_bootstrap, prefix) as producer:
        for value in bad:
            await producer.send_raw(prefix + EVENTS_TOPIC, value, key=b"amazon-us-01")
        records = (RawRecord(source=str(n), value=line) for n, line in enumerate(lines))
        await producer.send_records(records)
    return len(bad) + 1  # `[1, 2]` is two of them


# --- The connector's side -------------------------------------------------------------------


def connect_file(path: Path, hostile: Hostile, token_path: str, prefix: str) -> Path:
    """Amazon SP-API and Shopee against the hostile server; store ids of this test's own (the
    cursors in Redis are per store)."""
    store = prefix.strip(".")
    path.write_text(
        f"""amazon_sp:
  client_id: amzn1.application-oa2-client.test
  client_secret: {{env: T_LWA_SECRET}}
  endpoint: {hostile.url("")}
  token_url: {hostile.url(token_path)}
  start: 2026-11-01T00:00:00Z
  feeds: [orders]
  stores:
    - store_id: sp-{store}
      marketplace_id: ATVPDKIKX0DER
      currency: USD
      refresh_token: {{env: T_SP_REFRESH}}
shopee:
  partner_id: 2001234
  partner_key: {{env: T_SHOPEE_KEY}}
  host: {hostile.url("")}
  start: 2026-11-01T00:00:00Z
  shops:
    - {{store_id: shopee-{store}, shop_id: 123456789, region: MY}}
  refresh_tokens:
    shopee-{store}: {{env: T_SHOPEE_REFRESH}}
"""
    )
    return path


def run_connect(
    source: str, config: Path, services: Services, prefix: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPIWATCH_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "T_LWA_SECRET": TOKENS["lwa_secret"],
        "T_SP_REFRESH": TOKENS["sp_refresh"],
        "T_SHOPEE_KEY": TOKENS["shopee_key"],
        "T_SHOPEE_REFRESH": TOKENS["shopee_refresh"],
    }
    command = [
        *(sys.executable, "-m", "streams.cli", "-v", "connect", source, "--config", str(config)),
        *("--once", "--broker", services.kafka_bootstrap, "--topic-prefix", prefix),
        *("--redis", services.redis_url, "--metrics", "127.0.0.1:0"),
    ]
    return subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=180, check=False
    )


# --- The test -------------------------------------------------------------------------------


async def test_no_secret_in_logs_dead_letters_or_alerts_when_every_endpoint_fails(
    services: Services,
    prefix: str,
    worker_factory: WorkerFactory,
    hostile: Hostile,
    smtp: Smtp,
    tmp_path: Path,
) -> None:
    refused = free_port()  # nothing listens there: KPIWATCH_WEBHOOK_URL is refused
    worker = worker_factory(prefix, instance_id=f"{prefix}w")
    worker.env |= sinks_environment(hostile, refused)
    worker.env |= {
        "KPIWATCH_SINKS_FILE": str(sinks_file(tmp_path / "sinks.yaml", hostile, smtp)),
        "KPIWATCH_REDIS_URL": services.redis_url,
    }
    bad = await produce_events(services, prefix)
    worker.start()

    # Every sink fails: each lane gives up and dead-letters what it was given.
    lanes = await read_topic(
        services.kafka_bootstrap,
        prefix + "alerts-dead-letter",
        until=lambda got: {r["sink"].split(":")[0] for r in got} >= {*SINKS, "webhook"},
        timeout=120.0,
    )
    dead = await read_topic(
        services.kafka_bootstrap, prefix + "dead-letter", until=lambda got: len(got) >= bad
    )
    alerts = await read_topic(services.kafka_bootstrap, prefix + "alerts", until=bool)
    worker.stop()
    reasons = sorted({f"{r['sink']}: {r['reason']}" for r in lanes})
    print(f"{len(alerts)} alert(s), {len(dead)} dead letter(s); dead-lettered per sink:")
    print("\n".join(f"  {reason}" for reason in reasons))
    assert {r["sink"].split(":")[0] for r in lanes} >= {*SINKS, "webhook"}

    # The connector: LWA refuses (echoing the refresh token and client secret), then LWA
    # answers and the orders API serves a bad record and then refuses (echoing the request);
    # Shopee refuses the token refresh (echoing the refresh token).
    refusing = connect_file(tmp_path / "refusing.yaml", hostile, "/auth/deny", prefix)
    answering = connect_file(tmp_path / "answering.yaml", hostile, "/auth/o2/token", prefix)
    runs = {
        "amazon-sp refused": run_connect("amazon-sp", refusing, services, prefix),
        "amazon-sp failing": run_connect("amazon-sp", answering, services, prefix),
        "shopee refused": run_connect("shopee", refusing, services, prefix),
    }
    for name, run in runs.items():
        assert run.returncode == 1, f"{name}: exit {run.returncode}\n{run.stderr[-3000:]}"
        assert "Traceback" not in run.stderr, run.stderr
    connect_dead = await read_topic(
        services.kafka_bootstrap,
        prefix + "dead-letter",
        until=lambda got: len(got) > len(dead),
        timeout=30.0,
    )
    assert any("XXQ" in r.get("reason", "") for r in connect_dead), connect_dead[len(dead) :]

    secrets = list(TOKENS.values())
    # The endpoints did get the secrets (so the scan below can find them if they leak) ...
    received = hostile.text() + "\n" + "\n".join(smtp.seen)
    sent = ["dingtalk", "feishu", "wecom", "slack", "teams", "hook", "smtp_password"]
    sent += ["lwa_secret", "sp_refresh", "shopee_refresh", "sp_access", "alertmanager"]
    for name in sent:
        with pytest.raises(AssertionError):
            assert_no_secrets([TOKENS[name]], texts=[("what the endpoints received", received)])
    # ... and nothing the processes wrote holds any of them.
    topics = [prefix + t for t in ("dead-letter", "alerts-dead-letter", "alerts", EVENTS_TOPIC)]
    records = await topic_records(services.kafka_bootstrap, topics)
    texts = [(f"connect {name} {stream}", getattr(run, stream)) for name, run in runs.items()
             for stream in ("stdout", "stderr")]  # fmt: skip
    assert_no_secrets(secrets, files=[tmp_path], texts=texts, records=records)
    print(f"scanned {len(records)} records, {len(texts)} outputs and the worker's logs")
