"""Settings: built once from a TOML file and an environment mapping, validated completely.

``Settings.load(path, environ)`` is the only way in. Every mistake raises ``ConfigError``
naming the key, so the CLI can print one line and exit non-zero. Secrets come only from the
environment and live in ``Secret``, which never shows its value in ``repr`` or ``str``.

This module imports nothing of the project.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import tomllib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SOURCES = ("web", "mobile", "unix")
MIN_SECRET_LENGTH = 32
ENV_PREFIX = "TRIGGER_PROXY_"

Purpose = Literal["serve", "mint"]
_T = TypeVar("_T")


class ConfigError(ValueError):
    """A configuration mistake; ``str()`` is one line that names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key

    @property
    def problems(self) -> list[ConfigError]:
        """Every mistake found: this one, or each of a ``ConfigErrors``."""
        return [self]


class ConfigErrors(ConfigError):
    """Several mistakes found in one reading, so an operator fixes them all in one go;
    ``str()`` is one line each, and ``key`` is the first one's."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        ValueError.__init__(self, "\n".join(str(e) for e in errors))
        self.key = errors[0].key
        self._errors = list(errors)

    @property
    def problems(self) -> list[ConfigError]:
        return list(self._errors)


class _Problems:
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


class Secret:
    """A value that must never be printed: ``repr`` and ``str`` mask it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Rate(NamedTuple):
    """At most ``limit`` accepted requests in any interval of ``seconds``. A tuple: limit keys
    are made of rates on every request, and a tuple hashes in C."""

    limit: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.limit}/{self.seconds}s"


_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*(second|minute|hour|day)s?\s*$")


def parse_rates(text: str) -> tuple[Rate, ...]:
    """Parse ``"1/minute;10/day"`` (also ``"5/10 minutes"``, ``"3 per day"``).

    Raises ``ValueError`` with a readable reason.
    """
    rates = []
    for part in text.split(";"):
        match = _RATE.match(part)
        if not match:
            raise ValueError(f"{part.strip()!r} is not a rate like '3/minute' or '10/day'")
        limit = int(match.group(1))
        seconds = int(match.group(2) or 1) * _UNITS[match.group(3)]
        if limit < 1 or seconds < 1:
            raise ValueError(f"{part.strip()!r} must allow at least 1 request in at least 1 s")
        rates.append(Rate(limit, seconds))
    if len({r.seconds for r in rates}) != len(rates):
        raise ValueError(f"{text!r} names the same window length twice")
    return tuple(sorted(rates, key=lambda r: r.seconds))


@dataclass(frozen=True, slots=True)
class WalletOverride:
    title: str
    operation: Literal["cr", "dr"]
    coin_min: int
    coin_max: int
    description: str | None = None


@dataclass(frozen=True, slots=True)
class OfferOverride:
    offer_id: str


@dataclass(frozen=True, slots=True)
class TriggerSettings:
    id: str
    name: str | None = None
    sources: frozenset[str] = frozenset(SOURCES)
    per_customer: tuple[Rate, ...] | None = None
    allow_debit: bool = False
    wallet: WalletOverride | None = None
    offer: OfferOverride | None = None


# What a Nector read-only key is for (nector.readme.io, "Authentication"): a SERVER key needs no
# more headers; a STOREFRONT key needs a lead token (x-leadtoken) on customer-scoped calls.
KeyPurpose = Literal["server", "storefront"]


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    url: str = "https://platform.nector.io/api/v2/merchant/activities"
    timeout_seconds: float = 10.0
    key_purpose: KeyPurpose = "server"
    allow_insecure_http: bool = False
    max_response_bytes: int = 65536
    max_connections: int = 100


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 16384
    forwarded_allow_ips: tuple[str, ...] = ()
    shutdown_grace_seconds: float = 10.0
    metrics_port: int = 0  # 0: /metrics on the main port; otherwise only on this admin port
    metrics_host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class SessionSettings:
    max_age_seconds: int = 3600
    cookie_name: str = "trigger_session"


@dataclass(frozen=True, slots=True)
class CorsSettings:
    allow_origins: tuple[str, ...] = ()
    allow_credentials: bool = True


@dataclass(frozen=True, slots=True)
class LimitSettings:
    storage_url: str = "memory://"
    per_customer: tuple[Rate, ...] = (Rate(1, 60), Rate(10, 86400))
    upstream: Rate = Rate(50, 60)
    idempotency_ttl_seconds: int = 86400
    per_ip_invalid_session: Rate = Rate(60, 60)
    memory_max_keys: int = 1_000_000


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "plain"] = "json"


@dataclass(frozen=True, slots=True)
class Secrets:
    api_key: Secret | None
    workspace_id: Secret | None
    session_secrets: tuple[Secret, ...]
    mint_key: Secret | None
    lead_token_secret: Secret | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    secrets: Secrets
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    sessions: SessionSettings = field(default_factory=SessionSettings)
    cors: CorsSettings = field(default_factory=CorsSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    triggers: tuple[TriggerSettings, ...] = ()
    logging: LogSettings = field(default_factory=LogSettings)

    @classmethod
    def load(
        cls, path: str | Path, environ: Mapping[str, str], *, purpose: Purpose = "serve"
    ) -> Settings:
        """Read the TOML file at ``path``, apply ``environ`` overrides and validate.

        ``purpose="mint"`` needs only the session secrets; ``"serve"`` needs all of them.
        """
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from exc
        return cls.from_mapping(data, environ, purpose=purpose)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], environ: Mapping[str, str], *, purpose: Purpose = "serve"
    ) -> Settings:
        reader = _Reader(data, "")
        env = _EnvOverrides(environ)
        # Each part is read on its own, so one run names every mistake (ConfigErrors).
        problems = _Problems()
        problems.read(
            lambda: reader.only(
                "upstream", "server", "sessions", "cors", "limits", "triggers", "logging"
            ),
            None,
        )
        secrets = problems.read(lambda: _read_secrets(environ, purpose), None)
        settings = cls(
            secrets=secrets or Secrets(None, None, (), None),
            upstream=problems.read(
                lambda: _read_upstream(reader.table("upstream"), env), UpstreamSettings()
            ),
            server=problems.read(
                lambda: _read_server(reader.table("server"), env), ServerSettings()
            ),
            sessions=problems.read(
                lambda: _read_sessions(reader.table("sessions"), env), SessionSettings()
            ),
            cors=problems.read(lambda: _read_cors(reader.table("cors")), CorsSettings()),
            limits=problems.read(
                lambda: _read_limits(reader.table("limits"), env), LimitSettings()
            ),
            triggers=problems.read(lambda: _read_triggers(reader.tables("triggers")), ()),
            logging=problems.read(
                lambda: _read_logging(reader.table("logging"), env), LogSettings()
            ),
        )
        problems.raise_any()
        _lint(settings)
        return settings


# --- reading -------------------------------------------------------------------------------


class _Reader:
    """Typed access to one TOML table that remembers the dotted key for error messages."""

    def __init__(self, data: Mapping[str, Any], prefix: str) -> None:
        self.data = data
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def only(self, *names: str) -> None:
        for name in self.data:
            if name not in names:
                raise ConfigError(self.key(name), "unknown key")

    def table(self, name: str) -> _Reader:
        value = self.data.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(self.key(name), "must be a table")
        return _Reader(value, f"{self.key(name)}.")

    def tables(self, name: str) -> list[_Reader]:
        value = self.data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise ConfigError(self.key(name), "must be an array of tables ([[...]])")
        return [_Reader(v, f"{self.key(name)}[{i}].") for i, v in enumerate(value)]

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

    def number(self, name: str, default: float, minimum: float) -> float:
        value = float(self.get(name, (int, float), default))
        if value < minimum:
            raise ConfigError(self.key(name), f"must be at least {minimum:g}")
        return value

    def integer(self, name: str, default: int, minimum: int) -> int:
        value: int = self.get(name, int, default)
        if value < minimum:
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


class _EnvOverrides:
    """The scalar settings the environment may override; it wins over the file."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def apply(self, reader: _Reader, name: str, env_name: str, kind: type) -> None:
        raw = self.environ.get(ENV_PREFIX + env_name)
        if raw is None or raw == "":
            return
        value: Any = raw
        if kind in (int, float):
            try:
                value = kind(raw)
            except ValueError as exc:
                raise ConfigError(ENV_PREFIX + env_name, f"must be {_kind_name(kind)}") from exc
        reader.data = {**reader.data, name: value}


def _read_secrets(environ: Mapping[str, str], purpose: Purpose) -> Secrets:
    def given(name: str, required: bool) -> str | None:
        value = environ.get(ENV_PREFIX + name, "")
        if not value and required:
            raise ConfigError(ENV_PREFIX + name, "is required and not set")
        return value or None

    def issued(name: str, required: bool) -> Secret | None:
        # Nector's own formats (workspace ids like "shopify-<shop>", keys "ak_" + hex) are
        # taken as issued: only what cannot be a header value is refused.
        value = given(name, required)
        if value is None:
            return None
        if not all("!" <= c <= "~" for c in value):
            raise ConfigError(
                ENV_PREFIX + name, "must be printable ASCII without spaces, as Nector issues it"
            )
        return Secret(value)

    def made(name: str, value: str) -> Secret:
        # The merchant makes these: too short a secret can be guessed offline from one token.
        if len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(name, f"is shorter than {MIN_SECRET_LENGTH} characters")
        return Secret(value)

    def session_secrets() -> tuple[Secret, ...]:
        raw = given("SESSION_SECRETS", True)
        assert raw is not None
        parts = [part.strip() for part in raw.split(",")]
        return tuple(made(f"{ENV_PREFIX}SESSION_SECRETS[{i}]", p) for i, p in enumerate(parts))

    def mint_key() -> Secret | None:
        value = given("MINT_KEY", False)
        return None if value is None else made(ENV_PREFIX + "MINT_KEY", value)

    serving = purpose == "serve"
    problems = _Problems()
    secrets = Secrets(
        api_key=problems.read(lambda: issued("API_KEY", serving), None),
        workspace_id=problems.read(lambda: issued("WORKSPACE_ID", serving), None),
        session_secrets=problems.read(session_secrets, ()),
        mint_key=problems.read(mint_key, None),
        lead_token_secret=problems.read(lambda: issued("LEAD_TOKEN_SECRET", False), None),
    )
    problems.raise_any()
    return secrets


def _read_upstream(r: _Reader, env: _EnvOverrides) -> UpstreamSettings:
    r.only(
        "url", "timeout_seconds", "key_purpose", "allow_insecure_http", "max_response_bytes",
        "max_connections",
    )  # fmt: skip
    env.apply(r, "url", "UPSTREAM_URL", str)
    env.apply(r, "timeout_seconds", "UPSTREAM_TIMEOUT_SECONDS", float)
    d = UpstreamSettings()
    url = r.string("url", d.url)
    allow_insecure = r.boolean("allow_insecure_http", d.allow_insecure_http)
    _check_upstream_url(r.key("url"), url, allow_insecure)
    key_purpose = r.string("key_purpose", d.key_purpose)
    if key_purpose not in ("server", "storefront"):
        raise ConfigError(r.key("key_purpose"), 'must be "server" or "storefront"')
    return UpstreamSettings(
        url=url,
        key_purpose=key_purpose,
        timeout_seconds=r.number("timeout_seconds", d.timeout_seconds, 0.05),
        allow_insecure_http=allow_insecure,
        max_response_bytes=r.integer("max_response_bytes", d.max_response_bytes, 1024),
        max_connections=r.integer("max_connections", d.max_connections, 1),
    )


def display_url(url: str) -> str:
    """``url`` as it may be shown: a password, in the userinfo or as a ``password`` query
    parameter (both forms redis-py accepts), replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None and "password" not in parts.query.lower():
        return url
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rpartition("@")[2]
        netloc = f"{parts.username or ''}:***@{host}"
    query = urlencode(
        [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)],
        safe="*",
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _check_upstream_url(key: str, url: str, allow_insecure: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, "must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise ConfigError(key, "must not carry credentials; the key comes from the environment")
    if parts.scheme == "http" and not allow_insecure and not _is_loopback(parts.hostname):
        raise ConfigError(
            key, "plain http is allowed only for loopback hosts unless allow_insecure_http = true"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_server(r: _Reader, env: _EnvOverrides) -> ServerSettings:
    r.only(
        "host", "port", "workers", "max_body_bytes", "forwarded_allow_ips",
        "shutdown_grace_seconds", "metrics_port", "metrics_host",
    )  # fmt: skip
    env.apply(r, "host", "HOST", str)
    env.apply(r, "port", "PORT", int)
    env.apply(r, "workers", "WORKERS", int)
    d = ServerSettings()
    ips = r.strings("forwarded_allow_ips", d.forwarded_allow_ips)
    for ip in ips:
        try:
            ipaddress.ip_network(ip, strict=False)
        except ValueError as exc:
            raise ConfigError(
                r.key("forwarded_allow_ips"), f"{ip!r} is not an IP or network"
            ) from exc
    port = r.integer("port", d.port, 0)
    metrics_port = r.integer("metrics_port", d.metrics_port, 0)
    for key, value in (("port", port), ("metrics_port", metrics_port)):
        if value > 65535:
            raise ConfigError(r.key(key), "must be at most 65535")
    return ServerSettings(
        host=r.string("host", d.host),
        port=port,
        workers=r.integer("workers", d.workers, 1),
        max_body_bytes=r.integer("max_body_bytes", d.max_body_bytes, 2),
        forwarded_allow_ips=ips,
        shutdown_grace_seconds=r.number("shutdown_grace_seconds", d.shutdown_grace_seconds, 0),
        metrics_port=metrics_port,
        metrics_host=r.string("metrics_host", d.metrics_host),
    )


def _read_sessions(r: _Reader, env: _EnvOverrides) -> SessionSettings:
    r.only("max_age_seconds", "cookie_name")
    env.apply(r, "max_age_seconds", "SESSION_MAX_AGE_SECONDS", int)
    d = SessionSettings()
    max_age = r.integer("max_age_seconds", d.max_age_seconds, 1)
    if max_age > 86400:
        raise ConfigError(r.key("max_age_seconds"), "must be at most 86400 (one day)")
    cookie = r.string("cookie_name", d.cookie_name)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", cookie):
        raise ConfigError(r.key("cookie_name"), "must be 1-64 letters, digits, '_', '.' or '-'")
    return SessionSettings(max_age_seconds=max_age, cookie_name=cookie)


def _read_cors(r: _Reader) -> CorsSettings:
    r.only("allow_origins", "allow_credentials")
    d = CorsSettings()
    origins = r.strings("allow_origins", d.allow_origins)
    credentials = r.boolean("allow_credentials", d.allow_credentials)
    for origin in origins:
        if origin == "*":
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise ConfigError(
                r.key("allow_origins"), f"{origin!r} is not an origin like https://shop.example"
            )
    if "*" in origins and credentials:
        raise ConfigError(
            r.key("allow_origins"),
            '"*" cannot be combined with allow_credentials = true (any site could use the cookie)',
        )
    return CorsSettings(allow_origins=origins, allow_credentials=credentials)


def _read_limits(r: _Reader, env: _EnvOverrides) -> LimitSettings:
    r.only(
        "storage_url", "per_customer", "upstream", "idempotency_ttl_seconds",
        "per_ip_invalid_session", "memory_max_keys",
    )  # fmt: skip
    env.apply(r, "storage_url", "STORAGE_URL", str)
    d = LimitSettings()
    storage = r.string("storage_url", d.storage_url)
    scheme = urlsplit(storage).scheme
    if scheme not in ("memory", "redis", "rediss", "unix"):
        raise ConfigError(r.key("storage_url"), "must be memory:// or redis://host:port/db")
    return LimitSettings(
        storage_url=storage,
        per_customer=r.rates("per_customer", d.per_customer),
        upstream=r.rate("upstream", d.upstream),
        idempotency_ttl_seconds=r.integer("idempotency_ttl_seconds", d.idempotency_ttl_seconds, 60),
        per_ip_invalid_session=r.rate("per_ip_invalid_session", d.per_ip_invalid_session),
        memory_max_keys=r.integer("memory_max_keys", d.memory_max_keys, 100),
    )


def _check_uuid(key: str, value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except ValueError as exc:
        raise ConfigError(key, f"{value!r} is not a UUID") from exc
    if str(parsed) != value.lower():
        raise ConfigError(key, f"{value!r} is not a UUID in canonical form")
    return value.lower()


def _read_triggers(readers: list[_Reader]) -> tuple[TriggerSettings, ...]:
    seen: dict[str, str] = {}
    problems = _Problems()
    read: list[TriggerSettings | None] = [
        problems.read(functools.partial(_read_trigger, r, seen), None) for r in readers
    ]
    problems.raise_any()
    return tuple(t for t in read if t is not None)


def _read_trigger(r: _Reader, seen: dict[str, str]) -> TriggerSettings:
    r.only("id", "name", "sources", "per_customer", "allow_debit", "override")
    trigger_id = r.string("id")
    if trigger_id is None:
        raise ConfigError(r.key("id"), "is required")
    trigger_id = _check_uuid(r.key("id"), trigger_id)
    name = r.string("name")
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise ConfigError(r.key("name"), "must be 1-64 letters, digits, '_', '.' or '-'")
    for ref in (trigger_id, name):
        if ref is None:
            continue
        if ref in seen:
            raise ConfigError(r.key("id" if ref == trigger_id else "name"), "is used twice")
        seen[ref] = ref
    sources = r.strings("sources", SOURCES)
    for s in sources:
        if s not in SOURCES:
            raise ConfigError(r.key("sources"), f"{s!r} is not one of {', '.join(SOURCES)}")
    if not sources:
        raise ConfigError(r.key("sources"), "must name at least one source")
    allow_debit = r.boolean("allow_debit", False)
    wallet, offer = _read_override(r.table("override"), allow_debit)
    return TriggerSettings(
        id=trigger_id,
        name=name,
        sources=frozenset(sources),
        per_customer=r.rates("per_customer", None),
        allow_debit=allow_debit,
        wallet=wallet,
        offer=offer,
    )


def _read_override(
    r: _Reader, allow_debit: bool
) -> tuple[WalletOverride | None, OfferOverride | None]:
    r.only("wallet", "offer")
    wallet = offer = None
    if "wallet" in r.data:
        w = r.table("wallet")
        w.only("title", "description", "operation", "coin_range")
        title = w.string("title")
        if not title:
            raise ConfigError(w.key("title"), "is required")
        operation = w.string("operation", "cr")
        if operation not in ("cr", "dr"):
            raise ConfigError(w.key("operation"), 'must be "cr" or "dr"')
        if operation == "dr" and not allow_debit:
            raise ConfigError(
                w.key("operation"), '"dr" takes coins from customers; set allow_debit = true'
            )
        c = w.table("coin_range")
        c.only("min", "max")
        if "min" not in c.data or "max" not in c.data:
            raise ConfigError(w.key("coin_range"), "needs min and max")
        lo, hi = c.integer("min", 0, 0), c.integer("max", 0, 0)
        if lo > hi:
            raise ConfigError(w.key("coin_range"), "min must not exceed max")
        wallet = WalletOverride(title, operation, lo, hi, w.string("description"))
    if "offer" in r.data:
        o = r.table("offer")
        o.only("offer_id")
        offer_id = o.string("offer_id")
        if offer_id is None:
            raise ConfigError(o.key("offer_id"), "is required")
        offer = OfferOverride(_check_uuid(o.key("offer_id"), offer_id))
    return wallet, offer


def _read_logging(r: _Reader, env: _EnvOverrides) -> LogSettings:
    r.only("level", "format")
    env.apply(r, "level", "LOG_LEVEL", str)
    env.apply(r, "format", "LOG_FORMAT", str)
    level = r.string("level", "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(r.key("level"), "must be debug, info, warning or error")
    fmt = r.string("format", "json")
    if fmt not in ("json", "plain"):
        raise ConfigError(r.key("format"), 'must be "json" or "plain"')
    return LogSettings(level=level, format=fmt)


def _lint(settings: Settings) -> None:
    """Refuse configurations that are valid one key at a time but unsafe together."""
    if not settings.triggers:
        raise ConfigError("triggers", "the allow-list is empty: add at least one [[triggers]]")
    if settings.limits.storage_url.startswith("memory:") and settings.server.workers > 1:
        raise ConfigError(
            "limits.storage_url",
            "memory:// is per process; with several workers use redis://",
        )
    secrets = settings.secrets
    serving = secrets.api_key is not None
    if serving and settings.upstream.key_purpose == "storefront" and not secrets.lead_token_secret:
        raise ConfigError(
            f"{ENV_PREFIX}LEAD_TOKEN_SECRET",
            'is required with upstream.key_purpose = "storefront" (the key\'s signing secret)',
        )
    if secrets.mint_key is not None and secrets.mint_key in secrets.session_secrets:
        raise ConfigError(f"{ENV_PREFIX}MINT_KEY", "must differ from every session secret")
