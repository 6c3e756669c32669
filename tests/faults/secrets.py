"""Guarantee 7's scanner: did any secret get into what the processes wrote?

`assert_no_secrets(secrets, files=..., texts=..., records=...)` looks for each secret in log
files (a folder is read whole), captured output and topic records, as written and in the forms
it takes on the way there: JSON-escaped, URL-encoded, and inside base64 (a dead letter carries
its message as `value_base64`; an SMTP AUTH line is base64). It raises one AssertionError naming
every place a secret was found, with the secret shown only as its first characters and length.
`topic_records(bootstrap, topics)` reads every record of some topics (keys, values, headers) for
it. Other fault tests import both: `from faults.secrets import assert_no_secrets, topic_records`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote, quote_plus

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

__all__ = ["assert_no_secrets", "topic_records"]

# Shorter values would be found by chance (and are no secrets anyway).
MIN_SECRET: Final = 8
# Runs of base64 long enough to hide a secret of MIN_SECRET characters.
_BASE64: Final = re.compile(rb"[A-Za-z0-9+/_-]{12,}={0,2}")
SHOWN: Final = 4  # characters of a secret a report shows


@dataclass(frozen=True)
class Finding:
    where: str  # file:line, or the label a text or record was given
    secret: str
    form: str  # as written, json, url, base64
    context: str

    def __str__(self) -> str:
        return f"{self.where}: {mask(self.secret)} ({self.form}) in {self.context!r}"


def mask(secret: str) -> str:
    """Enough of a secret to tell which one it is, not enough to use it."""
    return f"{secret[:SHOWN]}... ({len(secret)} characters)"


def assert_no_secrets(
    secrets: Iterable[str],
    *,
    files: Iterable[Path] = (),
    texts: Iterable[tuple[str, str]] = (),
    records: Iterable[tuple[str, bytes]] = (),
) -> None:
    """Raise AssertionError if any of `secrets` is in `files` (a folder: every file under it),
    `texts` ((label, text) pairs: captured stdout and stderr) or `records` ((label, bytes)
    pairs: topic records)."""
    wanted = sorted({s for s in secrets if s}, key=len, reverse=True)
    short = [mask(s) for s in wanted if len(s) < MIN_SECRET]
    if short:
        raise ValueError(
            f"secrets shorter than {MIN_SECRET} characters cannot be scanned for: {short}"
        )
    if not wanted:
        raise ValueError("no secrets to scan for")
    needles = [(secret, form, data) for secret in wanted for form, data in _forms(secret)]
    found: list[Finding] = []
    for where, data in _sources(files, texts, records):
        found.extend(_scan(where, data, needles))
    if found:
        listed = "\n  ".join(str(f) for f in found[:20])
        more = f"\n  ... and {len(found) - 20} more" if len(found) > 20 else ""
        raise AssertionError(
            f"{len(found)} secret(s) written where they must not be:\n  {listed}{more}"
        )


def _forms(secret: str) -> Iterator[tuple[str, bytes]]:
    """A secret as written, and as a JSON string, a URL and a form would carry it."""
    seen: set[bytes] = set()
    for form, text in (
        ("as written", secret),
        ("json", json.dumps(secret)[1:-1]),
        ("json ascii", json.dumps(secret, ensure_ascii=True)[1:-1]),
        ("url", quote(secret, safe="")),
        ("form", quote_plus(secret, safe="")),
    ):
        data = text.encode()
        if data not in seen:
            seen.add(data)
            yield form, data


def _sources(
    files: Iterable[Path], texts: Iterable[tuple[str, str]], records: Iterable[tuple[str, bytes]]
) -> Iterator[tuple[str, bytes]]:
    for path in files:
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                yield str(file), file.read_bytes()
    for label, text in texts:
        yield label, text.encode(errors="surrogateescape")
    yield from records


def _scan(where: str, data: bytes, needles: list[tuple[str, str, bytes]]) -> list[Finding]:
    found = [
        _finding(where, data, at, secret, form, needles)
        for secret, form, needle in needles
        for at in _all(data, needle)
    ]
    for run in _BASE64.finditer(data):
        decoded = _unbase64(run.group())
        for secret, form, needle in needles:
            if decoded is not None and needle in decoded:
                hidden = data[: run.start()] + b"<BASE64 WITH SECRET>" + data[run.end() :]
                found.append(
                    _finding(where, hidden, run.start(), secret, f"base64, {form}", needles)
                )
    return found


def _all(data: bytes, needle: bytes) -> Iterator[int]:
    at = data.find(needle)
    while at >= 0:
        yield at
        at = data.find(needle, at + 1)


def _unbase64(run: bytes) -> bytes | None:
    padded = run + b"=" * (-len(run) % 4)
    try:
        if b"-" in run or b"_" in run:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _finding(
    where: str, data: bytes, at: int, secret: str, form: str, needles: list[tuple[str, str, bytes]]
) -> Finding:
    """Where in `where` (the line, for a file or text with several), and what is around it,
    with every secret (this one and the others) cut out of the context."""
    line = data.count(b"\n", 0, at) + 1
    place = f"{where}:{line}" if b"\n" in data else where
    start = max(0, data.rfind(b"\n", 0, at) + 1, at - 60)
    end = min(len(data), at + len(secret) * 3 + 60)
    chunk = data[start:end]
    for _, _, needle in needles:  # longest first: a secret inside another goes with it
        chunk = chunk.replace(needle, b"<SECRET>")
    context = chunk.decode(errors="replace").split("\n", 1)[0]
    return Finding(place, secret, form, context)


async def topic_records(
    bootstrap: str, topics: Iterable[str], *, timeout: float = 30.0
) -> list[tuple[str, bytes]]:
    """Every record of `topics` up to their current ends, as (label, bytes) pairs for
    `assert_no_secrets`: the value, and the key and each header when there are any. A topic
    that does not exist has none."""
    partitions = await _partitions(bootstrap, list(topics))
    found: list[tuple[str, bytes]] = []
    if not partitions:
        return found
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if all(positions[tp] >= ends[tp] for tp in partitions):
                break
            for messages in (await consumer.getmany(timeout_ms=300)).values():
                for m in messages:
                    label = f"{m.topic}/{m.partition}/{m.offset}"
                    found.append((label, m.value or b""))
                    if m.key:
                        found.append((f"{label} key", m.key))
                    found.extend((f"{label} header {k}", v or b"") for k, v in m.headers or ())
        else:
            raise TimeoutError(f"could not read {topics} to their ends in {timeout}s")
        return found
    finally:
        await consumer.stop()


async def _partitions(bootstrap: str, topics: list[str]) -> list[TopicPartition]:
    # The admin client: a consumer's metadata request would create a missing topic.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        described = await admin.describe_topics([t for t in topics if t in existing])
        return [
            TopicPartition(topic["topic"], p["partition"])
            for topic in described
            for p in topic["partitions"]
        ]
    finally:
        await admin.close()
