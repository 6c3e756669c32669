"""Keep webhook secrets out of httpx's own request log.

Chat robots carry their token in the URL (DingTalk `?access_token=`, Slack `/services/T/B/X`),
and httpx logs every request's full URL at INFO. This filter rewrites those log records to show
only scheme and host, so `--verbose` stays safe to paste into a ticket.
"""

from __future__ import annotations

import logging
from typing import Final

import httpx

HTTPX_LOGGERS: Final = ("httpx", "httpcore")


class RedactUrls(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) for arg in record.args)
        return True


def _redact(value: object) -> object:
    if isinstance(value, httpx.URL):
        return f"{value.scheme}://{value.host}/<redacted>"
    return value


_FILTER: Final = RedactUrls()


def install() -> None:
    """Idempotent: attach the filter to the httpx loggers once."""
    for name in HTTPX_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
