"""Settings: every mistake is one line naming the key; the environment wins; secrets stay masked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.config.settings import ConfigError, Rate, Secret, Settings, parse_rates
from tests.helpers import ALL_SECRETS, ENVIRON, SPIN, config

EXAMPLE = Path(__file__).parents[2] / "config" / "proxy.example.toml"


def wallet_trigger(**wallet: object) -> dict[str, Any]:
    return {"id": SPIN, "override": {"wallet": {"title": "t", **wallet}}}


def load(data: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    return Settings.from_mapping(data, ENVIRON if environ is None else environ)


def test_the_example_config_loads() -> None:
    settings = Settings.load(EXAMPLE, ENVIRON)
    assert settings.triggers[0].name == "spin-wheel"
    assert settings.triggers[0].per_customer == (Rate(1, 60), Rate(3, 86400))
    assert settings.limits.upstream == Rate(50, 60)


@pytest.mark.parametrize(
    ("text", "rates"),
    [
        ("1/minute;10/day", (Rate(1, 60), Rate(10, 86400))),
        ("3/day", (Rate(3, 86400),)),
        ("5/10 minutes", (Rate(5, 600),)),
        ("2 per second", (Rate(2, 1),)),
        ("10/hours", (Rate(10, 3600),)),
    ],
)
def test_rates_parse(text: str, rates: tuple[Rate, ...]) -> None:
    assert parse_rates(text) == rates


@pytest.mark.parametrize("text", ["", "fast", "0/minute", "1/week", "1/minute;2/minute", "-1/day"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate|window|least"):
        parse_rates(text)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (config(extra={}), "extra"),
        (config(upstream={"timeout": 3}), "upstream.timeout"),
        (config(limits={"per_customer": "lots"}), "limits.per_customer"),
        (config(limits={"upstream": "1/minute;2/day"}), "limits.upstream"),
        (config(triggers=[{"id": "not-a-uuid"}]), "triggers[0].id"),
        (config(triggers=[{"name": "x"}]), "triggers[0].id"),
        (config(triggers=[{"id": SPIN, "sources": ["desktop"]}]), "triggers[0].sources"),
        (config(triggers=[{"id": SPIN}, {"id": SPIN}]), "triggers[1].id"),
        (config(triggers=[{"id": SPIN, "colour": "red"}]), "triggers[0].colour"),
        (config(triggers=[]), "triggers"),
        (config(upstream={"timeout_seconds": "ten"}), "upstream.timeout_seconds"),
        (config(upstream={"url": "http://nector.example/api"}), "upstream.url"),
        (config(upstream={"url": "ftp://127.0.0.1/"}), "upstream.url"),
        (config(cors={"allow_origins": ["*"], "allow_credentials": True}), "cors.allow_origins"),
        (config(cors={"allow_origins": ["shop.example.com"]}), "cors.allow_origins"),
        (config(sessions={"max_age_seconds": 90000}), "sessions.max_age_seconds"),
        (config(server={"workers": 2}), "limits.storage_url"),
        (config(server={"forwarded_allow_ips": ["proxy.local"]}), "server.forwarded_allow_ips"),
        (config(server={"max_body_bytes": True}), "server.max_body_bytes"),
        (config(limits={"storage_url": "mysql://x"}), "limits.storage_url"),
        (config(logging={"format": "xml"}), "logging.format"),
        (
            config(triggers=[wallet_trigger(operation="dr", coin_range={"min": 1, "max": 2})]),
            "triggers[0].override.wallet.operation",
        ),
        (
            config(triggers=[wallet_trigger(coin_range={"min": 9, "max": 2})]),
            "triggers[0].override.wallet.coin_range",
        ),
        (config(triggers=[{"id": SPIN, "override": {"offer": {"offer_id": "x"}}}]),
         "triggers[0].override.offer.offer_id"),
    ],
)  # fmt: skip
def test_mistakes_name_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(data)
    assert info.value.key == key
    assert "\n" not in str(info.value)


def test_debit_override_is_allowed_with_allow_debit() -> None:
    wallet = {"title": "Buy a spin", "operation": "dr", "coin_range": {"min": 10, "max": 10}}
    settings = load(
        config(triggers=[{"id": SPIN, "allow_debit": True, "override": {"wallet": wallet}}])
    )
    assert settings.triggers[0].wallet is not None
    assert settings.triggers[0].wallet.operation == "dr"


def test_plain_http_is_fine_for_loopback_and_with_the_switch() -> None:
    load(config(upstream={"url": "http://127.0.0.1:9000/api/v2/merchant/activities"}))
    load(config(upstream={"url": "http://nector.internal/api", "allow_insecure_http": True}))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRIGGER_PROXY_API_KEY", ""),
        ("TRIGGER_PROXY_API_KEY", "ak_0123 4567"),
        ("TRIGGER_PROXY_WORKSPACE_ID", "shopify-caf\u00e9-shop"),
        ("TRIGGER_PROXY_WORKSPACE_ID", "shopify-shop\n"),
        ("TRIGGER_PROXY_SESSION_SECRETS", ""),
        ("TRIGGER_PROXY_SESSION_SECRETS", "a" * 40 + ",tiny-secret-Q7"),
        ("TRIGGER_PROXY_MINT_KEY", "tiny-mint-Q7"),
    ],
)
def test_missing_short_or_malformed_secrets_stop_the_start(name: str, value: str) -> None:
    environ = {**ENVIRON, name: value}
    with pytest.raises(ConfigError) as info:
        load(config(), environ)
    assert info.value.key.startswith(name)
    if value:
        assert value.rsplit(",", 1)[-1] not in str(info.value)


def test_credentials_are_taken_as_nector_issues_them() -> None:
    # A real workspace id is "shopify-<shop handle>", a key "ak_" and 64 hex characters: the
    # merchant's own 32-character floor is not Nector's.
    api_key, workspace = "ak_" + "0123456789abcdef" * 4, "shopify-tiny-shop"
    environ = {**ENVIRON, "TRIGGER_PROXY_API_KEY": api_key, "TRIGGER_PROXY_WORKSPACE_ID": workspace}
    settings = load(config(), environ)
    assert settings.secrets.api_key is not None
    assert settings.secrets.workspace_id is not None
    assert settings.secrets.api_key.reveal() == api_key
    assert settings.secrets.workspace_id.reveal() == workspace


def test_a_storefront_key_needs_its_signing_secret() -> None:
    storefront = config(upstream={"key_purpose": "storefront"})
    with pytest.raises(ConfigError) as info:
        load(storefront, ENVIRON)
    assert info.value.key == "TRIGGER_PROXY_LEAD_TOKEN_SECRET"
    secret = "lead-secret-from-nector"
    settings = load(storefront, {**ENVIRON, "TRIGGER_PROXY_LEAD_TOKEN_SECRET": secret})
    assert settings.upstream.key_purpose == "storefront"
    assert settings.secrets.lead_token_secret is not None
    assert secret not in repr(settings)
    assert load(config(), ENVIRON).upstream.key_purpose == "server"
    with pytest.raises(ConfigError, match="key_purpose"):
        load(config(upstream={"key_purpose": "full"}), ENVIRON)


def test_mint_needs_only_the_session_secrets() -> None:
    environ = {"TRIGGER_PROXY_SESSION_SECRETS": ENVIRON["TRIGGER_PROXY_SESSION_SECRETS"]}
    settings = Settings.from_mapping(config(), environ, purpose="mint")
    assert settings.secrets.api_key is None
    with pytest.raises(ConfigError, match="TRIGGER_PROXY_API_KEY"):
        Settings.from_mapping(config(), environ, purpose="serve")


def test_the_environment_wins_over_the_file() -> None:
    environ = {
        **ENVIRON,
        "TRIGGER_PROXY_UPSTREAM_URL": "http://127.0.0.1:9/api",
        "TRIGGER_PROXY_UPSTREAM_TIMEOUT_SECONDS": "2.5",
        "TRIGGER_PROXY_STORAGE_URL": "redis://127.0.0.1:6379/3",
        "TRIGGER_PROXY_SESSION_MAX_AGE_SECONDS": "600",
        "TRIGGER_PROXY_LOG_LEVEL": "WARNING",
        "TRIGGER_PROXY_LOG_FORMAT": "plain",
    }
    settings = load(config(), environ)
    assert settings.upstream.url == "http://127.0.0.1:9/api"
    assert settings.upstream.timeout_seconds == 2.5
    assert settings.limits.storage_url == "redis://127.0.0.1:6379/3"
    assert settings.sessions.max_age_seconds == 600
    assert (settings.logging.level, settings.logging.format) == ("warning", "plain")


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load(config(), {**ENVIRON, "TRIGGER_PROXY_UPSTREAM_TIMEOUT_SECONDS": "soon"})
    assert info.value.key == "TRIGGER_PROXY_UPSTREAM_TIMEOUT_SECONDS"


def test_secrets_never_show_in_repr() -> None:
    settings = load(config())
    text = repr(settings) + str(settings)
    for secret in ALL_SECRETS:
        assert secret not in text
    assert repr(Secret("x" * 40)) == "Secret('**********')"


def test_nothing_is_read_from_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIGGER_PROXY_UPSTREAM_URL", "http://127.0.0.1:1/elsewhere")
    assert load(config()).upstream.url == config()["upstream"]["url"]


def test_the_storage_urls_password_never_shows_in_repr() -> None:
    url = "redis+sentinel://:hunter2@127.0.0.1:26379/main?sentinel_password=hunter3"
    settings = load(config(), {**ENVIRON, "TRIGGER_PROXY_STORAGE_URL": url})
    assert settings.limits.storage_url == url  # used as given
    text = repr(settings) + str(settings.limits)
    assert "hunter2" not in text
    assert "hunter3" not in text
    assert "storage_url='redis+sentinel://***@127.0.0.1:26379/main?sentinel_password=***'" in text


def test_an_unreadable_config_names_where_its_path_came_from(tmp_path: Path) -> None:
    missing = str(tmp_path / "p.toml")
    with pytest.raises(ConfigError) as info:
        Settings.load(missing, {**ENVIRON, "TRIGGER_PROXY_CONFIG": missing})
    assert str(info.value).startswith(f"TRIGGER_PROXY_CONFIG: cannot read {missing}: ")
    with pytest.raises(ConfigError) as info:
        Settings.load(missing, ENVIRON)
    assert info.value.key == "--config"
