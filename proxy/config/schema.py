"""The configuration's shape: every section a frozen dataclass, every key stated once.

A key's default, bounds and environment variable are its field's (``setting``), and
``sections`` reads and checks the TOML file by them, so adding a key is one line here.
Secrets come only from the environment and live in ``Secret`` (``secrets.py``), which never
shows its value.
Nothing of the project is imported here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from proxy.config.storage import display_url, storage_url_problem

SOURCES = ("web", "mobile", "unix")
MIN_SECRET_LENGTH = 32
ENV_PREFIX = "TRIGGER_PROXY_"

# A check of one value: given its dotted key and value, return the value to keep or raise
# ConfigError naming the key.
Check = Callable[[str, Any], Any]


def setting(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    env: str | None = None,
    check: Check | None = None,
) -> Any:
    """A key of the file: its default, its bounds (numbers), the TRIGGER_PROXY_* variable that
    overrides it, and any further check."""
    meta = {"low": low, "high": high, "env": env, "check": check}
    if isinstance(default, (list, dict, set)):
        raise TypeError("defaults are immutable")
    return field(default=default, metadata=meta)


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


class Rate(NamedTuple):
    """At most ``limit`` accepted requests in any interval of ``seconds``. A tuple: limit keys
    are made of rates on every request, and a tuple hashes in C."""

    limit: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.limit}/{self.seconds}s"


def rates_text(rates: Sequence[Rate]) -> str:
    """Rates as check-config shows them: ``60/60s;10/86400s``."""
    return ";".join(str(r) for r in rates)


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


# What a Nector read-only key is for (nector.readme.io, "Authentication"): a SERVER key needs no
# more headers; a STOREFRONT key needs a lead token (x-leadtoken) on customer-scoped calls.
KeyPurpose = Literal["server", "storefront"]


def _web_url(key: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, "must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise ConfigError(key, "must not carry credentials; the key comes from the environment")
    return url


def _networks(key: str, values: tuple[str, ...]) -> tuple[str, ...]:
    import ipaddress

    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ConfigError(key, f"{value!r} is not an IP or network") from exc
    return values


def _cookie_name(key: str, name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise ConfigError(key, "must be 1-64 letters, digits, '_', '.' or '-'")
    return name


def _origins(key: str, origins: tuple[str, ...]) -> tuple[str, ...]:
    for origin in origins:
        parts = urlsplit(origin)
        if origin != "*" and (
            parts.scheme not in ("http", "https") or not parts.hostname or parts.path
        ):
            raise ConfigError(key, f"{origin!r} is not an origin like https://shop.example")
    return origins


def _storage_url(key: str, url: str) -> str:
    problem = storage_url_problem(url)
    if problem:
        raise ConfigError(key, problem)
    return url


def _lowercase(key: str, value: str) -> str:
    return value.lower()


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    url: str = setting(
        "https://platform.nector.io/api/v2/merchant/activities", env="UPSTREAM_URL", check=_web_url
    )
    timeout_seconds: float = setting(10.0, low=0.05, env="UPSTREAM_TIMEOUT_SECONDS")
    key_purpose: KeyPurpose = setting("server")
    allow_insecure_http: bool = setting(False)  # plain http beyond loopback hosts
    max_response_bytes: int = setting(65536, low=1024)
    max_connections: int = setting(100, low=1)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = setting("127.0.0.1", env="HOST")
    port: int = setting(8080, low=0, high=65535, env="PORT")
    workers: int = setting(1, low=1, env="WORKERS")
    max_body_bytes: int = setting(16384, low=2)
    forwarded_allow_ips: tuple[str, ...] = setting((), env="FORWARDED_ALLOW_IPS", check=_networks)
    shutdown_grace_seconds: float = setting(10.0, low=0)
    metrics_port: int = setting(0, low=0, high=65535)  # an admin port for /metrics; 0: none
    metrics_host: str = setting("127.0.0.1", env="METRICS_HOST")
    metrics_on_main_port: bool = setting(False)  # /metrics on the public port too
    max_head_bytes: int = setting(16384, low=1024)  # request line and headers together
    head_timeout_seconds: float = setting(10.0, low=0.1)  # for the whole head to arrive
    body_timeout_seconds: float = setting(10.0, low=0.1)  # for the whole body, once the head is in
    max_concurrency: int = setting(1000, low=1)  # connections and requests; past it, 503
    max_connections_per_address: int = setting(100, low=0)  # an untrusted peer's; 0: no cap


@dataclass(frozen=True, slots=True)
class SessionSettings:
    max_age_seconds: int = setting(3600, low=1, high=86400, env="SESSION_MAX_AGE_SECONDS")
    cookie_name: str = setting("trigger_session", check=_cookie_name)


@dataclass(frozen=True, slots=True)
class CorsSettings:
    allow_origins: tuple[str, ...] = setting((), check=_origins)
    allow_credentials: bool = setting(True)


@dataclass(frozen=True, slots=True)
class LimitSettings:
    storage_url: str = setting("memory://", env="STORAGE_URL", check=_storage_url)
    per_customer: tuple[Rate, ...] = setting((Rate(1, 60), Rate(10, 86400)))
    upstream: Rate = setting(Rate(50, 60))
    idempotency_ttl_seconds: int = setting(86400, low=60)
    per_ip_invalid_session: Rate = setting(Rate(60, 60))
    memory_max_keys: int = setting(1_000_000, low=100)
    replica_acks: int = setting(-1, low=-1)  # hold a key's record (WAIT); -1: 1 with Sentinel
    replica_wait_seconds: float = setting(0.5, low=0.01, high=10)

    def __repr__(self) -> str:
        # The URL may carry Redis's password: shown masked, used as given.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["storage_url"] = display_url(self.storage_url)
        return f"LimitSettings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


# Nector's reads a storefront widget makes (docs/api.md, "Reads"), as ``[reads] routes`` names them.
_READ_NAMES = "leads wallettransactions coupons activities triggers aggreegateddetails"
READ_ROUTES = tuple(f"{_READ_NAMES} aggreegatedoffers offers entities".split())
WORKSPACE_READS = READ_ROUTES[4:]  # the same for everyone: all a visitor with no session may read


def _read_routes(key: str, routes: tuple[str, ...], named: tuple[str, ...] = READ_ROUTES) -> Any:
    for route in routes:
        if route not in named:
            raise ConfigError(key, f"{route!r} is not one of {', '.join(named)}")
    return tuple(dict.fromkeys(routes))


@dataclass(frozen=True, slots=True)
class ReadSettings:
    routes: tuple[str, ...] = setting((), check=_read_routes)  # none by default
    cache_seconds: int = setting(60, low=1, high=3600)  # workspace-wide answers are fresh
    stale_seconds: int = setting(600, low=0, high=86400)  # then may stand in for a failed call
    budget: Rate = setting(Rate(20, 60))  # the slice of limits.upstream reads may spend
    # Reads that reach Nector: a page view's, and half the default slice at most (finding 15).
    per_customer: tuple[Rate, ...] = setting((Rate(10, 60),))
    max_cached: int = setting(1000, low=1)  # workspace-wide answers held per process
    public_routes: tuple[str, ...] = setting((), check=partial(_read_routes, named=WORKSPACE_READS))
    per_address: tuple[Rate, ...] = setting((Rate(30, 60),))  # a visitor's cache misses
    customer_cache_seconds: int = setting(30, low=0, high=3600)  # a customer's own; 0: off
    # Customers' answers one process keeps on memory://, inside the memory benchmark's bound.
    max_kept_megabytes: int = setting(4, low=1, high=4096)


def _shop(key: str, shop: str) -> str:
    shop = shop.lower()
    if shop and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,99}\.myshopify\.com", shop):
        raise ConfigError(key, "must be the shop's permanent domain, <handle>.myshopify.com")
    return shop


def _customer_template(key: str, template: str) -> str:
    fixed = template.replace("{id}", "", 1)
    if fixed == template or "{" in fixed or "}" in fixed or " " in fixed or not fixed.isprintable():
        raise ConfigError(key, 'must hold "{id}" once, e.g. "shopify-{id}", and no spaces')
    if len(fixed) > 100:
        raise ConfigError(key, "must leave room for the id: at most 100 other characters")
    return template


@dataclass(frozen=True, slots=True)
class ShopifySettings:  # docs/shopify.md; off while shop is ""
    shop: str = setting("", check=_shop)  # the shop's permanent domain, <handle>.myshopify.com
    customer_id: str = setting("shopify-{id}", check=_customer_template)  # {id}: Shopify's id
    app_proxy: bool = setting(False)  # accept Shopify App Proxy requests under /shopify/
    # Longer than the default sessions.max_age_seconds: a session ending re-trades its digest.
    digest_max_age_seconds: int = setting(7200, low=1, high=86400)


@dataclass(frozen=True, slots=True)
class ChallengeSettings:  # docs/campaigns.md; for triggers with challenge = "<provider>"
    site_key: str = setting("")  # the provider's public site key, shown to widgets
    timeout_seconds: float = setting(3.0, low=0.1, high=30)  # then 503: fail closed
    turnstile_verify_url: str = setting(
        "https://challenges.cloudflare.com/turnstile/v0/siteverify", check=_web_url
    )
    hcaptcha_verify_url: str = setting("https://api.hcaptcha.com/siteverify", check=_web_url)
    recaptcha_verify_url: str = setting(
        "https://www.google.com/recaptcha/api/siteverify", check=_web_url
    )


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"] = setting(
        "info", env="LOG_LEVEL", check=_lowercase
    )
    format: Literal["json", "plain"] = setting("json", env="LOG_FORMAT")


SECTIONS: dict[str, type] = {
    "upstream": UpstreamSettings,
    "server": ServerSettings,
    "sessions": SessionSettings,
    "cors": CorsSettings,
    "limits": LimitSettings,
    "reads": ReadSettings,
    "shopify": ShopifySettings,
    "challenge": ChallengeSettings,
    "logging": LogSettings,
}
