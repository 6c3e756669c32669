"""Feishu/Lark custom bot: an interactive card to a group, signed in the body, with @mentions.

Docs: https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot (签名校验, 卡片).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Final

from sinks.config import FeishuConfig
from sinks.render import Message, fit
from sinks.robot import ErrorCodes, RobotSink

# code 11232: frequency limited (a custom bot takes 100 requests a minute, 5 a second).
# Others, e.g. 19021 sign mismatch, 19022 IP not allowed, 19024 keywords not found,
# 9499 bad request, are refusals.
RETRYABLE_CODES: Final[dict[int, float | None]] = {11232: None}
MAX_BYTES: Final = 16_000  # the whole request body may not exceed 20 KB
TEMPLATE: Final = {"critical": "red", "warning": "orange", "resolved": "green"}


def sign(secret: str, timestamp_s: int) -> str:
    """Base64 of HMAC-SHA256 keyed by "timestamp\\nsecret" over an empty message.

    Unlike DingTalk, the string is the key and the timestamp is in seconds.
    """
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class FeishuSink(RobotSink[FeishuConfig]):
    errors = ErrorCodes("code", "msg", RETRYABLE_CODES)

    def body(self, message: Message) -> dict[str, Any]:
        return {**self._signature(), **self.payload(message)}

    def payload(self, message: Message) -> dict[str, Any]:
        content = fit(message, lambda m: m.markdown(), MAX_BYTES) + self._mentions()
        return {
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": True},
                "header": {
                    "title": {"tag": "plain_text", "content": message.title},
                    "template": TEMPLATE[message.level],
                },
                "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": content}}],
            },
        }

    def _mentions(self) -> str:
        ids = [*self._config.mention_user_ids, *(["all"] if self._config.mention_all else [])]
        return "".join(f"\n<at id={i}></at>" for i in ids)

    def _signature(self) -> dict[str, str]:
        if self._config.secret is None:
            return {}
        timestamp = int(self._clock())
        secret = self._config.secret.get().get_secret_value()
        return {"timestamp": str(timestamp), "sign": sign(secret, timestamp)}

    def signing_secret(self) -> str | None:
        secret = self._config.secret
        return secret.get().get_secret_value() if secret is not None else None
