"""WeCom (企业微信) group robot: a markdown message, or text when mentioning by mobile.

Docs: https://developer.work.weixin.qq.com/document/path/91770 (群机器人配置说明).
"""

from __future__ import annotations

from typing import Any, Final

from sinks.config import WeComConfig
from sinks.render import Message, fit
from sinks.robot import ErrorCodes, RobotSink

# errcode 45009 "api freq out of limit" (a robot takes 20 messages a minute); -1 system busy.
RETRYABLE_CODES: Final[dict[int, float | None]] = {45009: 60.0, -1: None}
# Documented content limits, UTF-8 bytes.
MAX_BYTES: Final = {"markdown": 4096, "text": 2048}


class WeComSink(RobotSink[WeComConfig]):
    errors = ErrorCodes("errcode", "errmsg", RETRYABLE_CODES)

    def payload(self, message: Message) -> dict[str, Any]:
        config = self._config
        if config.msgtype == "text":
            return {"msgtype": "text", "text": self._text(message)}
        mentions = "".join(f"\n<@{user}>" for user in config.mention_user_ids)
        budget = MAX_BYTES["markdown"] - len(mentions.encode())
        return {
            "msgtype": "markdown",
            "markdown": {"content": fit(message, lambda m: m.markdown(), budget) + mentions},
        }

    def _text(self, message: Message) -> dict[str, Any]:
        config = self._config
        everyone = ["@all"] if config.mention_all else []
        return {
            "content": fit(message, lambda m: m.text(), MAX_BYTES["text"]),
            "mentioned_list": [*config.mention_user_ids, *everyone],
            "mentioned_mobile_list": list(config.mention_mobiles),
        }
