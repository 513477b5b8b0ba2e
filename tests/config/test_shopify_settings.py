"""The [shopify] section and its two secrets: off by default, every mistake one line naming
the key or variable, never a secret shown."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.cli import summary
from proxy.config.settings import ConfigError, Settings, warnings
from tests.helpers import ENVIRON, SESSION_SECRET, config

SHOP = "tinyshop.myshopify.com"
APP_SECRETS = "shpss_old0123456789abcdef0123456789ab,shpss_new0123456789abcdef0123456789ab"
DIGEST_SECRETS = "an-older-theme-digest-secret-of-32-chars,the-theme-digest-secret-of-32-chars-Q7"
SHOPIFY_ENV = {
    **ENVIRON,
    "TRIGGER_PROXY_SHOPIFY_APP_SECRETS": APP_SECRETS,
    "TRIGGER_PROXY_SHOPIFY_DIGEST_SECRETS": DIGEST_SECRETS,
}


def load(shopify: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    return Settings.from_mapping(
        config(shopify=shopify), SHOPIFY_ENV if environ is None else environ
    )


def test_shopify_is_off_by_default() -> None:
    settings = Settings.from_mapping(config(), ENVIRON)
    assert settings.shopify.shop == ""
    assert settings.shopify.app_proxy is False
    assert settings.shopify.customer_id == "shopify-{id}"
    assert settings.secrets.shopify_app_secrets == ()
    assert "shopify: off" in summary(settings)


def test_both_ways_on_with_their_secrets_oldest_first() -> None:
    settings = load({"shop": "TinyShop.myshopify.com", "app_proxy": True})
    assert settings.shopify.shop == SHOP  # Shopify's permanent domains are lowercase
    apps = [s.reveal() for s in settings.secrets.shopify_app_secrets]
    assert apps == APP_SECRETS.split(",")
    digests = [s.reveal() for s in settings.secrets.shopify_digest_secrets]
    assert digests == DIGEST_SECRETS.split(",")


def test_check_config_says_what_is_on_and_shows_no_secret() -> None:
    shown = summary(load({"shop": SHOP, "app_proxy": True, "digest_max_age_seconds": 600}))
    assert "shopify: tinyshop.myshopify.com" in shown
    assert "App Proxy under /shopify/ on, 2 app secret(s)" in shown
    assert "theme digests on, 2 secret(s), at most 600s old" in shown
    settings = load({"shop": SHOP})
    for secret in (*APP_SECRETS.split(","), *DIGEST_SECRETS.split(",")):
        assert secret not in shown
        assert secret not in repr(settings)


def test_the_app_proxy_needs_the_app_secret() -> None:
    environ = {k: v for k, v in SHOPIFY_ENV.items() if "APP_SECRETS" not in k}
    with pytest.raises(ConfigError) as info:
        load({"shop": SHOP, "app_proxy": True}, environ)
    assert info.value.key == "TRIGGER_PROXY_SHOPIFY_APP_SECRETS"
    assert str(info.value).count("\n") == 0


def test_a_short_digest_secret_stops_the_start_without_showing_it() -> None:
    environ = {**SHOPIFY_ENV, "TRIGGER_PROXY_SHOPIFY_DIGEST_SECRETS": DIGEST_SECRETS + ",short-Q7"}
    with pytest.raises(ConfigError) as info:
        load({"shop": SHOP}, environ)
    assert info.value.key == "TRIGGER_PROXY_SHOPIFY_DIGEST_SECRETS[2]"
    assert "short-Q7" not in str(info.value)


def test_an_app_secret_with_a_space_is_refused() -> None:
    environ = {**SHOPIFY_ENV, "TRIGGER_PROXY_SHOPIFY_APP_SECRETS": "shpss_with a-space-in-it"}
    with pytest.raises(ConfigError) as info:
        load({"shop": SHOP, "app_proxy": True}, environ)
    assert info.value.key == "TRIGGER_PROXY_SHOPIFY_APP_SECRETS[0]"


def test_a_digest_secret_may_not_also_sign_sessions() -> None:
    environ = {**SHOPIFY_ENV, "TRIGGER_PROXY_SHOPIFY_DIGEST_SECRETS": SESSION_SECRET}
    with pytest.raises(ConfigError) as info:
        load({"shop": SHOP}, environ)
    assert info.value.key == "TRIGGER_PROXY_SHOPIFY_DIGEST_SECRETS"


@pytest.mark.parametrize(
    ("shopify", "key"),
    [
        ({"app_proxy": True}, "shopify.shop"),
        ({}, "shopify.shop"),  # digest secrets set, no shop
        ({"shop": "tinyshop.example.com"}, "shopify.shop"),
        ({"shop": SHOP, "customer_id": "shopify"}, "shopify.customer_id"),
        ({"shop": SHOP, "customer_id": "shopify-{id}-{id}"}, "shopify.customer_id"),
        ({"shop": SHOP, "customer_id": "shopify {id}"}, "shopify.customer_id"),
        ({"shop": SHOP, "digest_max_age_seconds": 86401}, "shopify.digest_max_age_seconds"),
        ({"shop": SHOP, "digest_max_age_seconds": 0}, "shopify.digest_max_age_seconds"),
        ({"shop": SHOP, "app_proxi": True}, "shopify.app_proxi"),
    ],
)
def test_mistakes_name_the_key(shopify: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(shopify)
    assert info.value.key == key


@pytest.mark.parametrize(
    ("shopify", "environ"),
    [
        ({"shop": SHOP, "app_proxy": True}, SHOPIFY_ENV),
        ({"shop": SHOP}, SHOPIFY_ENV),  # theme digests only
    ],
)
def test_a_storefront_key_is_refused_with_either_way(
    shopify: dict[str, Any], environ: dict[str, str]
) -> None:
    # Both ways make customer_id sessions, which a storefront key refuses at every call.
    storefront = {**environ, "TRIGGER_PROXY_LEAD_TOKEN_SECRET": "lead-token-secret-of-nector"}
    data = config(shopify=shopify, upstream={"key_purpose": "storefront"})
    with pytest.raises(ConfigError) as info:
        Settings.from_mapping(data, storefront)
    assert info.value.key == "upstream.key_purpose"
    line = str(info.value)
    assert "\n" not in line
    assert "app_proxy" in line or "SHOPIFY_DIGEST_SECRETS" in line
    assert "SERVER" in line


def test_a_storefront_key_without_shopify_still_loads() -> None:
    environ = {**ENVIRON, "TRIGGER_PROXY_LEAD_TOKEN_SECRET": "lead-token-secret-of-nector"}
    data = config(upstream={"key_purpose": "storefront"})
    assert Settings.from_mapping(data, environ).upstream.key_purpose == "storefront"


def test_digests_outlive_the_sessions_they_are_traded_for_by_default() -> None:
    settings = load({"shop": SHOP})
    assert settings.shopify.digest_max_age_seconds > settings.sessions.max_age_seconds
    assert shopify_warnings(settings) == []


@pytest.mark.parametrize("digest_age", [3600, 600])
def test_a_digest_no_older_than_a_session_may_live_is_a_warning(digest_age: int) -> None:
    # The wheel trades the same digest again as its session ends: the digest is then as old.
    settings = load({"shop": SHOP, "digest_max_age_seconds": digest_age})
    [warning] = shopify_warnings(settings)
    assert warning.startswith(f"shopify.digest_max_age_seconds ({digest_age}) is not longer ")
    assert "sessions.max_age_seconds (3600)" in warning
    environ = {k: v for k, v in SHOPIFY_ENV.items() if "DIGEST" not in k}  # digests off
    assert shopify_warnings(load({"shop": SHOP, "digest_max_age_seconds": 600}, environ)) == []


def shopify_warnings(settings: Settings) -> list[str]:
    return [w for w in warnings(settings) if w.startswith("shopify.")]


def test_a_short_app_secret_stops_the_start_without_showing_it() -> None:
    short = "shpss_short-Q7"
    environ = {**SHOPIFY_ENV, "TRIGGER_PROXY_SHOPIFY_APP_SECRETS": APP_SECRETS + "," + short}
    with pytest.raises(ConfigError) as info:
        load({"shop": SHOP, "app_proxy": True}, environ)
    assert info.value.key == "TRIGGER_PROXY_SHOPIFY_APP_SECRETS[2]"
    assert "shorter than 32 characters" in str(info.value)
    assert short not in str(info.value)
