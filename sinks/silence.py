"""Silences and acknowledgements, kept in Redis so that every worker honours them.

A silence mutes every alert whose labels match all of its matchers between its start and end
(Alertmanager's matcher syntax: `store=us-1`, `store!=us-1`, `sku=~A-.*`, `sku!~A-.*`).
An acknowledgement mutes one firing alert (by fingerprint) until it resolves: the resolved
notification still goes out, and clears the acknowledgement.

`main` is the `kpiwatch silence ...` command line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rules.alerts import Alert
from rules.fileconfig import UNITS
from sinks.config import LABEL_NAME

log = logging.getLogger(__name__)

MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")
ACK_TTL = timedelta(days=7)  # an acknowledged alert that never resolves is not muted for ever
KEEP_EXPIRED = timedelta(days=1)  # ended silences stay listable this long, then are dropped


class Matcher(BaseModel):
    """Alertmanager's v2 matcher shape."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=LABEL_NAME)
    value: str
    is_regex: bool = Field(default=False, alias="isRegex")
    is_equal: bool = Field(default=True, alias="isEqual")

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.is_regex:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"{self.value!r} is not a regular expression: {exc}") from exc
        return self

    @classmethod
    def parse(cls, text: str) -> Matcher:
        match = MATCHER.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a matcher (name=value, !=, =~ or !~)")
        name, op, value = match.groups()
        return cls(name=name, value=value, is_regex="~" in op, is_equal=op[0] == "=")

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        hit = re.fullmatch(self.value, value) is not None if self.is_regex else value == self.value
        return hit == self.is_equal

    def __str__(self) -> str:
        op = {(True, False): "=", (False, False): "!=", (True, True): "=~", (False, True): "!~"}
        return f"{self.name}{op[self.is_equal, self.is_regex]}{self.value}"


class Silence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    matchers: list[Matcher] = Field(min_length=1)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    created_by: str = Field(min_length=1)
    comment: str = ""

    @model_validator(mode="after")
    def _ends_after_start(self) -> Silence:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


class SilenceStore:
    """Silences in one Redis hash, acknowledgements as keys with a TTL; implements `Mute`."""

    def __init__(
        self,
        redis: Redis,
        namespace: str = "kpiwatch:",
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        refresh: float = 2.0,
    ) -> None:
        self._redis = redis
        self._hash = f"{namespace}silences"
        self._acks = f"{namespace}ack:"
        self._clock = clock
        self._refresh = refresh
        self._cache: tuple[float, list[Silence]] = (float("-inf"), [])

    async def add(self, silence: Silence) -> Silence:
        await self._redis.hset(self._hash, silence.id, silence.model_dump_json())
        self._cache = (float("-inf"), [])
        return silence

    async def silences(self, *, expired: bool = False) -> list[Silence]:
        raw: dict[Any, Any] = await self._redis.hgetall(self._hash)
        now = self._clock()
        silences = sorted((Silence.model_validate_json(v) for v in raw.values()), key=_start)
        stale = [s.id for s in silences if s.ends_at < now - KEEP_EXPIRED]
        if stale:
            await self._redis.hdel(self._hash, *stale)
        return [s for s in silences if s.id not in stale and (expired or now < s.ends_at)]

    async def expire(self, silence_id: str) -> Silence | None:
        """End a silence now; None when there is no such silence (or it had already ended)."""
        raw = await self._redis.hget(self._hash, silence_id)
        now = self._clock()
        silence = Silence.model_validate_json(raw) if raw is not None else None
        if silence is None or silence.ends_at <= now:
            return None
        ended = silence.model_copy(update={"ends_at": max(now, silence.starts_at)})
        if ended.ends_at == ended.starts_at:  # not started yet: it never applies
            await self._redis.hdel(self._hash, silence_id)
        else:
            await self._redis.hset(self._hash, silence_id, ended.model_dump_json())
        self._cache = (float("-inf"), [])
        return ended

    async def acknowledge(self, fingerprint: str, by: str, comment: str = "") -> None:
        record = json.dumps({"by": by, "comment": comment, "at": self._clock().isoformat()})
        await self._redis.set(self._acks + fingerprint, record, ex=ACK_TTL)

    async def acknowledged(self, fingerprint: str) -> bool:
        return bool(await self._redis.exists(self._acks + fingerprint))

    async def muted(self, alert: Alert, labels: Mapping[str, str]) -> bool:
        try:
            if alert.status == "resolved":
                await self._redis.delete(self._acks + alert.fingerprint)
            elif await self.acknowledged(alert.fingerprint):
                return True
            silences = await self._active()
        except RedisError as exc:
            # Redis down: the silences last read still apply; an unknown ack does not. A
            # repeat too many beats an alert nobody hears about.
            log.warning("silences unavailable (%s); using the last ones read", exc)
            silences = self._cache[1]
        now = self._clock()
        # `fingerprint=...` silences one alert (what a chat message's silence link makes).
        labels = {**labels, "fingerprint": alert.fingerprint}
        return any(s.active(now) and s.matches(labels) for s in silences)

    async def _active(self) -> list[Silence]:
        """Silences re-read at most every `refresh` seconds: one Redis call, not one per alert."""
        read_at, silences = self._cache
        if time.monotonic() - read_at >= self._refresh:
            silences = await self.silences()
            self._cache = (time.monotonic(), silences)
        return silences


def _start(silence: Silence) -> datetime:
    return silence.starts_at


def new_silence(
    matchers: Sequence[str],
    duration: float,
    created_by: str,
    comment: str = "",
    now: datetime | None = None,
) -> Silence:
    """A silence from the command line's words; ValueError says what is wrong."""
    start = now or datetime.now(UTC)
    try:
        return Silence(
            matchers=[Matcher.parse(m) for m in matchers],
            starts_at=start,
            ends_at=start + timedelta(seconds=duration),
            created_by=created_by,
            comment=comment,
        )
    except ValidationError as exc:
        raise ValueError("; ".join(_error_text(e) for e in exc.errors())) from exc


def silence_from_json(body: Any, now: datetime | None = None) -> Silence:
    """A silence from the HTTP API: starts_at defaults to now, or `duration` replaces ends_at."""
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    start = now or datetime.now(UTC)
    body = {"starts_at": start.isoformat(), **body}
    if "duration" in body:
        seconds = _duration(str(body.pop("duration")))
        body["ends_at"] = (datetime.fromisoformat(body["starts_at"]) + seconds).isoformat()
    body.pop("id", None)  # the store names silences; a client must not overwrite another's
    try:
        return Silence.model_validate(body)
    except ValidationError as exc:
        raise ValueError("; ".join(_error_text(e) for e in exc.errors())) from exc


def _error_text(error: Any) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {message}" if loc else message


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if match is None:
        raise ValueError(f"duration: {text!r} is not a duration (e.g. 30m, 2h, 1d)")
    return timedelta(seconds=float(match[1]) * UNITS[match[2]])


# ---------------------------------------------------------------- command line


EXAMPLES = """examples:
  kpiwatch silence add store=us-1 sku=~A-.* --duration 2h --comment "restocking"
  kpiwatch silence list --expired
  kpiwatch silence expire SILENCE_ID
  kpiwatch silence ack FINGERPRINT --comment "on it"
"""


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="kpiwatch silence",
        description="Silences and acknowledgements.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_argument("--redis-url", default=os.environ.get("KPIWATCH_REDIS_URL"))
    cli.add_argument(
        "--namespace",
        default=namespace(os.environ.get("KPIWATCH_TOPIC_PREFIX", "")),
        help="Redis key prefix (default: kpiwatch: plus KPIWATCH_TOPIC_PREFIX)",
    )
    commands = cli.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="mute alerts matching every matcher")
    add.add_argument("matchers", nargs="+", help="store=us-1, sku=~A-.*, team!=ads")
    add.add_argument("--duration", default="2h", help="30m, 2h, 1d (default 2h)")
    add.add_argument("--created-by", default=os.environ.get("USER", "unknown"))
    add.add_argument("--comment", default="")
    listing = commands.add_parser("list", help="silences in force or to come")
    listing.add_argument("--expired", action="store_true", help="include recently ended ones")
    listing.add_argument("--json", action="store_true")
    expire = commands.add_parser("expire", help="end a silence now")
    expire.add_argument("id")
    ack = commands.add_parser("ack", help="acknowledge a firing alert until it resolves")
    ack.add_argument("fingerprint")
    ack.add_argument("--created-by", default=os.environ.get("USER", "unknown"))
    ack.add_argument("--comment", default="")
    return cli


def namespace(topic_prefix: str) -> str:
    """Redis key prefix of one deployment: deployments sharing a Redis stay apart."""
    return f"kpiwatch:{topic_prefix}"


def main(argv: Sequence[str] | None = None) -> int:
    """`kpiwatch silence add|list|expire|ack ...`; returns the exit code."""
    args = parser().parse_args(argv)
    if not args.redis_url:
        print("error: set KPIWATCH_REDIS_URL or pass --redis-url", file=sys.stderr)
        return 2
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    redis = Redis.from_url(args.redis_url)
    try:
        return await _command(SilenceStore(redis, args.namespace), args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await redis.aclose()


async def _command(store: SilenceStore, args: argparse.Namespace) -> int:
    if args.command == "add":
        seconds = _duration(args.duration).total_seconds()
        silence = new_silence(args.matchers, seconds, args.created_by, args.comment)
        await store.add(silence)
        print(silence.id)
    elif args.command == "list":
        silences = await store.silences(expired=args.expired)
        for silence in silences:
            print(silence.model_dump_json() if args.json else _line(silence))
    elif args.command == "expire":
        if await store.expire(args.id) is None:
            print(f"error: no silence {args.id} in force", file=sys.stderr)
            return 1
    else:
        await store.acknowledge(args.fingerprint, args.created_by, args.comment)
    return 0


def _line(silence: Silence) -> str:
    matchers = ",".join(str(m) for m in silence.matchers)
    until = silence.ends_at.isoformat(timespec="seconds")
    return f"{silence.id}  {matchers}  until {until}  by {silence.created_by}  {silence.comment}"


if __name__ == "__main__":
    sys.exit(main())
