"""Settings: built once from a TOML file and an environment mapping, validated completely.

``Settings.load(path, environ)`` is the only way in. Every mistake raises ``ConfigError``
naming the key (``ConfigErrors`` when there are several), so the CLI can print one line each
and exit non-zero. The shape of each section is ``schema.py``'s; reading and checking it,
``sections.py``'s.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.config.redemption import RedemptionSettings
from proxy.config.schema import (
    ENV_PREFIX,
    MIN_SECRET_LENGTH,
    SOURCES,
    ChallengeSettings,
    ConfigError,
    ConfigErrors,
    CorsSettings,
    KeyPurpose,
    LimitSettings,
    LogSettings,
    Rate,
    ReadSettings,
    ServerSettings,
    SessionSettings,
    ShopifySettings,
    UpstreamSettings,
    parse_rates,
)
from proxy.config.secrets import Secret, Secrets
from proxy.config.sections import Purpose, read_sections
from proxy.config.storage import display_url
from proxy.config.triggers import OfferOverride, Schedule, TriggerSettings, WalletOverride
from proxy.config.variables import CONFIG_VARIABLE

__all__ = [
    "ENV_PREFIX",
    "MIN_SECRET_LENGTH",
    "SOURCES",
    "ChallengeSettings",
    "ConfigError",
    "ConfigErrors",
    "CorsSettings",
    "KeyPurpose",
    "LimitSettings",
    "LogSettings",
    "OfferOverride",
    "Purpose",
    "Rate",
    "ReadSettings",
    "Schedule",
    "Secret",
    "Secrets",
    "ServerSettings",
    "SessionSettings",
    "Settings",
    "ShopifySettings",
    "TriggerSettings",
    "UpstreamSettings",
    "WalletOverride",
    "display_url",
    "parse_rates",
    "warnings",
]


@dataclass(frozen=True, slots=True)
class Settings:
    secrets: Secrets
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    sessions: SessionSettings = field(default_factory=SessionSettings)
    cors: CorsSettings = field(default_factory=CorsSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    reads: ReadSettings = field(default_factory=ReadSettings)
    shopify: ShopifySettings = field(default_factory=ShopifySettings)
    challenge: ChallengeSettings = field(default_factory=ChallengeSettings)
    redemption: RedemptionSettings = field(default_factory=RedemptionSettings)
    triggers: tuple[TriggerSettings, ...] = ()
    logging: LogSettings = field(default_factory=LogSettings)

    @classmethod
    def load(
        cls, path: str | Path, environ: Mapping[str, str], *, purpose: Purpose = "serve"
    ) -> Settings:
        """Read the TOML file at ``path``, apply ``environ`` overrides and validate.

        ``purpose="mint"`` needs only the session secrets; ``"serve"`` needs all of them.
        """
        # The path came from the environment when --config was not given (as in the image).
        variable = ENV_PREFIX + CONFIG_VARIABLE
        named = variable if environ.get(variable) == str(path) else "--config"
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(named, f"cannot read {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(named, f"{path} is not valid TOML: {exc}") from exc
        return cls.from_mapping(data, environ, purpose=purpose)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], environ: Mapping[str, str], *, purpose: Purpose = "serve"
    ) -> Settings:
        secrets, sections, triggers = read_sections(data, environ, purpose)
        settings = cls(secrets=secrets, triggers=triggers, **sections)
        if purpose == "serve":
            _lint(settings)
        else:
            _lint_mint_key(settings)
            _lint_shopify(settings, serving=False)
        return settings


def _lint(settings: Settings) -> None:
    """Refuse configurations that are valid one key at a time but unsafe together."""
    if not settings.triggers:
        raise ConfigError("triggers", "the allow-list is empty: add at least one [[triggers]]")
    if settings.limits.storage_url.startswith("memory:") and settings.server.workers > 1:
        raise ConfigError(
            "limits.storage_url",
            "memory:// is per process; with several workers use redis://",
        )
    budget, reads = settings.limits.upstream, settings.reads.budget
    if settings.reads.routes and not under(reads, budget):
        raise ConfigError(
            "reads.budget",
            f"must be a slice of limits.upstream ({budget}), smaller than it over each of "
            "their periods, so that reads never take the budget rewards need",
        )
    secrets = settings.secrets
    serving = secrets.api_key is not None
    if serving and settings.upstream.key_purpose == "storefront" and not secrets.lead_token_secret:
        raise ConfigError(
            f"{ENV_PREFIX}LEAD_TOKEN_SECRET",
            'is required with upstream.key_purpose = "storefront" (the key\'s signing secret)',
        )
    server = settings.server
    if server.metrics_port and server.metrics_port == server.port:
        raise ConfigError(
            "server.metrics_port", f"is server.port ({server.port}): the admin port must differ"
        )
    _lint_mint_key(settings)
    _lint_shopify(settings, serving)
    _lint_challenge(settings, serving)


def _lint_challenge(settings: Settings, serving: bool) -> None:
    providers = sorted({t.challenge for t in settings.triggers if t.challenge is not None})
    if not providers:
        return
    if len(providers) > 1:
        raise ConfigError(
            "triggers", f"challenge names {' and '.join(providers)}: one provider, one secret"
        )
    if not settings.challenge.site_key:
        raise ConfigError("challenge.site_key", f'is required with challenge = "{providers[0]}"')
    if serving and settings.secrets.challenge_secret is None:
        raise ConfigError(
            f"{ENV_PREFIX}CHALLENGE_SECRET",
            f'is required with challenge = "{providers[0]}" (the provider\'s secret key)',
        )


def under(part: Rate, whole: Rate) -> bool:
    """Whether ``part`` lets fewer calls through than ``whole`` over each of their periods:
    all of a rate's calls may land at once, so over a period P it allows limit * ceil(P / its
    seconds). "100/hour" is under "10/minute" on average, not over one minute."""
    for period in (part.seconds, whole.seconds):
        most = part.limit * math.ceil(period / part.seconds)
        if most >= whole.limit * math.ceil(period / whole.seconds):
            return False
    return True


def _lint_mint_key(settings: Settings) -> None:
    secrets = settings.secrets
    if secrets.mint_key is not None and secrets.mint_key in secrets.session_secrets:
        raise ConfigError(f"{ENV_PREFIX}MINT_KEY", "must differ from every session secret")


def _lint_shopify(settings: Settings, serving: bool) -> None:
    shopify, secrets = settings.shopify, settings.secrets
    digests = f"{ENV_PREFIX}SHOPIFY_DIGEST_SECRETS"
    why = "shopify.app_proxy = true" if shopify.app_proxy else digests
    if not shopify.shop and (shopify.app_proxy or secrets.shopify_digest_secrets):
        raise ConfigError("shopify.shop", f"is required with {why}")
    # Both ways make customer_id sessions, and a storefront key serves lead sessions only.
    storefront = settings.upstream.key_purpose == "storefront"
    if serving and storefront and (shopify.app_proxy or secrets.shopify_digest_secrets):
        raise ConfigError(
            "upstream.key_purpose",
            f'"storefront" cannot serve {why}: its sessions are customer_id ones, refused with '
            '403 lead_session_required; use a SERVER-purpose Nector key (key_purpose = "server")',
        )
    if serving and shopify.app_proxy and not secrets.shopify_app_secrets:
        raise ConfigError(
            f"{ENV_PREFIX}SHOPIFY_APP_SECRETS",
            "is required with shopify.app_proxy = true (the Shopify app's client secret)",
        )
    # The theme's staff and apps can read a digest secret: it must never also sign sessions.
    if set(secrets.shopify_digest_secrets) & set(secrets.session_secrets):
        raise ConfigError(digests, "must differ from every session secret")


# Nector refuses a workspace's calls past this many a minute.
NECTOR_CALLS_PER_MINUTE = 60


def warnings(settings: Settings) -> list[str]:
    """What is allowed but likely wrong: logged at WARNING by serve, printed by check-config."""
    found = []
    budget = settings.limits.upstream
    # The most the budget admits in one minute: a longer window may spend all of it at once.
    per_minute = budget.limit * max(1, -(-60 // budget.seconds))
    if per_minute > NECTOR_CALLS_PER_MINUTE:
        found.append(
            f"limits.upstream ({budget}) admits {per_minute} calls a minute, over Nector's "
            f"{NECTOR_CALLS_PER_MINUTE}: the excess is refused by Nector, not by the proxy"
        )
    digest_age = settings.shopify.digest_max_age_seconds
    session_age = settings.sessions.max_age_seconds
    if settings.secrets.shopify_digest_secrets and digest_age <= session_age:
        found.append(
            f"shopify.digest_max_age_seconds ({digest_age}) is not longer than "
            f"sessions.max_age_seconds ({session_age}): a page open that long trades its digest "
            "again as its session ends, and the digest, as old as the session, is refused"
        )
    return found
