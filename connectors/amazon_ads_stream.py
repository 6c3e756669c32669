"""Amazon Marketing Stream: Sponsored Products hourly traffic (sp-traffic) and conversions
(sp-conversion) folded into one AdSpendEvent per campaign-hour, from SQS message bodies (`handle`)
or an Amazon Data Firehose HTTP endpoint (`FirehoseReceiver`).

Facts relied on, from Amazon's Ads API docs (github.com/idealerror/amazon-ads-api-docs,
en-us/guides/amazon-marketing-stream/: datasets/sp-performance.md, aggregating-data.md,
amazon-marketing-stream-faq.md, onboarding/sqs/get-started.md, onboarding/firehose/*.md):
- record fields: idempotency_id, dataset_id, marketplace_id, currency, advertiser_id,
  campaign_id, ad_group_id, ad_id, keyword_id, placement, time_window_start (start of the hour,
  in the advertiser's time zone), clicks, impressions, cost; sp-conversion adds
  attributed_sales_{1d,7d,14d,30d}, attributed_conversions_{...}, attributed_units_ordered_{...};
- records are hourly DELTAS, not restated totals: a restatement (click invalidation for 72 hours,
  conversions for up to 60 days) is a new record with a new idempotency_id, possibly negative;
  Amazon's own recipe drops repeats by idempotency_id and sums the rest per key. So a campaign-hour
  here is the sum of its distinct records, and an exact repeat changes nothing;
- delivery is at least once, unordered, to SQS through SNS (the queue first receives an SNS
  `SubscriptionConfirmation` message: Type, MessageId, Token, TopicArn, SubscribeURL, ...) or to
  Firehose, whose data format is the same JSON; Firehose can deliver to a custom HTTPS endpoint.
- Firehose HTTP endpoint spec (docs.aws.amazon.com/firehose/latest/dev/
  httpdeliveryrequestresponse.html): X-Amz-Firehose-Access-Key header, body
  {requestId, timestamp, records: [{data: base64}]} (optionally gzip), answer application/json
  {requestId, timestamp[, errorMessage]}; only 200 counts as delivered, anything else is retried.
Not verified: whether SNS wraps data records (Type Notification, Message = the record as a string)
or delivers them raw (both are accepted), and whether time_window_start carries an offset (a naive
one is read in the profile's time zone).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from aiohttp import web
from pydantic import SecretStr, ValidationError

from connectors.amazon_ads import AdsProfile, AmazonAdsConfig, Figures, ad_event
from connectors.base import EventSink, RejectSink
from connectors.checkpoint import CheckpointStore
from connectors.push import PushReceiver, hand_off
from rules.errors import InvalidEventError
from streams.events import AdSpendEvent, Event, describe

log = logging.getLogger(__name__)

DATASETS: Final = ("sp-traffic", "sp-conversion")
SNS_CONTROL: Final = ("SubscriptionConfirmation", "UnsubscribeConfirmation")
MAX_FIREHOSE_BODY: Final = 64 * 1024 * 1024
# How long a campaign-hour's records are kept after the hour: conversions are restated for up
# to 60 days; past that a record could only change a day the engine no longer keeps (63 days).
KEEP_HOUR: Final = timedelta(days=70)
# A record for an hour older than that still folds into what is kept, for a day.
MIN_KEEP: Final = timedelta(days=1)


@dataclass
class _Hour:
    """The distinct records of one campaign-hour, by idempotency_id: [impressions, clicks, cost]
    for traffic, [sales, orders] for conversions (money as strings, exact)."""

    traffic: dict[str, list[Any]] = field(default_factory=dict)
    conversion: dict[str, list[Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: str | None) -> _Hour:
        if raw is None:
            return cls()
        data = json.loads(raw)
        return cls(data["t"], data["c"])

    def dump(self) -> str:
        return json.dumps({"t": self.traffic, "c": self.conversion}, sort_keys=True)

    def totals(self) -> Figures:
        total = Figures()
        for impressions, clicks, cost in self.traffic.values():
            total += Figures(impressions=impressions, clicks=clicks, cost=Decimal(cost))
        for sales, orders in self.conversion.values():
            total += Figures(sales=Decimal(sales), orders=orders)
        return total

    def ids(self) -> str:
        return ",".join(sorted(self.traffic) + sorted(self.conversion))


def _non_negative(figures: Figures, source: str) -> Figures:
    """Corrections can arrive before the records they correct (and a new subscription sees only
    corrections for its first days): show zero until the originals arrive."""
    counts = (figures.impressions, figures.clicks, figures.orders)
    if min(counts) >= 0 and figures.cost >= 0 and figures.sales >= 0:
        return figures
    log.info("%s: negative running total (corrections ahead of originals); showing 0", source)
    return Figures(
        max(figures.impressions, 0),
        max(figures.clicks, 0),
        max(figures.cost, Decimal(0)),
        max(figures.sales, Decimal(0)),
        max(figures.orders, 0),
    )


class MarketingStream:
    """Turns Marketing Stream messages into AdSpendEvents (sku None, one hour), keeping every
    campaign-hour's records in `store` under `amazon_ads:stream:<profile>:<campaign>:<hour>`, each
    key for KEEP_HOUR after its hour (then Redis forgets it)."""

    def __init__(
        self,
        config: AmazonAdsConfig,
        store: CheckpointStore,
        *,
        on_rejected: RejectSink | None = None,
        prefix: str = "amazon_ads:stream:",
    ) -> None:
        self._profiles = {
            (p.advertiser_id, p.marketplace_id): p for p in config.profiles if p.mode == "stream"
        }
        self._reports = {(p.advertiser_id, p.marketplace_id) for p in config.profiles}
        self._store, self._on_rejected, self._prefix = store, on_rejected, prefix
        # One writer at a time: two records of one hour must not both read the old state.
        self._lock = asyncio.Lock()
        self.ignored = 0
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def handle(self, body: bytes, source: str) -> list[AdSpendEvent]:
        """The events one message (an SQS body or a Firehose record) leads to; bad records go to
        `on_rejected`, control messages and other datasets are skipped."""
        try:
            records = _records(body, source)
        except InvalidEventError as exc:
            await self.reject(exc)
            return []
        events: dict[tuple[str, datetime], AdSpendEvent] = {}
        for index, record in enumerate(records):
            where = f"{source} record {index}" if len(records) > 1 else source
            try:
                event = await self._record(record, where)
            except InvalidEventError as exc:
                await self.reject(exc)
                continue
            if event is not None:
                events[(event.campaign_id, event.interval_start)] = event  # latest wins
        return list(events.values())

    async def _record(self, record: Any, source: str) -> AdSpendEvent | None:
        if not isinstance(record, dict) or record.get("dataset_id") not in DATASETS:
            self.ignored += 1
            return None
        profile = self._profile(record, source)
        if profile is None:
            return None
        campaign, start = _identity(record, profile, source)
        source = f"{source} ({record['dataset_id']} {record.get('idempotency_id')})"
        key = f"{self._prefix}{profile.profile_id}:{campaign}:{start.astimezone(UTC).isoformat()}"
        async with self._lock:
            hour = _Hour.load(await self._store.load(key))
            if _add(hour, record, profile, source):
                keep = max(start + KEEP_HOUR - self.now(), MIN_KEEP)
                await self._store.save(key, hour.dump(), ttl=keep.total_seconds())
        return _event(profile, campaign, start, hour, source)

    def _profile(self, record: dict[str, Any], source: str) -> AdsProfile | None:
        ids = (str(record.get("advertiser_id")), str(record.get("marketplace_id")))
        profile = self._profiles.get(ids)
        if profile is None and ids in self._reports:
            self.ignored += 1  # a profile whose ad KPIs come from reports
            return None
        if profile is None:
            raise InvalidEventError(source, f"no stream profile for advertiser/marketplace {ids}")
        if record.get("currency") not in (None, profile.currency):
            raise InvalidEventError(source, f"currency {record.get('currency')} is not ours")
        return profile

    async def reject(self, error: InvalidEventError) -> None:
        if self._on_rejected is not None:
            await self._on_rejected(error)
        else:
            log.warning("rejected %s: %s", error.source, error.reason)


def _records(body: bytes, source: str) -> list[Any]:
    """The data records in a message: raw, a JSON array, or inside an SNS Notification."""
    message = _json(body, source)
    if isinstance(message, dict) and message.get("Type") in SNS_CONTROL:
        # Confirming is an AWS-side setup step (the SubscribeURL carries a token: not logged).
        log.info("%s: SNS %s for %s skipped", source, message["Type"], message.get("TopicArn"))
        return []
    if isinstance(message, dict) and message.get("Type") == "Notification":
        message = _json(str(message.get("Message", "")).encode(), source)
    return message if isinstance(message, list) else [message]


def _json(raw: bytes, source: str) -> Any:
    try:
        return json.loads(raw, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError(source, f"message is not JSON: {exc}") from exc


def _identity(record: dict[str, Any], profile: AdsProfile, source: str) -> tuple[str, datetime]:
    campaign, stamp = record.get("campaign_id"), record.get("time_window_start")
    if not isinstance(record.get("idempotency_id"), str) or not isinstance(campaign, str | int):
        raise InvalidEventError(source, "record lacks idempotency_id or campaign_id")
    try:
        start = datetime.fromisoformat(str(stamp))
    except ValueError:
        raise InvalidEventError(source, f"bad time_window_start {stamp!r}") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=profile.zone)
    return str(campaign), start


def _add(hour: _Hour, record: dict[str, Any], profile: AdsProfile, source: str) -> bool:
    """Fold one record in; False for a repeat of an idempotency_id already counted."""
    rid = str(record["idempotency_id"])
    if rid in hour.traffic or rid in hour.conversion:
        return False
    if record["dataset_id"] == "sp-traffic":
        counts = [_int(record, "impressions", source), _int(record, "clicks", source)]
        hour.traffic[rid] = [*counts, f"{_number(record, 'cost', source):f}"]
    else:
        window = profile.attribution
        sales = _number(record, f"attributed_sales_{window}", source)
        hour.conversion[rid] = [
            f"{sales:f}",
            _int(record, f"attributed_conversions_{window}", source),
        ]
    return True


def _int(record: dict[str, Any], name: str, source: str) -> int:
    value = record.get(name)
    if value is None:
        return 0  # Amazon sends null records; they "aggregate to 0"
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEventError(source, f"{name} must be an integer, got {value!r}")
    return value


def _number(record: dict[str, Any], name: str, source: str) -> Decimal:
    value = record.get(name)
    if value is None:
        return Decimal(0)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise InvalidEventError(source, f"{name} must be a number, got {value!r}")
    return Decimal(value)


def _event(
    profile: AdsProfile, campaign: str, start: datetime, hour: _Hour, source: str
) -> AdSpendEvent:
    """The campaign-hour as it stands; its id digests the set of records it sums, so a repeat
    gives the same id and any new record (even one that nets to an earlier total) a new one."""
    figures = _non_negative(hour.totals(), source)
    start_utc = start.astimezone(UTC)
    digest = figures.digest(profile.currency, hour.ids())
    stamp = start_utc.strftime("%Y%m%dT%H%MZ")
    event_id = f"amazon_ads:stream:{profile.profile_id}:{campaign}:{stamp}:{digest}"
    interval = (
        start.astimezone(profile.zone),
        (start_utc + timedelta(hours=1)).astimezone(profile.zone),
    )
    try:
        return ad_event(profile, event_id, campaign, None, interval, figures)
    except ValidationError as exc:
        raise InvalidEventError(source, describe(exc)) from exc


class FirehoseReceiver(PushReceiver):
    """The HTTPS endpoint an Amazon Data Firehose stream delivers Marketing Stream records to.
    It answers 200 only once the sink has taken the events; else Firehose retries the batch, and
    since repeats change nothing here, the retry hands the same events off again."""

    def __init__(
        self,
        stream: MarketingStream,
        access_key: SecretStr,
        sink: EventSink,
        *,
        on_rejected: RejectSink | None = None,
        handoff_timeout: float = 60.0,
        path: str = "/firehose/amazon-ads",
    ) -> None:
        # aiohttp undoes Content-Encoding: gzip on request bodies itself. Firehose retries a
        # request whole, under the same request id: the records' own ids make repeats harmless.
        super().__init__(path, max_body=MAX_FIREHOSE_BODY)
        self._stream, self._key, self._sink = stream, access_key, sink
        self._on_rejected = on_rejected
        self._timeout = handoff_timeout

    async def handle(self, request: web.Request) -> web.Response:
        request_id = request.headers.get("X-Amz-Firehose-Request-Id", "")
        given = request.headers.get("X-Amz-Firehose-Access-Key", "").encode()
        if not hmac.compare_digest(given, self._key.get_secret_value().encode()):
            return _answer(401, request_id, "bad access key")
        try:
            body = json.loads(await request.read())
            records = body["records"]
            request_id = str(body.get("requestId", request_id))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            return _answer(400, request_id, "body is not a Firehose request")
        events = await self._events(records, request_id)
        if not await hand_off(self._sink, events, self._timeout, f"firehose {request_id}"):
            return _answer(503, request_id, "could not hand the events off; retry")
        return _answer(200, request_id)

    async def _events(self, records: Any, request_id: str) -> list[Event]:
        """The latest state of every campaign-hour the batch touched (earlier ones in the same
        batch would only be replaced in the engine's ledger)."""
        latest: dict[tuple[str, datetime], Event] = {}
        for index, record in enumerate(records if isinstance(records, list) else []):
            source = f"firehose {request_id} record {index}"
            try:
                data = base64.b64decode(record["data"], validate=True)
            except (KeyError, TypeError, binascii.Error):
                error = InvalidEventError(source, "data is not base64")
                await (self._on_rejected or self._stream.reject)(error)
                continue
            for event in await self._stream.handle(data, source):
                latest[(event.campaign_id, event.interval_start)] = event
        return list(latest.values())


def _answer(status: int, request_id: str, error: str | None = None) -> web.Response:
    body: dict[str, Any] = {"requestId": request_id, "timestamp": int(time.time() * 1000)}
    if error is not None:
        body["errorMessage"] = error
    return web.json_response(body, status=status)
