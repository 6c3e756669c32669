"""DingTalk custom robot: a markdown message to a group, signed, with @mobiles, @user ids
or @all.

Docs: https://open.dingtalk.com/document/robots/custom-robot-access (security settings: 加签).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Final

import httpx

from sinks.config import DingTalkConfig
from sinks.render import Message, fit
from sinks.robot import ErrorCodes, RobotSink

# errcode 130101 "send too fast, exceed 20 times per minute" (the robot is then throttled for
# 10 minutes; the deliverer caps the wait); -1 "system busy". Other non-zero codes are refusals.
RETRYABLE_CODES: Final[dict[int, float | None]] = {130101: 600.0, -1: None}
MAX_BYTES: Final = 18_000  # the robot rejects a markdown text of about 20,000 bytes


def sign(secret: str, timestamp_ms: int) -> str:
    """Base64 of HMAC-SHA256 keyed by the secret over "timestamp\\nsecret" (UTF-8).

    The documented final URL-encoding is done by httpx when it builds the query string.
    """
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


class DingTalkSink(RobotSink[DingTalkConfig]):
    """The webhook URL (with access_token) and the signing secret never appear in an error."""

    errors = ErrorCodes("errcode", "errmsg", RETRYABLE_CODES)

    def payload(self, message: Message) -> dict[str, Any]:
        config = self._config
        # DingTalk highlights an @ only when the text itself contains "@<mobile>" or
        # "@<userId>".
        who = [*config.mention_mobiles, *config.mention_user_ids]
        mentions = " ".join(f"@{m}" for m in who)
        text = fit(message, lambda m: m.markdown(), MAX_BYTES - len(mentions.encode()) - 2)
        at: dict[str, Any] = {"atMobiles": list(config.mention_mobiles)}
        if config.mention_user_ids:
            at["atUserIds"] = list(config.mention_user_ids)
        return {
            "msgtype": "markdown",
            "markdown": {"title": message.title, "text": f"{text}\n\n{mentions}".rstrip()},
            "at": {**at, "isAtAll": config.mention_all},
        }

    def url(self) -> str:
        url = self._config.url.get().get_secret_value()
        if self._config.secret is None:
            return url
        timestamp = int(self._clock() * 1000)
        signature = sign(self._config.secret.get().get_secret_value(), timestamp)
        return str(httpx.URL(url).copy_merge_params({"timestamp": timestamp, "sign": signature}))

    def signing_secret(self) -> str | None:
        secret = self._config.secret
        return secret.get().get_secret_value() if secret is not None else None
