"""Typed reading of TOML tables that names the dotted key of every mistake, the environment's
overrides of scalar keys, and the collection of mistakes from independent parts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from proxy.config.schema import ENV_PREFIX, ConfigError, ConfigErrors, Rate, parse_rates
from proxy.config.variables import nearest

_T = TypeVar("_T")


class Problems:
    """Collects the mistakes of independent parts of the configuration."""

    def __init__(self) -> None:
        self.found: list[ConfigError] = []

    def read(self, read: Callable[[], _T], fallback: _T) -> _T:
        try:
            return read()
        except ConfigError as exc:
            self.found.extend(exc.problems)
            return fallback

    def raise_any(self) -> None:
        if len(self.found) == 1:
            raise self.found[0]
        if self.found:
            raise ConfigErrors(self.found)


class Reader:
    """Typed access to one TOML table that remembers the dotted key for error messages."""

    def __init__(self, data: Mapping[str, Any], prefix: str) -> None:
        self.data = data
        self.prefix = prefix
        # Keys whose value came from the environment, and the variable it came from: a
        # mistake in such a value names the variable, which is where the operator set it.
        self.variables: dict[str, str] = {}

    def key(self, name: str) -> str:
        return self.variables.get(name) or f"{self.prefix}{name}"

    def only(self, *names: str) -> None:
        for name in self.data:
            if name not in names:
                raise ConfigError(self.key(name), "unknown key" + nearest(name, names))

    def table(self, name: str) -> Reader:
        value = self.data.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(self.key(name), "must be a table")
        return Reader(value, f"{self.key(name)}.")

    def tables(self, name: str) -> list[Reader]:
        value = self.data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise ConfigError(self.key(name), "must be an array of tables ([[...]])")
        return [Reader(v, f"{self.key(name)}[{i}].") for i, v in enumerate(value)]

    def get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = self.data.get(name, default)
        if value is default:
            return value
        # bool is an int in Python; TOML keeps them apart, and so do we.
        if isinstance(value, bool) and bool not in _as_tuple(kind):
            raise ConfigError(self.key(name), f"must be {_kind_name(kind)}")
        if not isinstance(value, kind):
            raise ConfigError(self.key(name), f"must be {_kind_name(kind)}")
        return value

    def string(self, name: str, default: Any = None) -> Any:
        return self.get(name, str, default)

    def number(self, name: str, default: float, minimum: float | None = None) -> float:
        value = float(self.get(name, (int, float), default))
        if minimum is not None and value < minimum:
            raise ConfigError(self.key(name), f"must be at least {minimum:g}")
        return value

    def integer(self, name: str, default: int, minimum: int | None = None) -> int:
        value: int = self.get(name, int, default)
        if minimum is not None and value < minimum:
            raise ConfigError(self.key(name), f"must be at least {minimum}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value: bool = self.get(name, bool, default)
        return value

    def strings(self, name: str, default: Sequence[str]) -> tuple[str, ...]:
        value = self.get(name, list, default)
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(self.key(name), "must be a list of strings")
        return tuple(value)

    def rates(self, name: str, default: Any) -> Any:
        value = self.string(name, None)
        if value is None:
            return default
        try:
            return parse_rates(value)
        except ValueError as exc:
            raise ConfigError(self.key(name), str(exc)) from exc

    def rate(self, name: str, default: Rate) -> Rate:
        rates = self.rates(name, None)
        if rates is None:
            return default
        if len(rates) != 1:
            raise ConfigError(self.key(name), "must be a single rate such as '50/minute'")
        rate: Rate = rates[0]
        return rate


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    names.update({list: "a list", dict: "a table"})
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))


class EnvOverrides:
    """The scalar settings the environment may override; it wins over the file."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def apply(self, reader: Reader, name: str, env_name: str, kind: type) -> None:
        raw = self.environ.get(ENV_PREFIX + env_name)
        if raw is None or raw == "":
            return
        value: Any = raw
        if kind is list:  # a list of strings: comma-separated, as uvicorn's own variables
            value = [part.strip() for part in raw.split(",") if part.strip()]
        elif kind in (int, float):
            try:
                value = kind(raw)
            except ValueError as exc:
                raise ConfigError(ENV_PREFIX + env_name, f"must be {_kind_name(kind)}") from exc
        reader.data = {**reader.data, name: value}
        reader.variables[name] = ENV_PREFIX + env_name
