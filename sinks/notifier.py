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
from sinks.config import Delivery, RateLimit
from sinks.dispatch import DeadLetter, Dispatcher, Observer, Stages
from sinks.ledger import MemoryLedger, RedisLedger
from sinks.load import SinksSetup
from sinks.ratelimit import MemoryLimiter, RedisLimiter
from sinks.registry import build
from sinks.render import Language
from sinks.route import Route, compile_route
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
    dispatcher = Dispatcher(
        {sink.name: sink for sink in sinks},
        full_route(setup, [s.name for s in sinks]),
        stages,
        limits=_limits(setup),
        variant=_variants(setup, client) if setup is not None else None,
        mute=silences,
    )
    return dispatcher, silences


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
    """The sink behind a lane's name, `sink` or `sink/language` (as dead-letter records name
    it), or None when there is no such sink."""
    by_name = {sink.name: sink for sink in sinks}
    variant = _variants(setup, client) if setup is not None else None

    def find(lane: str) -> Sink | None:
        name, _, language = lane.partition("/")
        sink = by_name.get(name)
        if sink is None or variant is None:
            return sink
        # As the dispatcher names and builds lanes: a sink without a language is itself.
        known = [choice for choice in get_args(Language) if choice == language]
        return variant(name, known[0]) or sink if known else sink

    return find


class _Variants:
    """A sink rendering in another language than its file says, for a route's `language`."""

    def __init__(self, setup: SinksSetup, client: httpx.AsyncClient) -> None:
        self._configs = {c.name: c for c in setup.sinks}
        self._client = client

    def __call__(self, name: str, language: Language) -> Sink | None:
        config = self._configs.get(name)
        if config is None or "language" not in type(config).model_fields:
            return None
        # A shallow copy shares the resolved secrets with the original.
        return build(config.model_copy(update={"language": language}), self._client)
