"""What kpiwatch's config files share (the sinks file, the connect file): secrets named by where
they live, never written in the file, and durations as people write them (`30s`, `5m`, `2h`).

Secrets: a field names `{env: NAME}` or `{file: PATH}` (a Kubernetes or Docker secret); the
loaders resolve every one at load time (`unresolved`) and report what is missing by its place
in the file, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    model_validator,
)


class SecretSource(BaseModel):
    """Where a secret lives: an environment variable or a file (e.g. a Kubernetes secret)."""

    model_config = ConfigDict(extra="forbid")

    env: str | None = Field(default=None, min_length=1)
    file: Path | None = None
    _value: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, value: Any) -> Any:
        if isinstance(value, str | int):
            # The file gets committed and shared; the secret must not be in it.
            raise ValueError(
                "a secret is not written in the file: name where it lives, "
                "{env: VARIABLE} or {file: /path/to/file}"
            )
        return value

    @model_validator(mode="after")
    def _one_place(self) -> SecretSource:
        if (self.env is None) == (self.file is None) and self._value is None:
            raise ValueError("give exactly one of env: or file:")
        return self

    @classmethod
    def of(cls, value: str) -> SecretSource:
        """A secret already in hand (tests, embedding): no file or variable behind it."""
        source = cls.model_construct(env=None, file=None)
        source._value = SecretStr(value)
        return source

    @property
    def resolved(self) -> bool:
        return self._value is not None

    def set(self, value: str) -> None:
        self._value = SecretStr(value)

    def get(self) -> SecretStr:
        if self._value is None:
            raise RuntimeError("secret used before sinks.load resolved it")
        return self._value

    def resolve(self, environ: Mapping[str, str]) -> str | None:
        """Read the secret from where it lives and keep it; or say what is missing (never the
        value itself)."""
        if self._value is not None:
            return None
        if self.env is not None:
            value = environ.get(self.env, "")
            if not value:
                return f"environment variable {self.env} is not set or empty"
        elif self.file is not None:
            try:
                value = self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                return f"cannot read secret file {self.file}: {exc.strerror}"
            if not value:
                return f"secret file {self.file} is empty"
        self.set(value)
        return None


def unresolved(
    model: Any, environ: Mapping[str, str], where: tuple[int | str, ...] = ()
) -> Iterator[tuple[tuple[int | str, ...], str]]:
    """Read every SecretSource in a validated model (nested models, lists, dicts too); yield
    (its place in the file, what is missing) for each one that could not be read."""
    for place, secret in secrets_in(model, where):
        missing = secret.resolve(environ)
        if missing is not None:
            yield place, missing


def secrets_in(
    model: Any, where: tuple[int | str, ...] = ()
) -> Iterator[tuple[tuple[int | str, ...], SecretSource]]:
    """Every SecretSource in a validated model, with its place in the file."""
    if isinstance(model, SecretSource):
        yield where, model
    elif isinstance(model, BaseModel):
        for name in type(model).model_fields:
            yield from secrets_in(getattr(model, name), (*where, name))
    elif isinstance(model, list | tuple):
        for index, item in enumerate(model):
            yield from secrets_in(item, (*where, index))
    elif isinstance(model, dict):
        for key, item in model.items():
            yield from secrets_in(item, (*where, str(key)))


UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _seconds(value: Any) -> Any:
    """`30s`, `5m`, `2h`, `1d` or a plain number of seconds."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration (e.g. 30s, 5m, 2h, 1d)")
        return float(match[1]) * UNITS[match[2]]
    return value


# A year: a longer wait, interval or window is a typo (and would hold alerts back for good).
MAX_SECONDS: Final = 366 * 86400.0
Seconds = Annotated[float, BeforeValidator(_seconds), Field(ge=0, le=MAX_SECONDS)]
