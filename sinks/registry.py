"""Sink `type` -> the class that implements it, imported only when a sink of that type is built.

Adding a sink is adding its module, its config model in `sinks.config`, and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Final, Protocol

import httpx

from sinks.base import Sink
from sinks.config import SinkBase

SINK_TYPES: Final[Mapping[str, str]] = {
    "dingtalk": "sinks.dingtalk:DingTalkSink",
    "feishu": "sinks.feishu:FeishuSink",
    "wecom": "sinks.wecom:WeComSink",
    "slack": "sinks.slack:SlackSink",
    "teams": "sinks.teams:TeamsSink",
    "webhook": "sinks.webhook:WebhookSink",
    "email": "sinks.email:EmailSink",
    "alertmanager": "sinks.alertmanager:AlertmanagerSink",
    "console": "sinks.console:ConsoleSink",
}


class SinkFactory(Protocol):
    def from_config(self, config: Any, client: httpx.AsyncClient) -> Sink: ...


def sink_class(type_: str) -> SinkFactory:
    """The class registered for `type_` (KeyError for an unknown type)."""
    module, _, name = SINK_TYPES[type_].partition(":")
    factory: SinkFactory = getattr(importlib.import_module(module), name)
    return factory


def build(config: SinkBase, client: httpx.AsyncClient) -> Sink:
    """A ready sink from a loaded (secrets resolved) config; HTTP sinks share `client`."""
    return sink_class(_type_of(config)).from_config(config, client)


def _type_of(config: SinkBase) -> str:
    type_ = getattr(config, "type", None)
    if not isinstance(type_, str):
        raise TypeError(f"{type(config).__name__} has no sink type")
    return type_
