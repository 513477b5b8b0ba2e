"""A trigger's campaign keys: read into its settings, and every mistake refused naming the key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from proxy.config.settings import ConfigError, Rate, Schedule, Settings
from tests.helpers import ENVIRON, SPIN, config

SECRET_ENV = {**ENVIRON, "TRIGGER_PROXY_CHALLENGE_SECRET": "0x4AAAAAAA-provider-secret"}


def campaign(**keys: Any) -> dict[str, Any]:
    wallet = {"title": "Scratch", "coin_range": {"min": 5, "max": 50}}
    return {"id": SPIN, "name": "scratch-card", "override": {"wallet": wallet}, **keys}


def load(*triggers: dict[str, Any], environ: dict[str, str] = ENVIRON, **sections: Any) -> Settings:
    return Settings.from_mapping(config(triggers=list(triggers), **sections), environ)


def refusal(*triggers: dict[str, Any], environ: dict[str, str] = ENVIRON, **sections: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(*triggers, environ=environ, **sections)
    return str(info.value)


def test_every_campaign_key_is_read() -> None:
    (t,) = load(
        campaign(
            starts_at="2026-12-01T00:00:00Z",
            ends_at=datetime(2027, 1, 1, tzinfo=UTC),  # TOML's own offset date-time
            days=["sat", "sun"],
            hours="22:00-02:00",
            timezone="Europe/Paris",
            coin_budget="5000/day",
            customer_coins="200/day",
            dry_run=True,
            challenge="turnstile",
        ),
        environ=SECRET_ENV,
        challenge={"site_key": "0x4AAAAAAA-site"},
    ).triggers
    assert t.schedule == Schedule(
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
        (5, 6),
        (22 * 60, 2 * 60),
        "Europe/Paris",
    )
    assert (t.coin_budget, t.customer_coins) == (Rate(5000, 86400), Rate(200, 86400))
    assert t.dry_run
    assert t.challenge == "turnstile"


def test_a_trigger_without_campaign_keys_has_no_controls() -> None:
    (t,) = load(campaign()).triggers
    assert (t.schedule, t.coin_budget, t.customer_coins, t.dry_run, t.challenge) == (
        None,
        None,
        None,
        False,
        None,
    )


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"timezone": "Mars/Olympus"}, "triggers[0].timezone: 'Mars/Olympus' is not an IANA"),
        ({"starts_at": "next monday"}, "triggers[0].starts_at: 'next monday' is not an RFC 3339"),
        ({"ends_at": "2026-12-01T10:00:00"}, "triggers[0].ends_at: needs an offset"),
        (
            {"starts_at": "2026-12-02T00:00:00Z", "ends_at": "2026-12-01T00:00:00Z"},
            "triggers[0].ends_at: must be after starts_at",
        ),
        ({"days": ["monday"]}, "triggers[0].days: must list days among mon, tue"),
        ({"days": []}, "triggers[0].days: must list days among"),
        ({"hours": "9-17"}, "triggers[0].hours: '9-17' is not like '09:00-17:30'"),
        ({"hours": "09:00-09:00"}, "triggers[0].hours: '09:00-09:00' is an empty"),
        ({"coin_budget": "lots"}, "triggers[0].coin_budget: 'lots' is not a rate"),
        (
            {"coin_budget": "40/day"},
            "triggers[0].coin_budget: 40 coins is less than one reward's coin_range max (50)",
        ),
        ({"dry_run": "yes"}, "triggers[0].dry_run: must be true or false"),
        ({"challenge": "captcha"}, 'triggers[0].challenge: must be "turnstile" or "hcaptcha"'),
        ({"start_at": "2026-12-01T00:00:00Z"}, "triggers[0].start_at: unknown key (did you mean"),
    ],
)
def test_a_campaign_mistake_names_its_key(keys: dict[str, Any], expected: str) -> None:
    assert refusal(campaign(**keys)).startswith(expected)


def test_a_coin_budget_needs_a_crediting_wallet_override() -> None:
    bare = {"id": SPIN, "customer_coins": "100/day"}
    assert refusal(bare).startswith("triggers[0].customer_coins: needs a crediting wallet")


def test_a_human_check_needs_a_site_key_and_the_providers_secret() -> None:
    check = campaign(challenge="hcaptcha")
    assert refusal(check, environ=SECRET_ENV).startswith("challenge.site_key: is required")
    missing = refusal(check, challenge={"site_key": "site"})
    assert missing.startswith("TRIGGER_PROXY_CHALLENGE_SECRET: is required")


def test_two_providers_are_refused() -> None:
    other = {**campaign(challenge="recaptcha"), "id": "0f6d3a52-7b8e-4c1d-9e2f-5a4b3c2d1e0f"}
    other["name"] = "other"
    text = refusal(campaign(challenge="turnstile"), other, environ=SECRET_ENV)
    assert text == "triggers: challenge names recaptcha and turnstile: one provider, one secret"


def test_the_providers_secret_is_never_shown() -> None:
    settings = load(
        campaign(challenge="turnstile"), environ=SECRET_ENV, challenge={"site_key": "site"}
    )
    assert "provider-secret" not in repr(settings)
    assert settings.secrets.challenge_secret is not None


def test_the_campaign_pages_config_block_loads_as_it_says() -> None:
    import re
    import tomllib
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "campaigns.md").read_text()
    [block] = re.findall(r"^```toml\n(.*?)^```", page, re.MULTILINE | re.DOTALL)
    data = tomllib.loads(block)
    settings = Settings.from_mapping(config(**data), SECRET_ENV)
    (t,) = settings.triggers
    assert t.name == "scratch-card"
    assert t.coin_budget == Rate(5000, 86400)
    assert t.schedule is not None
    assert t.schedule.days == (4, 5, 6)
    assert settings.challenge.site_key == "0x4AAAAAAA..."


def test_check_config_shows_each_trigger_s_controls_and_no_secret() -> None:
    from proxy.cli import summary

    settings = load(
        campaign(
            starts_at="2026-12-01T00:00:00Z",
            days=["fri"],
            hours="18:00-23:30",
            coin_budget="5000/day",
            dry_run=True,
            challenge="turnstile",
        ),
        environ=SECRET_ENV,
        challenge={"site_key": "site"},
    )
    text = summary(settings)
    assert (
        "schedule=2026-12-01T00:00:00Z.. fri 18:00-23:30 UTC coin_budget=5000 coins/86400s "
        "dry_run challenge=turnstile"
    ) in text
    assert "provider-secret" not in text


def test_a_verify_url_in_plain_http_is_for_a_loopback_stand_in_only() -> None:
    remote = {"hcaptcha_verify_url": "http://verify.example.com/siteverify"}
    assert refusal(campaign(), challenge=remote) == (
        "challenge.hcaptcha_verify_url: must be https (the provider's secret travels in it)"
    )
    local = {"hcaptcha_verify_url": "http://127.0.0.1:9000/siteverify"}
    assert load(campaign(), challenge=local).challenge.hcaptcha_verify_url.startswith("http:")
