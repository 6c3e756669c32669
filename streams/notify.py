"""The worker's notification side: the `notify` agent over the alerts topic, the `/silences`
HTTP API, the signed `/silence-link` actions chat messages carry, and the consumer-lag gauge.

Alerts are read at least once: the agent acks an alert's offset only when every sink it was
routed to has delivered it, or it has gone to the alerts-dead-letter topic. What a crash makes
it read again is filtered by the idempotency keys the dispatcher recorded in Redis.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import faust
from pydantic import SecretStr, ValidationError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from rules.alerts import Alert
from sinks.base import Sink
from sinks.links import PATH, LinkError, SignedAction, verify
from sinks.load import SinksSetup
from sinks.notifier import build_dispatcher
from sinks.silence import Matcher, Silence, SilenceStore, namespace, silence_from_json
from streams import metrics
from streams.settings import Settings

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 10.0


def install_notifier(
    app: Any,
    alerts_topic: Any,
    settings: Settings,
    sinks: Sequence[Sink],
    setup: SinksSetup | None,
) -> None:
    """Add the notify agent, the /silences pages and the lag timer to the Faust app."""
    dead_topic = app.topic(
        settings.topic("alerts-dead-letter"), value_serializer="raw", key_serializer="raw"
    )
    redis = shared_redis(settings.redis_url) if settings.redis_url else None
    dispatcher, silences = build_dispatcher(
        sinks,
        setup,
        redis=redis,
        namespace=namespace(settings.topic_prefix),
        dead_letter=partial(_dead_letter_alerts, dead_topic),
        observer=metrics.DeliveryMetrics(),
    )
    metrics.KPI_GAUGES.cap = settings.kpi_series_cap

    async def notify(stream: Any) -> None:
        dispatcher.start()
        acks = InOrderAcks()
        try:
            async for event in stream.noack().events():
                _no_wait_for(app.consumer, event.message)
                await _submit(dispatcher, event, acks.track(event))
        finally:
            await dispatcher.close()

    async def consumer_lag() -> None:
        await metrics.update_lag(app.consumer)

    app.agent(alerts_topic, name="notify")(notify)
    app.timer(interval=LAG_INTERVAL_S)(consumer_lag)
    app.page("/silences")(silences_view(silences))
    silence = setup.links.silence if setup is not None and setup.links is not None else None
    if silence is not None:
        app.page(PATH)(silence_link_view(silences, silence.key.get()))


def shared_redis(url: str) -> Redis:
    """The client for dedupe keys, rate limits and silences. After a Redis restart, the first
    command on each pooled connection fails ("closed by server"): it is tried once more, at once,
    on a new connection. A Redis that is down still fails fast, and the notifier goes on."""
    return Redis.from_url(url, retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError])


def _no_wait_for(consumer: Any, message: Any) -> None:
    """Keep Faust from waiting for this alert's ack at a rebalance or a shutdown.

    Faust holds every rebalance and every shutdown until each message read is acked, but an
    alert may wait in its group for minutes, or behind a sink that is down: that would stall
    the whole consumer group. The offset still commits only once acked (Faust commits up to
    the first unacked offset), so an alert not yet delivered is read again by the partition's
    next owner, and the dedupe keys in Redis hold back what was already sent.
    Faust has no public switch for one agent (stream_wait_empty is app-wide).
    """
    consumer._unacked_messages.discard(message)


class InOrderAcks:
    """Acks each partition's alerts in offset order, whatever order they are delivered in.

    Alerts finish out of order (one group waits while another flushes), but Faust 0.15.3
    commits past a single unacked offset at the head of a partition when later ones are
    acked (an off-by-one in Consumer._new_offset), which would lose that alert on a crash.
    Holding later acks back until the head is done keeps commits behind every alert still
    being delivered; only the commit lags, never a delivery.
    """

    def __init__(self) -> None:
        self._pending: dict[Any, deque[list[Any]]] = {}

    def track(self, event: Any) -> Callable[[], None]:
        """Register the event now, in read order; call the result when it is done."""
        entry: list[Any] = [event, False]
        queue = self._pending.setdefault(event.message.tp, deque())
        queue.append(entry)

        def done() -> None:
            entry[1] = True
            while queue and queue[0][1]:
                queue.popleft()[0].ack()

        return done


async def _submit(dispatcher: Any, event: Any, done: Callable[[], None]) -> None:
    try:
        alert = Alert.model_validate_json(event.value)
    except ValidationError as exc:
        # Not ours to fix here: the producer is. Skipping it keeps later alerts flowing.
        message = event.message
        log.error(
            "alert %s/%s/%s is not an Alert, skipped: %s",
            message.topic,
            message.partition,
            message.offset,
            exc.errors(include_url=False)[:3],
        )
        done()
        return
    metrics.observe_alert(alert)
    await dispatcher.submit(alert, done)


async def _dead_letter_alerts(topic: Any, lane: str, alerts: Sequence[Alert], reason: str) -> None:
    record = {
        "sink": lane,
        "reason": reason,
        "alerts": [a.model_dump(mode="json") for a in alerts],
        "dead_lettered_at": datetime.now(UTC).isoformat(),
    }
    await topic.send(key=lane.encode(), value=json.dumps(record).encode())


def silences_view(store: SilenceStore | None) -> type[Any]:
    """GET lists silences (?expired=1 adds recently ended ones), POST creates one from JSON
    ({matchers: [{name, value, isRegex, isEqual}], duration | ends_at, created_by, comment}),
    DELETE ?id=... expires one."""

    class Silences(faust.web.View):
        async def get(self, request: Any) -> Any:
            if store is None:
                return _no_redis(self)
            expired = request.query.get("expired", "") not in ("", "0", "false")
            found = await store.silences(expired=expired)
            return self.json({"silences": [s.model_dump(mode="json") for s in found]})

        async def post(self, request: Any) -> Any:
            if store is None:
                return _no_redis(self)
            try:
                silence = silence_from_json(await request.json())
            except (ValueError, json.JSONDecodeError) as exc:
                return self.json({"error": str(exc)}, status=400)
            await store.add(silence)
            return self.json(silence.model_dump(mode="json"), status=201)

        async def delete(self, request: Any) -> Any:
            if store is None:
                return _no_redis(self)
            ended = await store.expire(request.query.get("id", ""))
            if ended is None:
                return self.json({"error": "no such silence in force"}, status=404)
            return self.json(ended.model_dump(mode="json"))

    return Silences


def _no_redis(view: Any) -> Any:
    return view.json({"error": "silences need Redis: set KPIWATCH_REDIS_URL"}, status=503)


def silence_link_view(
    store: SilenceStore | None, key: SecretStr, clock: Callable[[], float] = time.time
) -> type[Any]:
    """A chat message's signed link. GET only asks (chat apps open links to preview them, and
    a preview must not silence anything); the page's button POSTs, and that acts and is logged.
    """

    class SilenceLink(faust.web.View):
        async def get(self, request: Any) -> Any:
            action, problem = _verified(key, request.query, clock())
            if action is None:
                return self.html(_page("Link not usable", problem), status=403)
            return self.html(_confirm_page(action))

        async def post(self, request: Any) -> Any:
            action, problem = _verified(key, request.query, clock())
            if action is None:
                return self.html(_page("Link not usable", problem), status=403)
            if store is None:
                return self.html(_page("Not available", "silences need Redis"), status=503)
            form = await request.post()
            by = str(form.get("by", "")).strip()[:80] or "someone with the link"
            done = await _act(store, action, by, str(request.query.get("sig", "")))
            log.info(
                "silence link used: %s of alert %s (rule %s) by %s from %s: %s",
                action.action, action.fingerprint, action.rule, by, request.remote, done,
            )  # fmt: skip
            return self.html(_page("Done", done))

    return SilenceLink


def _verified(
    key: SecretStr, query: Mapping[str, str], now: float
) -> tuple[SignedAction | None, str]:
    try:
        return verify(key, query, now), ""
    except LinkError as exc:
        log.warning("silence link refused: %s", exc)
        return None, str(exc)


async def _act(store: SilenceStore, action: SignedAction, by: str, signature: str) -> str:
    if action.action == "ack":
        await store.acknowledge(action.fingerprint, by, f"acknowledged from a link ({action.rule})")
        return f"{action.rule} acknowledged until it resolves."
    now = datetime.now(UTC)
    silence = Silence(
        # One silence per link: pressing twice extends nothing and adds nothing.
        id=hashlib.sha256(signature.encode()).hexdigest()[:12],
        matchers=[Matcher(name="fingerprint", value=action.fingerprint)],
        starts_at=now,
        ends_at=now + timedelta(seconds=action.seconds),
        created_by=by,
        comment=f"silenced from a link ({action.rule})",
    )
    await store.add(silence)
    return f"{action.rule} silenced until {silence.ends_at:%Y-%m-%d %H:%M} UTC (id {silence.id})."


def _confirm_page(action: SignedAction) -> str:
    what = (
        f"Silence {action.rule} for {action.seconds / 3600:g} h"
        if action.action == "silence"
        else f"Acknowledge {action.rule} until it resolves"
    )
    form = (
        '<form method="post"><label>Your name <input name="by" maxlength="80"></label> '
        f'<button type="submit">{html.escape(what)}</button></form>'
    )
    return _page(what + "?", f"Alert {action.fingerprint}.", form)


def _page(title: str, text: str, extra: str = "") -> str:
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f'<meta name="viewport" content="width=device-width"></head><body>'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{extra}</body></html>"
    )
