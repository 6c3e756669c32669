"""What every chat robot sink shares: one webhook URL, render, POST, judge the answer.

A robot module only says what differs: its payload, and how its platform reports an error
(an HTTP status, or a code inside a 200 body). Signing robots override `url` or `body`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, Protocol, Self, TypeVar

import httpx
from pydantic import SecretStr

from rules.alerts import Alert
from sinks import http, redact
from sinks.links import Links
from sinks.render import Message, render


class _Secret(Protocol):
    def get(self) -> SecretStr: ...


class RobotConfig(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def url(self) -> _Secret: ...
    @property
    def language(self) -> Literal["zh", "en"]: ...


C = TypeVar("C", bound=RobotConfig)


@dataclass(frozen=True)
class ErrorCodes:
    """Where a robot puts its error code and message in a 200 body, and which codes are worth
    a retry (with the wait, when the platform documents one)."""

    code_key: str
    message_key: str
    retryable: Mapping[int, float | None]


class RobotSink(Generic[C]):
    errors: ClassVar[ErrorCodes | None] = None  # None: the HTTP status alone decides
    # Each alert's Grafana and silence links (sinks.notifier sets them from the sinks file).
    links: Links | None = None

    def __init__(
        self, config: C, client: httpx.AsyncClient, clock: Callable[[], float] = time.time
    ) -> None:
        self.name = config.name
        self._config = config
        self._client = client
        self._clock = clock
        redact.install()

    @classmethod
    def from_config(cls, config: C, client: httpx.AsyncClient) -> Self:
        return cls(config, client)

    async def send(self, alerts: Sequence[Alert]) -> None:
        body = self.body(render(alerts, self._config.language, self.links))
        response = await http.post(self._client, self.name, self.url(), http.json_bytes(body))
        self.check(response)

    def url(self) -> str:
        return self._config.url.get().get_secret_value()

    def body(self, message: Message) -> dict[str, Any]:
        return self.payload(message)

    def payload(self, message: Message) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, response: httpx.Response) -> None:
        """Judge the answer: by HTTP status alone, or by the robot's code in the JSON body."""
        if self.errors is None:
            http.raise_for_status(self.name, response)
            return
        http.raise_for_code(
            self.name,
            response,
            code_key=self.errors.code_key,
            message_key=self.errors.message_key,
            retryable_codes=self.errors.retryable,
            secrets=self.secrets(),
        )

    def secrets(self) -> list[str]:
        """What must never show in an error: the URL's tokens, and the signing secret."""
        url = http.url_secrets(self._config.url.get().get_secret_value())
        signing = self.signing_secret()
        return [*url, *([signing] if signing is not None else [])]

    def signing_secret(self) -> str | None:
        return None
