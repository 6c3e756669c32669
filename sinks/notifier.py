"""Assemble the notification pipeline of a worker from its sinks file and its Redis.

With Redis, dedupe, rate limits, silences and acknowledgements are shared by every worker;
without it (a newcomer's laptop, the embedded runtime) they hold within this process only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, get_args

import httpx
from redis.asyncio import Redis

from sinks import http
from sinks.base import Sink
from sinks.config import Delivery, Mention, RateLimit
from sinks.dispatch import DeadLetter, Dispatcher, Observer, Stages
from sinks.ledger import MemoryLedger, RedisLedger
from sinks.links import Links
from sinks.load import SinksSetup
from sinks.ratelimit import MemoryLimiter, RedisLimiter
from sinks.registry import build
from sinks.render import Language
from sinks.route import Route, compile_route, find_route
from sinks.silence import SilenceStore

# Sinks that are not in the sinks file (the console, the KPIWATCH_WEBHOOK_URL shortcut) get
# every alert at once, as they always did.
IMMEDIATE: Final = 0.0


def build_dispatcher(
    sinks: Sequence[Sink],
    setup: SinksSetup | None,
    *,
    redis: Redis | None,
    namespace: str,
    dead_letter: DeadLetter,
    observer: Observer,
    client: httpx.AsyncClient | None = None,
) -> tuple[Dispatcher, SilenceStore | None]:
    """The dispatcher (not yet started) and, with Redis, the silence store it honours."""
    stages = Stages(
        setup.delivery if setup is not None else Delivery(),
        ledger=RedisLedger(redis, namespace) if redis is not None else MemoryLedger(),
        limiter=RedisLimiter(redis, namespace) if redis is not None else MemoryLimiter(),
        dead_letter=dead_letter,
        observer=observer,
    )
    silences = SilenceStore(redis, namespace) if redis is not None else None
    attach_links(sinks, setup)
    dispatcher = Dispatcher(
        {sink.name: sink for sink in sinks},
        full_route(setup, [s.name for s in sinks]),
        stages,
        limits=_limits(setup),
        variant=_variants(setup, client) if setup is not None else None,
        mute=silences,
    )
    return dispatcher, silences


def links_of(setup: SinksSetup | None) -> Links | None:
    """The Grafana and silence links of the sinks file's `links:`, if it has one."""
    if setup is None or setup.links is None:
        return None
    return Links(setup.links)


def attach_links(sinks: Sequence[Sink], setup: SinksSetup | None) -> None:
    """Give every sink that renders for people the file's links (a sink built outside the
    file, like the console, has none to give)."""
    links = links_of(setup)
    if links is None:
        return
    for sink in sinks:
        if hasattr(sink, "links"):
            sink.links = links


def full_route(setup: SinksSetup | None, names: Sequence[str]) -> Route:
    """The file's routing tree, plus a catch-all for sinks the file does not define."""
    if setup is None:
        return _immediate("0", tuple(names))
    in_file = {c.name for c in setup.sinks}
    extra = tuple(n for n in names if n not in in_file)
    if not extra:
        return setup.route
    tree = Route(**{**setup.route.__dict__, "continue_": True})
    return Route(**{**_immediate("root", ()).__dict__, "routes": (tree, _immediate("x", extra))})


def _immediate(id_: str, sinks: tuple[str, ...]) -> Route:
    root = compile_route(None, sinks)
    return Route(
        **{**root.__dict__, "id": id_, "group_wait": IMMEDIATE, "group_interval": IMMEDIATE}
    )


def _limits(setup: SinksSetup | None) -> dict[str, RateLimit]:
    if setup is None:
        return {}
    return {c.name: c.rate_limit for c in setup.sinks if c.rate_limit is not None}


def _variants(setup: SinksSetup, client: httpx.AsyncClient | None) -> _Variants:
    return _Variants(setup, client or http.new_client(setup.delivery.timeout))


def lane_sink(
    sinks: Sequence[Sink], setup: SinksSetup | None, client: httpx.AsyncClient | None = None
) -> Callable[[str], Sink | None]:
    """The sink behind a lane's name, `sink`, `sink/language`, `sink/language#route` (as
    dead-letter records name it), or None when there is no such sink."""
    attach_links(sinks, setup)
    by_name = {sink.name: sink for sink in sinks}
    variant = _variants(setup, client) if setup is not None else None

    def find(lane: str) -> Sink | None:
        lane, _, route_id = lane.partition("#")
        name, _, language = lane.partition("/")
        sink = by_name.get(name)
        if sink is None or variant is None or setup is None:
            return sink
        # As the dispatcher names and builds lanes: a sink without a language is itself.
        known = [choice for choice in get_args(Language) if choice == language]
        route = find_route(setup.route, route_id) if route_id else None
        mention = route.mention if route is not None else None
        if not known and mention is None:
            return sink
        return variant(name, known[0] if known else None, mention) or sink

    return find


class _Variants:
    """A sink rendering in another language than its file says, for a route's `language`,
    and @-ing the route's people rather than its own."""

    def __init__(self, setup: SinksSetup, client: httpx.AsyncClient) -> None:
        self._configs = {c.name: c for c in setup.sinks}
        self._client = client
        self._setup = setup

    def __call__(
        self, name: str, language: Language | None, mention: Mention | None = None
    ) -> Sink | None:
        config = self._configs.get(name)
        if config is None:
            return None
        if language is not None and "language" in type(config).model_fields:
            # A shallow copy shares the resolved secrets with the original.
            config = config.model_copy(update={"language": language})
        if mention is not None:
            config = config.mentioning(mention)
        if config is self._configs[name]:
            return None
        sink = build(config, self._client)
        attach_links([sink], self._setup)
        return sink
