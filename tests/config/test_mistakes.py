"""The silent mistakes an operator makes, refused or warned about: a misspelt variable or key
(with the nearest known name), an environment value blamed on the variable that set it, an
admin port that is the serving port, a budget over Nector's cap."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config.settings import ConfigError, Settings, warnings
from tests.helpers import ENVIRON, config


def problems(data: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        Settings.from_mapping(data, ENVIRON if environ is None else environ)
    return [str(p) for p in info.value.problems]


def test_a_misspelt_variable_is_refused_with_the_one_meant() -> None:
    environ = {**ENVIRON, "TRIGGER_PROXY_UPSTREAM_ULR": "https://elsewhere.example/api"}
    assert problems(config(), environ) == [
        "TRIGGER_PROXY_UPSTREAM_ULR: unknown variable (did you mean TRIGGER_PROXY_UPSTREAM_URL?)"
    ]


def test_an_unknown_variable_far_from_any_is_refused_without_a_guess() -> None:
    environ = {**ENVIRON, "TRIGGER_PROXY_ZZZ": "1"}
    assert problems(config(), environ) == ["TRIGGER_PROXY_ZZZ: unknown variable"]


def test_every_variable_the_proxy_reads_is_known() -> None:
    environ = {
        **ENVIRON,
        "TRIGGER_PROXY_CONFIG": "/etc/trigger-proxy/proxy.toml",
        "TRIGGER_PROXY_HOST": "0.0.0.0",
        "TRIGGER_PROXY_PORT": "8081",
        "TRIGGER_PROXY_LOG_LEVEL": "warning",
        "TRIGGER_PROXY_LEAD_TOKEN_SECRET": "lead-secret",
    }
    assert Settings.from_mapping(config(), environ).server.port == 8081


def test_a_misspelt_key_is_refused_with_the_one_meant() -> None:
    assert problems(config(limits={"per_costumer": "1/minute"})) == [
        "limits.per_costumer: unknown key (did you mean per_customer?)"
    ]


def test_a_misspelt_trigger_key_is_refused_with_the_one_meant() -> None:
    data = config(triggers=[{"id": "6b1f7c1e-1d2f-4c8e-9a55-0c3b1f1d2a10", "sorces": ["web"]}])
    assert problems(data) == ["triggers[0].sorces: unknown key (did you mean sources?)"]


def test_an_environment_value_out_of_range_names_the_variable() -> None:
    assert problems(config(), {**ENVIRON, "TRIGGER_PROXY_WORKERS": "0"}) == [
        "TRIGGER_PROXY_WORKERS: must be at least 1"
    ]


def test_the_same_value_in_the_file_names_the_key() -> None:
    assert problems(config(server={"workers": 0})) == ["server.workers: must be at least 1"]


def test_the_admin_port_must_not_be_the_serving_port() -> None:
    [line] = problems(config(server={"port": 9100, "metrics_port": 9100}))
    assert line.startswith("server.metrics_port: is server.port (9100)")


def test_a_budget_over_nectors_cap_is_a_warning() -> None:
    settings = Settings.from_mapping(config(limits={"upstream": "70/minute"}), ENVIRON)
    [warning] = warnings(settings)
    assert warning.startswith("limits.upstream (70/60s) admits 70 calls a minute, over Nector's 60")


@pytest.mark.parametrize("budget", ["3000/hour", "2/second"])
def test_a_budget_that_can_burst_past_the_cap_within_a_minute_is_a_warning(budget: str) -> None:
    settings = Settings.from_mapping(config(limits={"upstream": budget}), ENVIRON)
    assert len(warnings(settings)) == 1


@pytest.mark.parametrize("budget", ["60/minute", "50/minute", "1/second", "60/hour"])
def test_a_budget_within_the_cap_is_no_warning(budget: str) -> None:
    assert warnings(Settings.from_mapping(config(limits={"upstream": budget}), ENVIRON)) == []


def test_mint_is_not_stopped_by_a_mistake_in_another_section() -> None:
    environ = {"TRIGGER_PROXY_SESSION_SECRETS": ENVIRON["TRIGGER_PROXY_SESSION_SECRETS"]}
    data = config(limits={"per_customer": "lots"}, triggers=[])
    settings = Settings.from_mapping(data, environ, purpose="mint")
    assert settings.sessions.max_age_seconds == 3600


def test_mint_is_stopped_by_a_mistake_in_the_sessions() -> None:
    environ = {"TRIGGER_PROXY_SESSION_SECRETS": ENVIRON["TRIGGER_PROXY_SESSION_SECRETS"]}
    with pytest.raises(ConfigError, match=r"sessions\.max_age_seconds"):
        Settings.from_mapping(config(sessions={"max_age_seconds": 0}), environ, purpose="mint")


def test_an_override_of_a_section_with_a_mistake_is_still_known() -> None:
    environ = {**ENVIRON, "TRIGGER_PROXY_STORAGE_URL": "redis://127.0.0.1:6379/0"}
    assert problems(config(limits={"per_costumer": "1/minute"}), environ) == [
        "limits.per_costumer: unknown key (did you mean per_customer?)"
    ]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://127.0.0.1:6379/0?bogus=1", "takes no option 'bogus'"),
        ("redis://:hunter2@127.0.0.1/0?socket_timeout=soon", "a value for 'socket_timeout'"),
        ("redis+sentinel://127.0.0.1:26379/main?db=1", "takes no option 'db'"),
    ],
)
def test_a_storage_option_redis_does_not_take_is_refused_before_serving(
    url: str, problem: str
) -> None:
    # Without the check, check-config passed and every worker failed its start on a TypeError.
    [found] = problems(config(limits={"storage_url": url}))
    assert found.startswith("limits.storage_url: ")
    assert problem in found
    assert "hunter2" not in found


def test_the_storage_options_redis_takes_pass() -> None:
    for url in ("redis://127.0.0.1:6379/0?socket_timeout=1", "unix:///run/redis.sock?db=2"):
        Settings.from_mapping(config(limits={"storage_url": url}), ENVIRON)


def test_a_storage_url_that_cannot_be_parsed_is_one_line_without_its_password() -> None:
    # urlsplit raises on it; the CLI printed the traceback.
    environ = {**ENVIRON, "TRIGGER_PROXY_STORAGE_URL": "redis://:hunter2@[::1/0"}
    [found] = problems(config(), environ)
    assert found.startswith("TRIGGER_PROXY_STORAGE_URL: is not a URL")
    assert "hunter2" not in found


MINT_ENV = {"TRIGGER_PROXY_SESSION_SECRETS": ENVIRON["TRIGGER_PROXY_SESSION_SECRETS"]}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRIGGER_PROXY_SHOPIFY_DIGEST_SECRETS", "short-Q7"),
        ("TRIGGER_PROXY_SHOPIFY_APP_SECRETS", "x"),
        ("TRIGGER_PROXY_API_KEY", "bad key"),
        ("TRIGGER_PROXY_MINT_KEY", "tiny-mint-Q7"),
        ("TRIGGER_PROXY_CHALLENGE_SECRET", "not\tprintable"),
        ("TRIGGER_PROXY_LEAD_TOKEN_SECRET", "with space"),
    ],
)
def test_mint_is_not_stopped_by_a_secret_minting_does_not_use(name: str, value: str) -> None:
    settings = Settings.from_mapping(config(), {**MINT_ENV, name: value}, purpose="mint")
    assert settings.secrets.session_secrets
    with pytest.raises(ConfigError):  # serve still refuses it
        Settings.from_mapping(config(), {**ENVIRON, name: value})


def test_a_malformed_challenge_secret_is_the_providers_not_nectors() -> None:
    [found] = problems(config(), {**ENVIRON, "TRIGGER_PROXY_CHALLENGE_SECRET": "a b"})
    assert found.startswith("TRIGGER_PROXY_CHALLENGE_SECRET: must be printable ASCII")
    assert "Nector" not in found
    assert "provider" in found
