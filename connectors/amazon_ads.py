"""Amazon Ads API: the account settings, authenticated calls, and Sponsored Products daily spend
from reporting v3 (spAdvertisedProduct) as a checkpointed Source of AdSpendEvents.

Facts relied on, from Amazon's Ads API docs (mirrored at github.com/idealerror/amazon-ads-api-docs,
en-us/guides/reporting/v3/get-started.md, faq.md, report-types/advertised-product.md,
amazon-marketing-stream/onboarding/sqs/get-started.md):
- every call carries Amazon-Advertising-API-ClientId, Amazon-Advertising-API-Scope (profile id)
  and `Authorization: Bearer <LWA token>`; reports are created with POST /reporting/reports,
  Content-Type application/vnd.createasyncreportrequest.v3+json, polled with
  GET /reporting/reports/{reportId} (PENDING, PROCESSING, COMPLETED; `url` once COMPLETED, a
  pre-signed S3 address), generation takes up to three hours, and an identical request made
  while one is pending is answered 425;
- spAdvertisedProduct: groupBy `advertiser`, timeUnit DAILY needs the `date` column, format
  GZIP_JSON (a gzipped JSON array of rows), maximum date range 31 days, data retention 95 days;
- impressions and clicks may change for 3 days (traffic validation); conversions are restated 1,
  7 and 28 days after the conversion, on the date of the click, so a 7-day window settles after
  7 + 28 = 35 days: the default `lookback_days`;
- region hosts: NA advertising-api.amazon.com, EU advertising-api-eu, FE advertising-api-fe.
Not verified in Amazon's own pages (taken from third-party clients): the 425 body
`{"code": "425", "detail": "The Request is a duplicate of : <reportId>"}`, the failure status
name (FAILURE or FAILED: both are accepted), 401 as the answer to an expired token, and that
Sponsored Products sellers get a 7-day attribution window by default (vendors 14 days; Amazon
Marketing Cloud docs say so): `attribution` picks the sales7d/purchases7d or 14d columns.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from connectors.amazon_sp import LWA_TOKEN_URL, MARKETPLACES, LwaTokens
from connectors.api import Backoff, Sleep, Throttle, read_json
from connectors.base import FeedRef, Page, SourceError
from connectors.building import Built, Context, Section
from rules.errors import InvalidEventError, ServiceError
from rules.fileconfig import Seconds, SecretSource
from streams.events import AdSpendEvent, describe, minor_unit_exponent

log = logging.getLogger(__name__)

HOSTS: Final = {
    "NA": "https://advertising-api.amazon.com",
    "EU": "https://advertising-api-eu.amazon.com",
    "FE": "https://advertising-api-fe.amazon.com",
}
# The marketplaces each region's host serves (the selling regions of Amazon's endpoint list):
# a profile asked for on another region's host is not found there.
REGION_COUNTRIES: Final = {
    "NA": frozenset({"US", "CA", "MX", "BR"}),
    "EU": frozenset(
        {"IE", "ES", "GB", "UK", "FR", "BE", "NL", "DE", "IT", "SE", "ZA", "PL", "SA", "EG"}
        | {"TR", "AE", "IN"}
    ),
    "FE": frozenset({"SG", "AU", "JP"}),
}
REPORT_TYPE: Final = "application/vnd.createasyncreportrequest.v3+json"
MAX_REPORT_DAYS: Final = 31
RETENTION_DAYS: Final = 95
# 7-day seller attribution + restatement up to 28 days after the conversion (reporting FAQ).
DEFAULT_LOOKBACK_DAYS: Final = 35
# Report generation "can take as long as three hours".
MAX_REPORT_WAIT: Final = 3 * 3600.0
_DUPLICATE: Final = re.compile(r"duplicate of\s*:?\s*([0-9A-Za-z-]{8,})")
MARKETPLACE_IDS: Final = {country: mid for mid, country in MARKETPLACES.items()}


class AdsProfile(BaseModel):
    """One advertising profile (one seller account in one marketplace).

    `mode` says where its live ad KPIs come from. Reports give one figure per day and SKU,
    Marketing Stream one per hour and campaign (no SKU): the engine keys them apart, so reading
    both for one profile would count the same spend twice. Exactly one is chosen per profile.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_id: str = Field(min_length=1, max_length=100)
    profile_id: str = Field(pattern=r"^\d{1,20}$")
    marketplace: str = Field(pattern=r"^[A-Z]{2}$")
    currency: str
    timezone: str
    mode: Literal["reports", "stream"]
    attribution: Literal["7d", "14d"] = "7d"
    # Marketing Stream rows name the account by advertiser_id + marketplace_id, not profile id.
    advertiser_id: str | None = None

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        minor_unit_exponent(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _stream_needs_ids(self) -> AdsProfile:
        if self.mode == "stream":
            if not self.advertiser_id:
                raise ValueError("mode stream needs advertiser_id (GET /v2/profiles accountInfo)")
            if self.marketplace not in MARKETPLACE_IDS:
                raise ValueError(f"no Amazon marketplace id known for {self.marketplace}")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def marketplace_id(self) -> str:
        return MARKETPLACE_IDS.get(self.marketplace, "")


class AmazonAdsConfig(BaseModel):
    """The non-secret settings; the LWA client secret and refresh token (and the Firehose
    access key) are handed to the constructors separately."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1)
    region: Literal["NA", "EU", "FE"] = "NA"
    # Overrides the region's host (tests, sandbox): a scheme and a host name, no path.
    host: str | None = Field(default=None, pattern=r"^https?://[A-Za-z0-9.-]+(:\d+)?/?$")
    token_url: str = LWA_TOKEN_URL
    profiles: list[AdsProfile] = Field(min_length=1)
    lookback_days: int = Field(DEFAULT_LOOKBACK_DAYS, ge=1, le=RETENTION_DAYS)
    start: date

    @model_validator(mode="after")
    def _unique(self) -> AmazonAdsConfig:
        for name in ("store_id", "profile_id"):
            values = [getattr(p, name) for p in self.profiles]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{name} listed more than once: {', '.join(repeated)}")
        # Reports are asked for on the region's host; streamed profiles arrive by Firehose.
        served = REGION_COUNTRIES[self.region]
        elsewhere = sorted(
            p.store_id for p in self.profiles if p.mode == "reports" and p.marketplace not in served
        )
        if elsewhere:
            raise ValueError(
                f"region {self.region} does not serve the marketplace of report profile(s) "
                f"{', '.join(elsewhere)}; give each region its own amazon_ads section"
            )
        return self

    @property
    def endpoint(self) -> str:
        return (self.host or HOSTS[self.region]).rstrip("/")


@dataclass
class AdsApi:
    """Authenticated calls to one Ads API host. Amazon's limits are dynamic (429 with or
    without Retry-After), so there is no bucket, only the retry policy."""

    client: httpx.AsyncClient
    tokens: LwaTokens
    client_id: str
    endpoint: str = HOSTS["NA"]
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Sleep = asyncio.sleep
    throttle: Throttle = field(init=False)
    download: Throttle = field(init=False)

    def __post_init__(self) -> None:
        self.throttle = Throttle("Amazon Ads API", None, self.backoff, self.sleep)
        self.download = Throttle("Amazon Ads report download", None, self.backoff, self.sleep)

    async def call(
        self, method: str, path: str, profile_id: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        """The response to an authenticated call; a 401 refreshes the token once and retries."""
        for attempt in range(2):
            response = await self._send(method, path, profile_id, body)
            if response.status_code != 401 or attempt == 1:
                return response
            self.tokens.invalidate()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self, method: str, path: str, profile_id: str, body: dict[str, Any] | None
    ) -> httpx.Response:
        headers = {
            "Amazon-Advertising-API-ClientId": self.client_id,
            "Amazon-Advertising-API-Scope": profile_id,
            "Authorization": f"Bearer {await self.tokens.token()}",
            "Content-Type": REPORT_TYPE,
        }
        content = json.dumps(body).encode() if body is not None else None
        return await self.throttle.send(
            self.client,
            lambda: self.client.build_request(
                method, self.endpoint + path, headers=headers, content=content
            ),
        )

    async def fetch(self, url: str, where: str) -> bytes:
        """A pre-signed S3 URL: its query is the credential, so no header of ours goes along."""
        response = await self.download.send(
            self.client, lambda: self.client.build_request("GET", url)
        )
        if response.status_code != 200:
            raise SourceError(where, f"report download answered HTTP {response.status_code}")
        return response.content


def error_text(response: httpx.Response) -> str:
    """Amazon's `{code, details|detail|message}` error body as one line (never a header)."""
    try:
        body = json.loads(response.content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    detail = body.get("details") or body.get("detail") or body.get("message") or ""
    return f"HTTP {response.status_code} {body.get('code', '')}: {detail}".strip()


@dataclass(frozen=True)
class Figures:
    """One row's (or one group's) numbers, money in the currency's minor-unit precision."""

    impressions: int = 0
    clicks: int = 0
    cost: Decimal = Decimal(0)
    sales: Decimal = Decimal(0)
    orders: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.impressions + other.impressions,
            self.clicks + other.clicks,
            self.cost + other.cost,
            self.sales + other.sales,
            self.orders + other.orders,
        )

    def digest(self, currency: str, *extra: str) -> str:
        """A short stable hash: same figures, same id; a restated figure, a new one."""
        cost, sales = money(self.cost, currency), money(self.sales, currency)
        parts = [str(self.impressions), str(self.clicks), f"{cost:f}", f"{sales:f}"]
        text = "|".join([*extra, *parts, str(self.orders)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def money(amount: Decimal, currency: str) -> Decimal:
    """Amazon sends money as JSON doubles whose sums can carry float noise (14.499999...): round
    once, at the end, to what the currency can hold."""
    return amount.quantize(Decimal(1).scaleb(-minor_unit_exponent(currency)), ROUND_HALF_UP)


def ad_event(
    profile: AdsProfile,
    event_id: str,
    campaign_id: str,
    sku: str | None,
    interval: tuple[datetime, datetime],
    figures: Figures,
    occurred_at: datetime | None = None,
) -> AdSpendEvent:
    """Our event for one campaign (and SKU) over one interval (a version of its figures seen
    at `occurred_at`, by default the interval's end); raises ValidationError."""
    cur = profile.currency
    return AdSpendEvent.model_validate(
        {
            "event_id": event_id,
            "occurred_at": occurred_at or interval[1],
            "platform": "amazon",
            "marketplace": profile.marketplace,
            "store_id": profile.store_id,
            "campaign_id": campaign_id,
            "sku": sku,
            "interval_start": interval[0],
            "interval_end": interval[1],
            "impressions": figures.impressions,
            "clicks": figures.clicks,
            "spend": {"amount": money(figures.cost, cur), "currency": cur},
            "attributed_sales": {"amount": money(figures.sales, cur), "currency": cur},
            "attributed_orders": figures.orders,
        }
    )


class _Cursor(BaseModel):
    """The last day that a completed report covered; the next pass starts no later than the
    day after it, so a restart does not lose a day. `versions` holds, per day and row
    (`campaign|sku`), the row's current version: [number, first seen (epoch s), digest]. It is
    saved with the cursor, so with the page that sent it."""

    done_through: date | None = None
    versions: dict[str, dict[str, list[Any]]] = {}


RowKey = tuple[str, str, str]  # date, campaignId, SKU


def day_interval(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """A local day as aware datetimes: midnight to midnight, 23 or 25 hours across DST."""
    return (
        datetime.combine(day, time(0), tzinfo=zone),
        datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone),
    )


@dataclass
class AdsReportSource:
    """Sponsored Products spend per day, campaign and advertised SKU: each pass re-requests the
    trailing `lookback_days` up to yesterday (profile time), in reports of at most 31 days, one
    Page per report. Poll it once or twice a day (Amazon's advice for report requests)."""

    api: AdsApi
    profile: AdsProfile
    start: date
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    max_wait: float = MAX_REPORT_WAIT
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def name(self) -> str:
        return f"amazon_ads:reports:{self.profile.store_id}"

    async def pages(self, cursor: str | None) -> AsyncIterator[Page]:
        state = _Cursor.model_validate_json(cursor) if cursor else _Cursor()
        chunks = self._chunks(state)
        # Versions of days before this pass's first one are never needed again: a later pass
        # starts no earlier (the lookback moves on, done_through only grows).
        oldest = chunks[0][0] if chunks else date.max
        for first, last in chunks:
            where = f"{self.name} report {first}..{last}"
            report_id = await self._create(first, last, where)
            where = f"{where} ({report_id})"
            rows = await self._rows(await self._wait(report_id, where), where)
            events, rejected = self.events(rows, where, state.versions)
            done = max(last, state.done_through or last)
            state = _Cursor(done_through=done, versions=_kept(state.versions, oldest))
            yield Page(events, state.model_dump_json(), rejected)

    def _chunks(self, state: _Cursor) -> list[tuple[date, date]]:
        yesterday = self.now().astimezone(self.profile.zone).date() - timedelta(days=1)
        first = yesterday - timedelta(days=self.lookback_days - 1)
        if state.done_through is not None:
            first = min(first, state.done_through + timedelta(days=1))
        else:
            first = self.start
        oldest = yesterday - timedelta(days=RETENTION_DAYS - 1)
        if first < oldest:
            log.warning(
                "%s: Amazon keeps %d days; starting at %s", self.name, RETENTION_DAYS, oldest
            )
            first = oldest
        chunks = []
        while first <= yesterday:
            last = min(yesterday, first + timedelta(days=MAX_REPORT_DAYS - 1))
            chunks.append((first, last))
            first = last + timedelta(days=1)
        return chunks

    def _request(self, first: date, last: date) -> dict[str, Any]:
        window = self.profile.attribution
        return {
            "name": f"kpiwatch {self.profile.store_id} {first}..{last}",
            "startDate": first.isoformat(),
            "endDate": last.isoformat(),
            "configuration": {
                "adProduct": "SPONSORED_PRODUCTS",
                "reportTypeId": "spAdvertisedProduct",
                "groupBy": ["advertiser"],
                "columns": [
                    "date",
                    "campaignId",
                    "campaignName",
                    "adId",
                    "advertisedSku",
                    "advertisedAsin",
                    "impressions",
                    "clicks",
                    "cost",
                    f"sales{window}",
                    f"purchases{window}",
                ],
                "timeUnit": "DAILY",
                "format": "GZIP_JSON",
            },
        }

    async def _create(self, first: date, last: date, where: str) -> str:
        response = await self.api.call(
            "POST", "/reporting/reports", self.profile.profile_id, self._request(first, last)
        )
        if response.status_code == 425:
            # The same report is already being made: wait for that one instead.
            match = _DUPLICATE.search(error_text(response))
            if match is None:
                raise SourceError(where, f"duplicate report without an id: {error_text(response)}")
            return match.group(1)
        body = read_json(response, where) if response.status_code < 300 else {}
        report_id = body.get("reportId")
        if not isinstance(report_id, str):
            raise SourceError(where, f"report not created: {error_text(response)}")
        return report_id

    async def _wait(self, report_id: str, where: str) -> str:
        """The download URL once the report is COMPLETED, polling with growing waits."""
        waited, delay = 0.0, 5.0
        while True:
            response = await self.api.call(
                "GET", f"/reporting/reports/{report_id}", self.profile.profile_id
            )
            if response.status_code != 200:
                raise SourceError(where, f"status check failed: {error_text(response)}")
            body = read_json(response, where)
            status = body.get("status")
            if status == "COMPLETED" and isinstance(body.get("url"), str):
                return str(body["url"])
            if status in ("FAILURE", "FAILED"):
                raise SourceError(where, f"report failed: {body.get('failureReason')}")
            if waited >= self.max_wait:
                raise SourceError(where, f"still {status} after {waited:.0f}s")
            await self.api.sleep(delay)
            waited, delay = waited + delay, min(delay * 2, 300.0)

    async def _rows(self, url: str, where: str) -> list[Any]:
        raw = await self.api.fetch(url, where)
        try:
            rows = json.loads(gzip.decompress(raw), parse_float=Decimal)
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SourceError(where, f"report is not gzipped JSON: {exc}") from exc
        if not isinstance(rows, list):
            raise SourceError(where, f"report is a {type(rows).__name__}, not a list of rows")
        return rows

    def events(
        self, rows: list[Any], where: str, versions: dict[str, dict[str, list[Any]]] | None = None
    ) -> tuple[list[AdSpendEvent], list[InvalidEventError]]:
        """One event per (date, campaign, SKU): a SKU advertised in two ad groups of a campaign
        has a row per ad, summed here. A malformed row withholds its whole group, since a partial
        sum would replace good figures in the engine's ledger."""
        groups: dict[RowKey, Figures] = {}
        rejected: list[InvalidEventError] = []
        bad: set[RowKey] = set()
        for index, row in enumerate(rows):
            source = f"{where} row {index}"
            try:
                key = self._key(row, source)
            except InvalidEventError as exc:
                rejected.append(exc)
                continue
            try:
                groups[key] = groups.get(key, Figures()) + self._figures(row, source)
            except InvalidEventError as exc:
                rejected.append(exc)
                bad.add(key)
        events = []
        known = versions if versions is not None else {}
        for key, figures in groups.items():
            if key in bad:
                continue
            try:
                events.append(self._event(key, figures, where, known))
            except InvalidEventError as exc:
                rejected.append(exc)
        return events, rejected

    def _key(self, row: Any, source: str) -> RowKey:
        if not isinstance(row, dict):
            raise InvalidEventError(source, "row is not an object")
        day, campaign = row.get("date"), row.get("campaignId")
        sku = row.get("advertisedSku") or (
            f"asin:{row['advertisedAsin']}" if row.get("advertisedAsin") else None
        )
        if not isinstance(day, str) or not isinstance(campaign, int | str) or not sku:
            raise InvalidEventError(source, "row lacks date, campaignId or advertisedSku")
        try:
            date.fromisoformat(day)
        except ValueError:
            raise InvalidEventError(source, f"bad date {day!r}") from None
        return day, str(campaign), str(sku)

    def _figures(self, row: dict[str, Any], source: str) -> Figures:
        window = self.profile.attribution
        source = f"{source} (campaign {row.get('campaignId')}, sku {row.get('advertisedSku')})"
        return Figures(
            impressions=_count(row, "impressions", source),
            clicks=_count(row, "clicks", source),
            cost=_amount(row, "cost", source),
            sales=_amount(row, f"sales{window}", source),
            orders=_count(row, f"purchases{window}", source),
        )

    def _event(
        self, key: RowKey, figures: Figures, where: str, versions: dict[str, dict[str, list[Any]]]
    ) -> AdSpendEvent:
        """A row's figures as a version: unchanged figures repeat the version they were first
        seen in (same id, same time), changed ones make the next version, seen now. Figures
        that go A -> B -> A are three versions, so the last A replaces B in the engine."""
        day, campaign, sku = key
        digest = figures.digest(self.profile.currency)
        row = f"{campaign}|{sku}"
        known = versions.setdefault(day, {}).get(row)
        if known is not None and known[2] == digest:
            number, seen = int(known[0]), int(known[1])
        else:
            number = 1 if known is None else int(known[0]) + 1
            seen = int(self.now().timestamp())
            versions[day][row] = [number, seen, digest]
        event_id = (
            f"amazon_ads:sp:{self.profile.profile_id}:{day}:{campaign}:{sku}:{number}:{digest}"
        )
        interval = day_interval(date.fromisoformat(day), self.profile.zone)
        # Never before the interval ends: a version is of the whole day's figures.
        occurred = max(datetime.fromtimestamp(seen, UTC), interval[1])
        try:
            return ad_event(self.profile, event_id, campaign, sku, interval, figures, occurred)
        except ValidationError as exc:
            raise InvalidEventError(f"{where} {day} {campaign} {sku}", describe(exc)) from exc


def _kept(
    versions: dict[str, dict[str, list[Any]]], oldest: date
) -> dict[str, dict[str, list[Any]]]:
    return {day: rows for day, rows in versions.items() if day >= oldest.isoformat()}


def _count(row: dict[str, Any], name: str, source: str) -> int:
    value = row.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidEventError(source, f"{name} must be a non-negative integer, got {value!r}")
    return value


def _amount(row: dict[str, Any], name: str, source: str) -> Decimal:
    value = row.get(name)
    # NaN and Infinity parse as floats (parse_constant), so they fail the type check here.
    if isinstance(value, bool) or not isinstance(value, int | Decimal) or value < 0:
        raise InvalidEventError(source, f"{name} must be a number >= 0, got {value!r}")
    return Decimal(value)


# --- The connect file's section and builder ------------------------------------------------


# Where an SNS subscription confirmation may send us: SNS's own hosts.
SNS_URL: Final = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"


class AdsSqsSection(BaseModel):
    """The SQS queue Amazon's Marketing Stream topics deliver to. AWS credentials come the
    usual AWS way (environment, shared files, the instance's or pod's role), never this file."""

    model_config = ConfigDict(extra="forbid")

    queue_url: str = Field(pattern=r"^https?://[^/\s]+/\S+$")
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    # Another SQS endpoint (a local SQS-compatible server for tests); None: AWS's own.
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+/?$")
    # Where a subscription confirmation may send us (a regex); by default SNS's own hosts.
    confirm_url: str = SNS_URL


class AmazonAdsSection(AmazonAdsConfig, Section):
    # Amazon advises requesting reports once or twice a day.
    poll_interval: Seconds = 12 * 3600.0
    client_secret: SecretSource
    refresh_token: SecretSource
    # Marketing Stream through SQS (before the Firehose key, which is only needed without it).
    sqs: AdsSqsSection | None = None
    # Needed when a profile's mode is `stream` and its records come through Amazon Data
    # Firehose rather than SQS.
    firehose_access_key: SecretSource | None = Field(default=None, validate_default=True)

    @field_validator("firehose_access_key")
    @classmethod
    def _firehose_key(cls, key: SecretSource | None, info: ValidationInfo) -> SecretSource | None:
        streamed = [p.store_id for p in info.data.get("profiles") or [] if p.mode == "stream"]
        if streamed and key is None and info.data.get("sqs") is None:
            raise ValueError(
                f"profile(s) {', '.join(streamed)} use mode stream, which arrives through "
                "Firehose or SQS: say where the Firehose access key lives, or give sqs:"
            )
        return key


async def build_amazon_ads(section: AmazonAdsSection, context: Context) -> Built:
    # Marketing Stream builds on this module (its records are ad events): imported here.
    from connectors.amazon_ads_stream import FirehoseReceiver, MarketingStream

    tokens = LwaTokens(
        context.client,
        section.client_id,
        section.client_secret.get(),
        section.refresh_token.get(),
        url=section.token_url,
    )
    api = AdsApi(context.client, tokens, section.client_id, section.endpoint)
    built = Built()
    for profile in section.profiles:
        if profile.mode == "reports":
            built.add(
                AdsReportSource(api, profile, section.start, section.lookback_days),
                FeedRef("amazon", profile.marketplace, profile.store_id, "ads"),
            )
    if section.sqs is not None:
        await _sqs_consumer(section, section.sqs, context, built)
    if section.firehose_access_key is not None:
        stream = MarketingStream(section, context.checkpoints, on_rejected=context.on_rejected)
        built.receivers.append(
            FirehoseReceiver(
                stream,
                section.firehose_access_key.get(),
                context.push_sink,
                on_rejected=context.on_rejected,
            )
        )
    return built


async def _sqs_consumer(
    section: AmazonAdsSection, sqs: AdsSqsSection, context: Context, built: Built
) -> None:
    from connectors.amazon_ads_sqs import MarketingStreamQueue
    from connectors.amazon_ads_stream import MarketingStream

    try:
        from aiobotocore.session import get_session
    except ImportError as exc:
        raise ServiceError(
            "amazon_ads sqs: needs the AWS client; install kpiwatch[sqs] (aiobotocore)"
        ) from exc
    client = (
        await get_session()
        .create_client("sqs", region_name=sqs.region, endpoint_url=sqs.endpoint_url)
        .__aenter__()
    )
    built.closers.append(client.close)
    stream = MarketingStream(section, context.checkpoints, on_rejected=context.on_rejected)
    built.consumers.append(
        MarketingStreamQueue(
            stream,
            client,
            sqs.queue_url,
            context.push_sink,
            context.client,
            confirm_url=sqs.confirm_url,
        )
    )
