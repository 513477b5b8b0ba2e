"""The OpenAPI document: in sync with the app, and schemathesis finds no 500 and no
contract violation against a live server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from proxy import errors
from proxy.app import create_app
from proxy.config.schema import READ_ROUTES
from proxy.http.endpoints import openapi_document
from proxy.http.paths import TRIGGER_PREFIX
from proxy.http.responses import NECTOR_PREFIX
from proxy.reads.routes import ROUTES
from tests.helpers import ENVIRON, MINT_KEY, SPIN, Harness, make_settings, token, tried
from tests.servers import ProxyProcess, StandInServer, proxy_config, stand_in_for

SPEC_PATH = Path(__file__).parents[2] / "proxy" / "static" / "openapi.json"
SPEC = json.loads(SPEC_PATH.read_text())


def live_config() -> dict[str, Any]:
    return dict(
        limits={
            "per_customer": "100000/minute",
            "upstream": "100000/minute",
            "per_ip_invalid_session": "100000/minute",
        },
        triggers=[{"id": SPIN, "name": "spin-wheel"}],
        server={"metrics_on_main_port": True},
        reads={
            "routes": list(READ_ROUTES),
            "per_customer": "100000/minute",
            "budget": "50000/minute",
        },
        shopify={"shop": "tinyshop.myshopify.com"},  # theme digests on, with LIVE_ENV
    )


LIVE_ENV = {
    **ENVIRON,
    "TRIGGER_PROXY_SHOPIFY_DIGEST_SECRETS": "a-theme-digest-secret-of-32-chars-Q7",
}


# The document exactly as the live server below serves it (a test checks that it does).
SERVED = json.loads(
    openapi_document(SPEC_PATH.read_text(), make_settings(**live_config()).sessions)
)


def configure(loaded: schemathesis.BaseSchema) -> schemathesis.BaseSchema:
    # Valid requests and invalid ones: both must get an answer the document allows, never a 500.
    loaded.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    # A schema-valid request may still be refused for state: over quota (429), a key reused
    # for another request (422) or still in flight (409), a trigger not allow-listed (403).
    loaded.config.checks.positive_data_acceptance.expected_statuses = [
        "2xx", "401", "403", "404", "409", "422", "429", "5xx",
    ]  # fmt: skip
    return loaded


schema = configure(schemathesis.openapi.from_dict(SERVED))


def test_every_route_is_documented_and_nothing_else() -> None:
    documented = {(path, method.upper()) for path, ops in SPEC["paths"].items() for method in ops}
    app = create_app(make_settings())
    served = {(path, method) for path, method in app._methods.items()}
    served.add((TRIGGER_PREFIX + "{trigger}", "POST"))
    served.add((TRIGGER_PREFIX + "{trigger}", "GET"))
    for name, route in ROUTES.items():
        served.add((NECTOR_PREFIX + name + ("/{id}" if route.item else ""), "GET"))
    served.add((NECTOR_PREFIX + "coupons/{id}", "GET"))
    assert documented == served


def test_every_error_code_is_documented() -> None:
    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ProxyError)
    }
    for shape in ("Error", "NectorError"):  # the contract's, and Nector's envelope around it
        documented = SPEC["components"]["schemas"][shape]["properties"]["error"]["properties"]
        assert set(documented["code"]["enum"]) == codes, shape


async def test_the_app_serves_this_document_with_its_own_values(harness: Harness) -> None:
    served = (await harness.client.get("/openapi.json")).json()
    mint = served["paths"]["/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]
    assert mint["schema"]["properties"]["ttl_seconds"]["maximum"] == 3600
    assert served["components"]["securitySchemes"]["sessionCookie"]["name"] == "trigger_session"
    assert served["paths"].keys() == SPEC["paths"].keys()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    tmp = tmp_path_factory.mktemp("openapi")
    with StandInServer(stand_in_for(SPIN, create_customers=True)) as nector:
        config = proxy_config(nector.url, **live_config())
        with ProxyProcess(tmp, config, environ=LIVE_ENV) as proxy:
            yield proxy


def test_the_live_server_serves_the_tested_document(live: ProxyProcess) -> None:
    assert httpx.get(f"{live.base_url}/openapi.json").json() == SERVED


SESSION = token("customer-fuzz-01")


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_conforms_to_its_document(
    case: schemathesis.Case,  # type: ignore[type-arg]
    live: ProxyProcess,
) -> None:
    # A valid credential on every case: forged and missing ones have suites of their own, and
    # here they would stop every request at the session check.
    secret = MINT_KEY if case.path == "/v1/sessions" else SESSION
    headers = dict(case.headers or {})
    headers["Authorization"] = f"Bearer {secret}"
    positive = case.meta is None or not case.meta.generation.mode.is_negative
    if case.path == "/v1/triggers/{trigger}" and positive:
        case.path_parameters = {"trigger": "spin-wheel"}  # a random name is just 403
    if case.path == "/api/v2/merchant/activities" and positive and isinstance(case.body, dict):
        body: dict[str, Any] = {"trigger_id": SPIN}
        if case.body.get("customer_id"):
            body["customer_id"] = "customer-fuzz-01"
        case.body = body
    response = case.call_and_validate(base_url=live.base_url, headers=headers)
    tried("schemathesis", f"{case.method} {case.path} -> {response.status_code}")
