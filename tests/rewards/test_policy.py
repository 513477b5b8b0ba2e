"""The allow-list and the body rules, as plain functions over plain data: no server."""

from __future__ import annotations

import json

import pytest

from proxy.errors import (
    ForbiddenField,
    IdentityMismatch,
    InvalidBody,
    InvalidJSON,
    InvalidSource,
    SourceNotAllowed,
    TriggerNotAllowed,
)
from proxy.http.body import parse_object
from proxy.identity.claims import parse_claims, resolve_source
from proxy.rewards.policy import (
    TriggerPolicy,
    check_dropin_body,
    check_trigger_body,
    upstream_body,
)
from tests.helpers import CHECKIN, MOBILE_ONLY, OFFER, SPIN, UNKNOWN, make_settings

SETTINGS = make_settings()
POLICY = TriggerPolicy(SETTINGS.triggers, SETTINGS.limits.per_customer)
CUSTOMER = parse_claims({"customer_id": "customer-0001"})


def test_a_trigger_is_found_by_its_id_or_its_alias_and_nothing_else() -> None:
    assert POLICY.by_ref("spin-wheel").id == SPIN
    assert POLICY.by_ref(SPIN).id == SPIN
    assert POLICY.by_id(SPIN.upper()).id == SPIN  # a UUID's case does not matter
    for ref in (UNKNOWN, "Spin-Wheel", ""):
        with pytest.raises(TriggerNotAllowed):
            POLICY.by_ref(ref)
    with pytest.raises(TriggerNotAllowed):
        POLICY.by_id("spin-wheel")  # the drop-in route names a trigger by its id only


def test_the_source_is_the_headers_hint_bound_to_the_session_and_the_trigger() -> None:
    spin, app_only = POLICY.by_ref(SPIN), POLICY.by_ref(MOBILE_ONLY)
    assert resolve_source(None, CUSTOMER, spin.sources) == "web"
    assert resolve_source("mobile", CUSTOMER, spin.sources) == "mobile"
    with pytest.raises(InvalidSource):
        resolve_source("desktop", CUSTOMER, spin.sources)
    with pytest.raises(SourceNotAllowed):
        resolve_source(None, CUSTOMER, app_only.sources)
    bound = parse_claims({"customer_id": "customer-0001", "source": "mobile"})
    assert resolve_source(None, bound, app_only.sources) == "mobile"
    with pytest.raises(SourceNotAllowed):
        resolve_source("web", bound, spin.sources)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"[]", InvalidBody),
        (b"{", InvalidJSON),
        (b'{"a": 1, "a": 2}', InvalidJSON),  # parsers disagree on which duplicate wins
        (b'{"a": NaN}', InvalidJSON),
    ],
)
def test_only_one_unambiguous_json_object_is_a_body(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_object(raw)


def test_the_trigger_route_takes_no_field_and_the_dropin_only_its_own_customer() -> None:
    check_trigger_body({})
    with pytest.raises(ForbiddenField):
        check_trigger_body({"trace": {}})
    check_dropin_body({"trigger_id": SPIN, "customer_id": "customer-0001"}, CUSTOMER)
    with pytest.raises(IdentityMismatch):
        check_dropin_body({"trigger_id": SPIN, "customer_id": "customer-0002"}, CUSTOMER)
    with pytest.raises(IdentityMismatch):
        check_dropin_body({"trigger_id": SPIN, "lead_id": "customer-0001"}, CUSTOMER)
    with pytest.raises(ForbiddenField):
        check_dropin_body({"trigger_id": SPIN, "name": "Mallory"}, CUSTOMER)


def test_the_upstream_body_comes_from_the_session_and_the_config_only() -> None:
    body = json.loads(upstream_body(POLICY.by_ref(SPIN), CUSTOMER))
    assert body == {
        "trigger_id": SPIN,
        "customer_id": "customer-0001",
        "trace": {
            "via_api_for_wallet": {
                "title": "Spin the wheel",
                "operation": "cr",
                "coin_range": {"min": 5, "max": 50},
            }
        },
    }
    offer = json.loads(upstream_body(POLICY.by_ref(CHECKIN), CUSTOMER))
    assert offer["trace"] == {"via_api_for_offer": {"offer_id": OFFER}}
    profile = parse_claims({"lead_id": "5f0c6b7e-2a1d-4e3f-9b8c-7d6e5f4a3b2c", "name": "Ada"})
    assert json.loads(upstream_body(POLICY.by_ref(MOBILE_ONLY), profile)) == {
        "trigger_id": MOBILE_ONLY,
        "lead_id": "5f0c6b7e-2a1d-4e3f-9b8c-7d6e5f4a3b2c",
        "name": "Ada",
    }
