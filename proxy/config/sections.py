"""Reading the configuration: the TOML file and the environment, checked against the schema.

Every section is read the same way, from its dataclass's fields (``schema.setting``): the
type tells how to read a key, the field's bounds and check what to refuse, its variable what
the environment overrides. What spans keys (plain http to a remote host, "*" origins with
the cookie) and the shapes the schema cannot state (triggers, their overrides, the secrets)
are checked here by hand. Independent parts are read on their own, so one run names every
mistake (``ConfigErrors``).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from proxy.config.campaign import CAMPAIGN_KEYS, read_campaign
from proxy.config.reader import EnvOverrides, Problems, Reader
from proxy.config.redemption import RedemptionSettings
from proxy.config.schema import (
    SECTIONS,
    SOURCES,
    ChallengeSettings,
    ConfigError,
    CorsSettings,
    Rate,
    UpstreamSettings,
)
from proxy.config.secrets import Secrets, read_secrets
from proxy.config.triggers import OfferOverride, TriggerSettings, WalletOverride
from proxy.config.variables import AskedEnviron, overrides

Purpose = Literal["serve", "mint"]
_SECTIONS: dict[str, type] = {**SECTIONS, "redemption": RedemptionSettings}
_T = TypeVar("_T")


def read_sections(
    data: Mapping[str, Any], environ: Mapping[str, str], purpose: Purpose
) -> tuple[Secrets, dict[str, Any], tuple[TriggerSettings, ...]]:
    """The secrets, the sections by name and the triggers, or every mistake found."""
    reader = Reader(data, "")
    # A section that stops at its first mistake has not asked for its overrides yet.
    environ = asked = AskedEnviron(environ, known=overrides(_SECTIONS))
    env = EnvOverrides(environ)
    problems = Problems()
    # Minting needs the sessions and their secrets only: a mistake elsewhere is serve's to
    # refuse, and must not stop an operator minting a token to test with.
    ignored = Problems() if purpose == "mint" else problems
    ignored.read(lambda: reader.only(*_SECTIONS, "triggers"), None)
    secrets = problems.read(lambda: read_secrets(environ, minting=purpose == "mint"), None)
    sections = {
        name: (problems if name == "sessions" else ignored).read(
            functools.partial(_read_section, cls, reader.table(name), env), cls()
        )
        for name, cls in _SECTIONS.items()
    }
    no_triggers: tuple[TriggerSettings, ...] = ()
    triggers = ignored.read(lambda: _read_triggers(reader.tables("triggers")), no_triggers)
    ignored.read(asked.check, None)  # once everything has been read
    problems.raise_any()
    assert secrets is not None
    return secrets, sections, triggers


def _read_section(cls: type[_T], r: Reader, env: EnvOverrides) -> _T:
    hints = get_type_hints(cls)
    r.only(*(f.name for f in fields(cls)))  # type: ignore[arg-type]
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        hint, meta = hints[f.name], f.metadata
        if meta["env"]:
            kind = hint if hint in (int, float) else list if get_origin(hint) is tuple else str
            env.apply(r, f.name, meta["env"], kind)
        values[f.name] = _read_value(r, f.name, hint, f.default, meta)
    section = cls(**values)
    check = _SPANNING.get(cls)
    if check is not None:
        check(r, section)
    return section


def _read_value(r: Reader, name: str, hint: Any, default: Any, meta: Mapping[str, Any]) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if hint is bool:
        value: Any = r.boolean(name, default)
    elif hint is int or hint is float:
        read = r.integer if hint is int else r.number
        value = read(name, default, meta["low"])
        if meta["high"] is not None and value > meta["high"]:
            raise ConfigError(r.key(name), f"must be at most {meta['high']:g}")
    elif hint is Rate:
        value = r.rate(name, default)
    elif origin is tuple and args[0] is Rate:
        value = r.rates(name, default)
    elif origin is tuple:
        value = r.strings(name, default)
    else:  # str, or a Literal of strings
        value = r.string(name, default)
    if meta["check"] is not None:
        value = meta["check"](r.key(name), value)
    if origin is Literal and value not in args:
        raise ConfigError(r.key(name), "must be " + " or ".join(f'"{a}"' for a in args))
    return value


def _check_upstream(r: Reader, upstream: Any) -> None:
    host = urlsplit(upstream.url).hostname or ""
    if (
        upstream.url.startswith("http:")
        and not upstream.allow_insecure_http
        and not _is_loopback(host)
    ):
        raise ConfigError(
            r.key("url"),
            "plain http is allowed only for loopback hosts unless allow_insecure_http = true",
        )


def _check_cors(r: Reader, cors: Any) -> None:
    if "*" in cors.allow_origins and cors.allow_credentials:
        raise ConfigError(
            r.key("allow_origins"),
            '"*" cannot be combined with allow_credentials = true (any site could use the cookie)',
        )


def _check_challenge(r: Reader, challenge: Any) -> None:
    for name in ("turnstile_verify_url", "hcaptcha_verify_url", "recaptcha_verify_url"):
        url = getattr(challenge, name)
        if url.startswith("http:") and not _is_loopback(urlsplit(url).hostname or ""):
            raise ConfigError(r.key(name), "must be https (the provider's secret travels in it)")


_SPANNING: dict[type, Callable[[Reader, Any], None]] = {
    UpstreamSettings: _check_upstream,
    CorsSettings: _check_cors,
    ChallengeSettings: _check_challenge,
}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_uuid(key: str, value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except ValueError as exc:
        raise ConfigError(key, f"{value!r} is not a UUID") from exc
    if str(parsed) != value.lower():
        raise ConfigError(key, f"{value!r} is not a UUID in canonical form")
    return value.lower()


def _read_triggers(readers: list[Reader]) -> tuple[TriggerSettings, ...]:
    seen: dict[str, str] = {}
    problems = Problems()
    read: list[TriggerSettings | None] = [
        problems.read(functools.partial(_read_trigger, r, seen), None) for r in readers
    ]
    problems.raise_any()
    return tuple(t for t in read if t is not None)


def _read_trigger(r: Reader, seen: dict[str, str]) -> TriggerSettings:
    r.only("id", "name", "sources", "per_customer", "allow_debit", "override", *CAMPAIGN_KEYS)
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
        **read_campaign(r, wallet),
    )


def _read_override(
    r: Reader, allow_debit: bool
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
