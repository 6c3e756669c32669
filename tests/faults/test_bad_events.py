"""Guarantee 5, bad events in bulk: 10,000 generated bad payloads interleaved with valid
simulator events, produced to one real worker on the real broker. Every bad one is on the
dead-letter topic once, with a reason and its source topic, partition, offset (and index in a
packed message); the worker neither crashes nor restarts nor stalls; every valid event is
counted exactly once (its /kpis equal what `kpiwatch kpis` computes, in-process, from the
valid events alone).

The payloads come from hypothesis strategies, one per kind of mistake (`CATEGORIES`: wrong
types, missing fields, unknown currencies, naive and absurd timestamps, huge numbers, floats for
money, deep nesting, non-UTF-8 bytes, values of about 1 MiB, control characters in ids, and
other breaches of the event contract), each mutating a valid simulator event. They are drawn
with `@seed(SEED)`, no example database and the generate phase only, so the same SEED and
hypothesis version (and the same simulator) give the same 10,000 payloads byte for byte;
where they go among the valid messages is drawn from `random.Random(SEED)`. A failure names
each payload's category and its number in the list (decoder test) or its place on the topic
(worker test); `bad_payloads(valid_events())` rebuilds the list to look at offline.

Every payload is first checked to be refused by the event decoder on its own (so a payload the
contract would accept is a finding, not a silently passing case); the worker is then held to
dead-lettering each of them exactly where it was produced.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import iso4217
import pydantic_core
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from integration.support import Services, WorkerFactory, WorkerProcess, read_topic

from connectors.kafka import ensure_topics
from connectors.simulator import simulate
from rules.errors import InvalidEventError
from rules.load import load_default
from streams.embedded import Engine, reader
from streams.embedded import replay as run_replay
from streams.events import (
    EVENTS_TOPIC,
    TOPICS,
    Event,
    RawRecord,
    decode_message,
    encode,
    minor_unit_exponent,
    pack,
)
from streams.query import kpi_rows

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SEED: Final = 20261125
START: Final = datetime(2026, 11, 14, tzinfo=UTC)
LEVELS: Final = (
    ("store,sku", "24h"),
    ("store", "7d"),
    ("store,campaign", "1d"),
    ("marketplace", "1d"),
)
# The largest message the broker takes (message.max.bytes is 1 MiB plus a few bytes, for the
# whole record batch): "1 MiB values" are as large as that allows.
MESSAGE_LIMIT: Final = 1024 * 1024 - 1024
# Bad payloads per kind of mistake: 10,000 in all.
CATEGORIES: Final[dict[str, int]] = {
    "wrong-type": 1500,
    "missing-field": 1000,
    "unknown-currency": 900,
    "naive-time": 700,
    "absurd-time": 800,
    "huge-number": 900,
    "float-money": 800,
    "deep-nesting": 300,
    "non-utf8": 900,
    "big-value": 16,
    "control-char": 900,
    "contract": 1284,
}
# What every dead letter of a kind must say (lower case), so a reason is about the mistake.
REASONS: Final[dict[str, tuple[str, ...]]] = {
    "unknown-currency": ("currency",),
    "naive-time": ("timezone", "datetime"),
    "non-utf8": ("not valid json",),
    "float-money": ("decimals", "finite"),
    "control-char": ("pattern", "not valid json"),
}
# What one dead letter may hold at most (the worker's producer sends at most 1 MiB).
DEAD_LETTER_BYTES: Final = 512 * 1024


# --- The bad payloads ----------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """One bad payload: its kind of mistake, its bytes (None: a Kafka tombstone), and whether it
    is a small JSON object that may also travel as one element of a packed message."""

    category: str
    value: bytes | None
    element: bool = False


Path = tuple[str | int, ...]
Doc = dict[str, Any]

ROLES: Final[dict[str, str]] = {
    "type": "word",
    "event_id": "id",
    "store_id": "id",
    "order_id": "id",
    "campaign_id": "id",
    "sku": "id",
    "platform": "word",
    "marketplace": "word",
    "status": "word",
    "fulfillment_channel": "word",
    "warehouse": "word",
    "currency": "word",
    "occurred_at": "time",
    "ship_by": "time",
    "shipped_at": "time",
    "interval_start": "time",
    "interval_end": "time",
    "as_of": "time",
    "quantity": "count",
    "impressions": "count",
    "clicks": "count",
    "attributed_orders": "count",
    "available": "count",
    "inbound": "count",
    "reserved": "count",
    "amount": "amount",
    "is_test": "flag",
    "unit_price": "money",
    "spend": "money",
    "attributed_sales": "money",
    "lines": "lines",
}
# Fields an event may leave out (or set to null).
OPTIONAL: Final = frozenset(
    {"ship_by", "shipped_at", "fulfillment_channel", "is_test", "inbound", "reserved"}
)
# What pydantic reads as a boolean; anything else in `is_test` is a wrong type.
BOOL_WORDS: Final = frozenset(
    {"true", "false", "yes", "no", "on", "off", "t", "f", "y", "n", "1", "0"}
)
# The upper bounds of the counters (streams/events.py).
COUNT_BOUNDS: Final[dict[str, int]] = {
    "quantity": 100_000,
    "available": 10_000_000,
    "inbound": 10_000_000,
    "reserved": 10_000_000,
    "impressions": 10**12,
    "clicks": 10**12,
    "attributed_orders": 10**12,
}
ISO_CODES: Final = frozenset(c.code for c in iso4217.Currency)


class Bases(list[bytes]):
    """The valid events mutations start from (a short repr: hypothesis prints strategies)."""

    def __repr__(self) -> str:
        return f"<{len(self)} simulator events>"


def base(draw: st.DrawFn, bases: Bases, *, money: bool = False) -> Doc:
    """A fresh copy of one valid event (with `money`: an order or ad report), to mutate."""
    while True:
        doc: Doc = json.loads(bases[draw(st.integers(0, len(bases) - 1))])
        if not money or doc["type"] != "inventory":
            return doc


def fields(doc: Any, path: Path = ()) -> Iterator[tuple[Path, str]]:
    """Every (path, field name) of an event document, nested ones included."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield (*path, key), key
            yield from fields(value, (*path, key))
    elif isinstance(doc, list):
        for index, item in enumerate(doc):
            yield from fields(item, (*path, index))


def put(doc: Any, path: Path, value: Any) -> None:
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value


def drop(doc: Any, path: Path) -> None:
    for part in path[:-1]:
        doc = doc[part]
    del doc[path[-1]]


def get(doc: Any, path: Path) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def wire(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def is_optional(doc: Doc, name: str) -> bool:
    return name in OPTIONAL or (name == "sku" and doc.get("type") == "ad_spend")


def pick(draw: st.DrawFn, doc: Doc, roles: set[str], *, required: bool = False) -> Path:
    paths = [
        path
        for path, name in fields(doc)
        if ROLES.get(name) in roles and not (required and is_optional(doc, name))
    ]
    return draw(st.sampled_from(paths))


LETTERS: Final = string.ascii_letters
_containers = st.one_of(
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
_letters = st.text(alphabet=LETTERS + " ", min_size=1, max_size=12)
WRONG: Final[dict[str, st.SearchStrategy[Any]]] = {
    "id": st.one_of(
        st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), _containers
    ),
    "word": st.one_of(st.integers(), st.booleans(), _containers),
    "time": st.one_of(st.booleans(), _containers, _letters),
    "count": st.one_of(
        st.booleans(),
        _containers,
        _letters,
        st.floats(-1e6, 1e6).filter(lambda x: x != int(x)),
    ),
    "amount": st.one_of(st.booleans(), _containers, _letters),
    "flag": st.one_of(
        _containers,
        st.integers().filter(lambda n: n not in (0, 1)),
        _letters.filter(lambda s: s.lower() not in BOOL_WORDS),
    ),
    "money": st.one_of(st.text(max_size=10), st.integers(), st.lists(st.integers(), max_size=2)),
    "lines": st.one_of(
        st.dictionaries(st.text(max_size=4), st.integers()), st.text(), st.integers()
    ),
}


@st.composite
def wrong_type(draw: st.DrawFn, bases: Bases) -> Bad:
    doc = base(draw, bases)
    path = pick(draw, doc, set(WRONG))
    put(doc, path, draw(WRONG[ROLES[str(path[-1])]]))
    return Bad("wrong-type", wire(doc))


@st.composite
def missing_field(draw: st.DrawFn, bases: Bases) -> Bad:
    doc = base(draw, bases)
    drop(doc, pick(draw, doc, set(ROLES.values()), required=True))
    return Bad("missing-field", wire(doc))


@st.composite
def unknown_currency(draw: st.DrawFn, bases: Bases) -> Bad:
    doc = base(draw, bases, money=True)
    paths = [path for path, name in fields(doc) if name == "currency"]
    code = draw(
        st.one_of(
            st.text(alphabet=string.ascii_uppercase, min_size=3, max_size=3).filter(
                lambda c: c not in ISO_CODES
            ),
            st.sampled_from(["usd", "Jpy", " USD", "USD ", "US$", "840", "", "XXX", "XTS", "XAU"]),
            st.text(min_size=4, max_size=40),
        )
    )
    # One currency, or all of them (so it is not only "mixed currencies").
    for path in paths if draw(st.booleans()) else [draw(st.sampled_from(paths))]:
        put(doc, path, code)
    return Bad("unknown-currency", wire(doc))


# Naive on purpose: what the decoder must refuse.
_naive = st.datetimes(
    min_value=datetime(2000, 1, 2, tzinfo=UTC).replace(tzinfo=None),
    max_value=datetime(2099, 12, 30, tzinfo=UTC).replace(tzinfo=None),
)


@st.composite
def naive_time(draw: st.DrawFn, bases: Bases) -> Bad:
    doc = base(draw, bases)
    path = pick(draw, doc, {"time"})
    moment = draw(_naive)
    text = draw(
        st.sampled_from(
            [
                moment.isoformat(),
                moment.isoformat(sep=" "),
                moment.strftime("%Y-%m-%dT%H:%M:%S"),
                moment.date().isoformat(),
                moment.strftime("%Y-%m-%dT%H:%M:%S JST"),
            ]
        )
    )
    put(doc, path, text)
    return Bad("naive-time", wire(doc))


_absurd_years = st.one_of(st.integers(1, 1999), st.integers(2101, 9998))


@st.composite
def absurd_time(draw: st.DrawFn, bases: Bases) -> Bad:
    doc = base(draw, bases)
    path = pick(draw, doc, {"time"})
    year = draw(_absurd_years)
    moment = draw(st.datetimes(timezones=st.just(UTC))).replace(year=year, month=6, day=1)
    impossible = draw(
        st.sampled_from(
            [
                f"{year:04d}-02-30T00:00:00+00:00",
                "2026-13-01T00:00:00Z",
                "2026-11-23T25:00:00Z",
                "2026-11-23T10:00:00+25:00",
                "+12026-11-23T10:00:00Z",
                None,
            ]
        )
    )
    if impossible is not None:
        put(doc, path, impossible)
    elif path[-1] in ("interval_start", "interval_end"):
        # Both ends moved, so that only the year (not their order) is wrong.
        doc["interval_start"] = moment.isoformat()
        doc["interval_end"] = (moment + timedelta(hours=1)).isoformat()
    else:
        put(doc, path, moment.isoformat())
    return Bad("absurd-time", wire(doc))


@st.composite
def huge_number(draw: st.DrawFn, bases: Bases) -> Bad:
    doc = base(draw, bases)
    path = pick(draw, doc, {"count", "amount"})
    name = str(path[-1])
    if name == "amount":
        value: Any = draw(
            st.one_of(
                st.integers(10**8 + 1, 10**40),
                st.integers(10**8 + 1, 10**40).map(str),
                st.integers(-(10**40), -1),
                st.floats(1e8 + 1, 1e308),
                st.floats(-1e308, -0.01),
                st.integers(9, 4000).map(lambda n: "9" * n),
            )
        )
    else:
        bound = COUNT_BOUNDS[name]
        value = draw(st.one_of(st.integers(bound + 1, 10**40), st.integers(-(10**40), -1)))
    put(doc, path, value)
    return Bad("huge-number", wire(doc))


@st.composite
def float_money(draw: st.DrawFn, bases: Bases) -> Bad:
    doc = base(draw, bases, money=True)
    path = pick(draw, doc, {"amount"})
    digits = minor_unit_exponent(get(doc, path[:-1])["currency"])
    units = draw(st.integers(0, 10**6))
    places = draw(st.integers(digits + 1, digits + 4))
    fraction = draw(st.integers(0, 10 ** (places - 1) - 1)) * 10 + draw(st.integers(1, 9))
    literal = draw(
        st.sampled_from(
            [
                f"{units}.{fraction:0{places}d}",
                "NaN",
                "Infinity",
                "-Infinity",
                repr(0.1 + 0.2),  # a binary fraction's noise: 0.30000000000000004
                repr(1.1 * 3),
            ]
        )
    )
    marker = "__AMOUNT__"
    put(doc, path, marker)
    # A JSON number, not a string: spliced in after dumping.
    return Bad("float-money", wire(doc).replace(f'"{marker}"'.encode(), literal.encode()))


@st.composite
def deep_nesting(draw: st.DrawFn, bases: Bases) -> Bad:
    shape = draw(st.sampled_from(["array", "object", "in-field", "in-field-shallow"]))
    if shape == "in-field-shallow":
        # Deep enough to be silly, shallow enough for the JSON parser: a wrong type.
        depth = draw(st.integers(10, 120))
    else:
        depth = draw(st.integers(129, 60_000))
    if shape == "array":
        return Bad("deep-nesting", b"[" * depth + b"]" * depth)
    if shape == "object":
        return Bad("deep-nesting", b'{"a":' * depth + b"1" + b"}" * depth)
    doc = base(draw, bases)
    path = pick(draw, doc, {"id", "lines", "count"})
    marker = "__NESTED__"
    put(doc, path, marker)
    return Bad(
        "deep-nesting", wire(doc).replace(f'"{marker}"'.encode(), b"[" * depth + b"]" * depth)
    )


def _not_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


_broken_text = st.one_of(
    st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80"]),
    st.sampled_from(["杯子-红色", "マグカップ", "Café crème", "Größe"]).flatmap(
        lambda text: st.sampled_from(
            [text.encode(e) for e in ("gbk", "shift_jis", "latin-1") if _encodes(text, e)]
        )
    ),
)


def _encodes(text: str, encoding: str) -> bool:
    try:
        return _not_utf8(text.encode(encoding))
    except UnicodeEncodeError:
        return False


@st.composite
def non_utf8(draw: st.DrawFn, bases: Bases) -> Bad:
    shape = draw(st.sampled_from(["binary", "in-string", "utf-16"]))
    if shape == "binary":
        return Bad("non-utf8", draw(st.binary(min_size=1, max_size=2000).filter(_not_utf8)))
    doc = base(draw, bases)
    if shape == "utf-16":
        return Bad("non-utf8", json.dumps(doc).encode(draw(st.sampled_from(["utf-16", "utf-32"]))))
    path = pick(draw, doc, {"id"})
    marker = "__BYTES__"
    put(doc, path, marker)
    return Bad("non-utf8", wire(doc).replace(marker.encode(), draw(_broken_text)))


@st.composite
def big_value(draw: st.DrawFn, bases: Bases) -> Bad:
    doc = base(draw, bases)
    path = pick(draw, doc, {"id", "word"})
    char = draw(st.sampled_from(["x", "é", "商", "😀", "\\"]))
    put(doc, path, "")
    room = MESSAGE_LIMIT - len(wire(doc))
    put(doc, path, char * (room // (len(json.dumps(char, ensure_ascii=False).encode()) - 2)))
    value = wire(doc)
    assert MESSAGE_LIMIT - 8 <= len(value) <= MESSAGE_LIMIT, len(value)
    return Bad("big-value", value)


@st.composite
def control_char(draw: st.DrawFn, bases: Bases) -> Bad:
    doc = base(draw, bases)
    path = pick(draw, doc, {"id"}, required=True)
    text = str(get(doc, path))
    at = draw(st.integers(0, len(text)))
    char = chr(draw(st.one_of(st.integers(0, 31), st.just(127))))
    raw = draw(st.booleans()) and char != "\x7f"
    if not raw:
        put(doc, path, text[:at] + char + text[at:])
        return Bad("control-char", wire(doc))
    # Unescaped in the JSON text: not valid JSON at all.
    marker = "__CTRL__"
    put(doc, path, text[:at] + marker + text[at:])
    return Bad("control-char", wire(doc).replace(marker.encode(), char.encode()))


_kinds = ("order", "ad_spend", "inventory")


@st.composite
def contract(draw: st.DrawFn, bases: Bases) -> Bad:
    """Other breaches of the event contract: unknown keys and kinds, values outside the
    vocabulary, inconsistent events, JSON that is not an event at all."""
    doc = base(draw, bases)
    shape = draw(
        st.sampled_from(
            [
                "extra-key",
                "unknown-kind",
                "other-kind",
                "not-an-object",
                "empty",
                "word",
                "marketplace",
                "no-lines",
                "too-many-lines",
                "mixed-currencies",
                "interval-backwards",
                "zero-quantity",
            ]
        )
    )
    if shape == "extra-key":
        key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in doc))
        doc[key] = draw(st.one_of(st.integers(), st.text(max_size=8), st.none()))
    elif shape == "unknown-kind":
        doc["type"] = draw(st.text(max_size=12).filter(lambda t: t not in _kinds))
    elif shape == "other-kind":
        doc["type"] = draw(st.sampled_from([k for k in _kinds if k != doc["type"]]))
    elif shape == "not-an-object":
        scalar = st.one_of(
            st.integers(), st.floats(allow_nan=False), st.text(), st.booleans(), st.none()
        )
        return Bad("contract", draw(st.one_of(scalar.map(wire), st.sampled_from([b"", b" \n"]))))
    elif shape == "empty":
        return Bad("contract", draw(st.sampled_from([b"{}", None])))
    elif shape == "word":
        path = pick(draw, doc, {"word"} - {"currency"}, required=True)
        known = {"amazon", "walmart", "shopify", "shopee", "lazada", "tiktok", "rakuten", "yahoo"}
        known |= {"placed", "shipped", "delivered", "cancelled", "returned", "refunded"}
        known |= {"marketplace", "merchant", "fba", "3pl", "own", *_kinds}
        put(doc, path, draw(st.text(max_size=12).filter(lambda w: w not in known)))
    elif shape == "marketplace":
        doc["marketplace"] = draw(
            st.text(max_size=4).filter(lambda m: re.fullmatch("[A-Z]{2}", m) is None)
        )
    elif doc["type"] == "order" and shape == "no-lines":  # only a cancellation may have none
        doc["lines"] = []
        doc["status"] = "placed"
    elif doc["type"] == "order" and shape == "too-many-lines":
        doc["lines"] = doc["lines"] * (1001 // len(doc["lines"]) + draw(st.integers(1, 3)))
    elif doc["type"] == "order" and shape == "mixed-currencies":
        other = draw(st.sampled_from(["USD", "JPY", "EUR", "MYR", "SGD"]))
        line = {**doc["lines"][0], "unit_price": {"amount": "1", "currency": other}}
        if other == doc["lines"][0]["unit_price"]["currency"]:
            line["unit_price"]["currency"] = "GBP"
        doc["lines"].append(line)
    elif doc["type"] == "ad_spend" and shape == "interval-backwards":
        doc["interval_start"], doc["interval_end"] = doc["interval_end"], doc["interval_start"]
    elif doc["type"] == "order" and shape == "zero-quantity":
        doc["lines"][0]["quantity"] = 0
    else:  # a shape that does not fit this kind of event: an unknown key instead
        doc["\x00"] = shape
    return Bad("contract", wire(doc))


STRATEGIES: Final[dict[str, Callable[[Bases], st.SearchStrategy[Bad]]]] = {
    "wrong-type": wrong_type,
    "missing-field": missing_field,
    "unknown-currency": unknown_currency,
    "naive-time": naive_time,
    "absurd-time": absurd_time,
    "huge-number": huge_number,
    "float-money": float_money,
    "deep-nesting": deep_nesting,
    "non-utf8": non_utf8,
    "big-value": big_value,
    "control-char": control_char,
    "contract": contract,
}


def draw_examples(strategy: st.SearchStrategy[Bad], count: int, at: int) -> list[Bad]:
    """`count` examples of `strategy`, the same ones on every run (see the module docstring)."""
    found: list[Bad] = []

    @seed(SEED + at)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(bad: Bad) -> None:
        found.append(bad)

    collect()
    return found


def bad_payloads(valid: list[Event]) -> list[Bad]:
    """The 10,000 bad payloads, mutations of `valid`, by category (see CATEGORIES)."""
    bases = Bases(encode(event) for event in valid)
    found: list[Bad] = []
    for at, (category, count) in enumerate(CATEGORIES.items()):
        drawn = draw_examples(STRATEGIES[category](bases), count, at)
        assert len(drawn) == count, f"{category}: hypothesis gave {len(drawn)} of {count}"
        found.extend(drawn)
    return [_with_element_flag(bad) for bad in found]


def _with_element_flag(bad: Bad) -> Bad:
    """Small JSON objects may also be sent as one element of a packed message."""
    if bad.value is None or len(bad.value) > 64 * 1024:
        return bad
    try:
        element = isinstance(pydantic_core.from_json(bad.value), dict)
    except ValueError:
        element = False
    return Bad(bad.category, bad.value, element)


def valid_events() -> list[Event]:
    return list(simulate(START, hours=72, stores=6, skus=4, seed=3, incident_rate=0.3))


# --- The messages --------------------------------------------------------------------------


@dataclass
class Outgoing:
    """One Kafka message to produce: its key, its elements (valid event bytes, or the index
    of a bad payload) and whether it is packed (a JSON array)."""

    key: bytes | None
    parts: list[bytes | int]
    packed: bool

    def value(self, bad: list[Bad]) -> bytes | None:
        if not self.packed:
            [part] = self.parts
            return bad[part].value if isinstance(part, int) else part
        items = [bad[p].value if isinstance(p, int) else p for p in self.parts]
        return b"[" + b",".join(item or b"null" for item in items) + b"]"


def interleave(valid: list[Event], bad: list[Bad], rng: random.Random) -> list[Outgoing]:
    """The valid events packed as `kpiwatch produce` packs them, with the bad payloads among
    them: a third of the small JSON ones inside a store's packed message, some packed with
    other bad ones only, the rest as messages of their own between the valid ones."""
    messages = [
        Outgoing(group[0].store_id.encode(), [encode(e) for e in group], True)
        for group in pack(valid)
    ]
    keys = [m.key for m in messages]
    loose: list[Outgoing] = []
    pending: list[bytes | int] = []
    order = list(range(len(bad)))
    rng.shuffle(order)
    for index in order:
        roll = rng.random()
        if bad[index].element and roll < 0.3:
            target = rng.choice(messages)
            target.parts.insert(rng.randrange(len(target.parts) + 1), index)
        elif bad[index].element and roll < 0.4:
            pending.append(index)
            if len(pending) >= rng.randint(2, 6):
                loose.append(Outgoing(rng.choice(keys), pending, True))
                pending = []
        else:
            # A few without a key (a tombstone needs one: Kafka refuses neither key nor value).
            keyless = rng.random() < 0.05 and bad[index].value is not None
            key = None if keyless else rng.choice(keys)
            loose.append(Outgoing(key, [index], False))
    if pending:
        loose.append(Outgoing(rng.choice(keys), pending, True))
    for message in loose:
        messages.insert(rng.randrange(len(messages) + 1), message)
    for message in messages:  # one event alone is a JSON object, as encode_message sends it
        message.packed = len(message.parts) > 1
    return messages


Where = tuple[int, int, int | None]  # partition, offset, index in a packed message


async def produce(
    services: Services, topic: str, messages: list[Outgoing], bad: list[Bad]
) -> dict[Where, int]:
    """Send every message in order; returns where each bad payload went."""
    producer = AIOKafkaProducer(
        bootstrap_servers=services.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=1024 * 1024,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, message.value(bad), key=message.key) for message in messages
        ]
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    placed: dict[Where, int] = {}
    for message, metadata in zip(messages, sent, strict=True):
        for position, part in enumerate(message.parts):
            if isinstance(part, int):
                index = position if len(message.parts) > 1 else None
                placed[(metadata.partition, metadata.offset, index)] = part
    return placed


# --- What the worker should hold -----------------------------------------------------------


def expected_kpis(valid: list[Event]) -> tuple[str, dict[tuple[str, str], list[dict[str, Any]]]]:
    """What `kpiwatch kpis` says for the valid events alone (the same code, in-process)."""
    engine = Engine(load_default())
    records = (RawRecord(source=str(n), value=encode(e)) for n, e in enumerate(valid))
    report = run_replay(records, engine.rules, lambda alert: None, engine=engine)
    assert not report.rejected, report.rejected[:3]
    view = reader(engine.state)
    at = view.newest_event()
    assert at is not None
    return at.isoformat(), {(by, w): kpi_rows(view, by, w, at) for by, w in LEVELS}


async def kpis_match(
    worker: WorkerProcess, at: str, want: dict[tuple[str, str], list[dict[str, Any]]]
) -> dict[tuple[str, str], Any]:
    """The worker's /kpis at every level once they equal `want` (or at the deadline)."""
    deadline = time.monotonic() + 120
    got: dict[tuple[str, str], Any] = {}
    while time.monotonic() < deadline:
        try:
            got = {(by, w): worker.kpis(by, w, at) for by, w in LEVELS}
        except httpx.HTTPError:
            got = {}
        if got == want:
            break
        await asyncio.sleep(1.0)
    return got


def stats(worker: WorkerProcess) -> dict[str, float]:
    response = httpx.get(f"{worker.url}/stats", timeout=10)
    response.raise_for_status()
    found: dict[str, float] = response.json()
    return found


def check_dead_letter(record: dict[str, Any], bad: Bad, topic: str, where: Where) -> list[str]:
    """What is wrong with one dead letter (nothing: an empty list)."""
    problems = []
    reason = record.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        problems.append("no reason")
    elif any(ord(c) < 32 or ord(c) == 127 for c in reason):
        problems.append(f"control characters in the reason {reason[:80]!r}")
    elif bad.category in REASONS and not any(w in reason.lower() for w in REASONS[bad.category]):
        problems.append(f"reason {reason[:120]!r} does not say {REASONS[bad.category]}")
    if record.get("topic") != topic:
        problems.append(f"topic {record.get('topic')!r}")
    if (record.get("partition"), record.get("offset")) != where[:2]:
        problems.append(f"at {record.get('partition')}/{record.get('offset')}, want {where[:2]}")
    if record.get("index") != where[2]:
        problems.append(f"index {record.get('index')!r}, want {where[2]!r}")
    if len(json.dumps(record)) > DEAD_LETTER_BYTES:
        problems.append(f"{len(json.dumps(record))} bytes")
    return problems


def check_bytes(record: dict[str, Any], held: bytes, sent: bytes) -> list[str]:
    """A dead letter carries the message's bytes, or (a long one) their beginning and length."""
    if record.get("value_truncated"):
        if record.get("value_bytes") != len(sent) or not sent.startswith(held):
            return ["a truncated copy that is not the message's beginning"]
        return []
    return [] if held == sent else ["carries other bytes than the message's"]


def held_bytes(record: dict[str, Any]) -> bytes | None:
    """The message bytes a dead letter carries (None: it carries none)."""
    if record.get("value") is not None:
        return str(record["value"]).encode()
    if record.get("value_base64") is not None:
        return base64.b64decode(record["value_base64"])
    return None


# --- The test ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def payloads() -> tuple[list[Event], list[Bad]]:
    valid = valid_events()
    started = time.monotonic()
    bad = bad_payloads(valid)
    print(f"\n{len(bad)} bad payloads drawn in {time.monotonic() - started:.1f}s")
    return valid, bad


def test_every_bad_payload_is_refused_by_the_decoder(
    payloads: tuple[list[Event], list[Bad]],
) -> None:
    """Each generated payload, alone, is an invalid event (so the worker test below holds the
    worker to dead-lettering exactly these): a payload the contract accepts fails here, named
    by category and number."""
    _, bad = payloads
    assert len(bad) == sum(CATEGORIES.values()) == 10_000
    accepted = []
    for number, payload in enumerate(bad):
        found = decode_message(payload.value, f"bad/{number}")
        if len(found) != 1 or not isinstance(found[0], InvalidEventError):
            accepted.append((number, payload.category, (payload.value or b"")[:300]))
    assert not accepted, f"{len(accepted)} accepted, e.g. {accepted[:5]}"


async def test_ten_thousand_bad_payloads_are_dead_lettered_and_valid_events_counted_once(
    services: Services,
    prefix: str,
    worker_factory: WorkerFactory,
    payloads: tuple[list[Event], list[Bad]],
) -> None:
    """The 10,000 bad payloads among the valid events, on the real broker, to one worker:
    each bad one is on the dead-letter topic exactly once, at the partition, offset and index
    it was produced to, with a reason that names the mistake, and at most 512 KiB; the worker
    never crashed or restarted and did not stall (everything within the deadlines); its /kpis
    equal the offline KPIs of the valid events alone, and /stats counts every event in and
    every bad one dead-lettered."""
    valid, bad = payloads
    rng = random.Random(SEED)
    messages = interleave(valid, bad, rng)
    topic = prefix + EVENTS_TOPIC
    names = [prefix + n for n in (EVENTS_TOPIC, *TOPICS.values(), "alerts", "dead-letter")]
    await ensure_topics(services.kafka_bootstrap, names, 4)
    worker = worker_factory(prefix, extra={"KPIWATCH_ROLLUP_IDLE_S": "900"})
    worker.start()

    started = time.monotonic()
    placed = await produce(services, topic, messages, bad)
    assert sorted(placed.values()) == list(range(len(bad)))
    packed = sum(1 for where in placed if where[2] is not None)
    print(
        f"produced {len(messages)} messages ({len(valid)} valid events, {len(bad)} bad, "
        f"{packed} of them inside packed messages) in {time.monotonic() - started:.1f}s"
    )

    dead = await read_topic(
        services.kafka_bootstrap,
        prefix + "dead-letter",
        until=lambda got: len(got) >= len(bad),
        timeout=150.0,
    )
    print(f"{len(dead)} dead letters after {time.monotonic() - started:.1f}s")
    at, want = expected_kpis(valid)
    got = await kpis_match(worker, at, want)
    print(f"/kpis caught up after {time.monotonic() - started:.1f}s")

    # 0 crashes, 0 restarts: the one process started is still running, its agents never crashed.
    assert worker.process is not None, worker.tail()
    assert worker.process.poll() is None, worker.tail()
    assert worker.starts == 1
    log = worker.log.read_text(errors="replace")
    assert "Crashed reason" not in log, worker.tail(80)
    assert "Traceback" not in log, worker.tail(80)

    # 100% of the bad payloads dead-lettered, each once, where it was produced, with a reason.
    by_place: dict[Where, list[dict[str, Any]]] = {}
    for record in dead:
        place = (record["partition"], record["offset"], record.get("index"))
        by_place.setdefault(place, []).append(record)
    assert len(dead) == len(bad), f"{len(dead)} dead letters for {len(bad)} bad payloads"
    missing = [(where, bad[n].category) for where, n in placed.items() if where not in by_place]
    assert not missing, f"{len(missing)} not dead-lettered, e.g. {missing[:5]}"
    assert set(by_place) == set(placed), set(by_place) - set(placed)
    problems = []
    for where, records in by_place.items():
        payload = bad[placed[where]]
        if len(records) != 1:
            problems.append((where, payload.category, f"{len(records)} dead letters"))
            continue
        found = check_dead_letter(records[0], payload, topic, where)
        held = held_bytes(records[0])
        if where[2] is None and held is not None:  # the message is the payload: its bytes
            found.extend(check_bytes(records[0], held, payload.value or b""))
        problems.extend((where, payload.category, p) for p in found)
    assert not problems, f"{len(problems)} bad dead letters, e.g. {problems[:5]}"
    reasons = Counter(r["reason"].split(":")[0][:40] for r in dead)
    print("dead letters by category:", dict(Counter(b.category for b in bad)))
    print("most common reasons:", reasons.most_common(8))

    # Every valid event counted exactly once: the worker's KPIs are the offline ones.
    for level, rows in want.items():
        assert got.get(level) == rows, f"{level}: {len(got.get(level) or [])} rows differ"
    counters = stats(worker)
    elements = sum(len(m.parts) for m in messages)
    assert counters.get("kpiwatch_events_in_total") == elements, counters
    assert counters.get("kpiwatch_events_dead_lettered_total") == len(bad), counters
    print(f"worker stats: {counters}; done after {time.monotonic() - started:.1f}s")
    worker.stop()
