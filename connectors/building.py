"""What every connector's builder shares: `kpiwatch connect SOURCE` reads the config file's
section for SOURCE into the connector's own Section model (each connector module defines its
section and its `build_*` function next to the code it configures), then the builder turns it
into Sources (polled, checkpointed), receivers (HTTP endpoints the platform pushes to) and
consumers (queues), with this Context; `streams.connect` runs what it built.

Secrets are never written in the file: a secret names where it lives, `{env: NAME}` or
`{file: PATH}` (rules.fileconfig.SecretSource), and is read once at load time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from aiohttp import web
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationInfo

from connectors.base import EventSink, FeedRef, RejectSink, Source
from connectors.checkpoint import CheckpointStore
from rules.fileconfig import Seconds, SecretSource


class Receiver(Protocol):
    """An HTTP endpoint a platform pushes to (webhooks, push notifications)."""

    def app(self) -> web.Application: ...


class Consumer(Protocol):
    """A queue read until cancelled (Marketing Stream through SQS)."""

    async def run(self) -> None: ...


@dataclass
class Context:
    """What a source is built with: the shared HTTP client, where cursors (and rotated
    refresh tokens) are kept, and where events and rejected records go (`push_sink` for
    receivers: it also records each store's last successful hand-off)."""

    client: httpx.AsyncClient
    checkpoints: CheckpointStore
    sink: EventSink
    on_rejected: RejectSink
    push_sink: EventSink


@dataclass
class Built:
    sources: list[Source] = field(default_factory=list)
    receivers: list[Receiver] = field(default_factory=list)
    # By source name: the store feed a source reads, whose passes are reported to the engine.
    feeds: dict[str, FeedRef] = field(default_factory=dict)
    consumers: list[Consumer] = field(default_factory=list)
    # Called once the connector stops (clients the builders opened).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def add(self, source: Source, feed: FeedRef | None) -> None:
        self.sources.append(source)
        if feed is not None:
            self.feeds[source.name] = feed


class Section(BaseModel):
    """What every section has: how often its sources are polled."""

    model_config = ConfigDict(extra="forbid")

    poll_interval: Seconds = 300.0


async def rotating_token(
    context: Context, name: str, configured: SecretSource
) -> tuple[SecretStr, Callable[[SecretStr], Awaitable[None]]]:
    """A refresh token that the platform replaces on every refresh (Shopee, TikTok Shop): the
    newest one is kept next to the cursors (the configured one only seeds the first run), and
    the callback stores each new one."""
    key = f"refresh-token:{name}"
    stored = await context.checkpoints.load(key)

    async def keep(token: SecretStr) -> None:
        await context.checkpoints.save(key, token.get_secret_value())

    return (SecretStr(stored) if stored else configured.get()), keep


def one_token_per_store(
    tokens: dict[str, SecretSource], info: ValidationInfo
) -> dict[str, SecretSource]:
    """A refresh token for every configured shop, and none for a store nobody configured."""
    stores = {shop.store_id for shop in info.data.get("shops") or []}
    missing, unknown = sorted(stores - tokens.keys()), sorted(tokens.keys() - stores)
    if missing:
        raise ValueError(f"no token for store(s) {', '.join(missing)}")
    if unknown:
        raise ValueError(f"no shop has store_id {', '.join(unknown)}")
    return tokens
