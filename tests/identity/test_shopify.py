"""Shopify's App Proxy signature and the theme digest: Shopify's own vectors, and every
refusal the contract names, each of which fails without its check."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest

from proxy.errors import (
    ExpiredSession,
    InvalidSession,
    MissingSession,
    NotFromAppProxy,
    ShopNotAllowed,
)
from proxy.identity.shopify import (
    AppProxyVerifier,
    DigestVerifier,
    app_proxy_message,
    parse_app_proxy_query,
    sign_app_proxy,
    theme_digest,
)
from tests.helpers import Clock

# Shopify's published example (shopify.dev, "Authenticate app proxies"), with its secret.
VECTOR_QUERY = (
    "extra=1&extra=2&logged_in_customer_id=1&path_prefix=/apps/awesome_reviews"
    "&shop=shop-name.myshopify.com&timestamp=1317327555"
)
VECTOR_SIGNATURE = "4c68c8624d737112c91818c11017d24d334b524cb5c2b8ba08daa056f7395ddb"
# The same query with no one signed in (logged_in_customer_id= empty), signed with "hush".
ANONYMOUS_SIGNATURE = "e072b6d7e6622d85912a5214b860d3100dc1e73d9bc29f43796ac8c9ff8093cb"
VECTOR_TIME = 1317327555
SHOP = "tinyshop.myshopify.com"
APP_SECRET = "shpss_0123456789abcdef0123456789abcdef"
OLD_APP_SECRET = "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"
DIGEST_SECRET = "a-theme-digest-secret-of-32-characters-or-more"
OLD_DIGEST_SECRET = "an-older-theme-digest-secret-of-32-characters"
NOW = 1_800_000_000


def pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def test_the_message_is_shopifys_own_example() -> None:
    assert app_proxy_message(pairs(VECTOR_QUERY)) == (
        b"extra=1,2logged_in_customer_id=1path_prefix=/apps/awesome_reviews"
        b"shop=shop-name.myshopify.comtimestamp=1317327555"
    )


def test_shopifys_vector_signs_as_published() -> None:
    assert sign_app_proxy("hush", pairs(VECTOR_QUERY)) == VECTOR_SIGNATURE


def test_the_anonymous_vector_keeps_the_empty_customer_id() -> None:
    query = VECTOR_QUERY.replace("logged_in_customer_id=1", "logged_in_customer_id=")
    assert sign_app_proxy("hush", pairs(query)) == ANONYMOUS_SIGNATURE


def test_shopifys_signed_vector_verifies_as_its_customer() -> None:
    verifier = AppProxyVerifier(
        ["hush"],
        shop="shop-name.myshopify.com",
        customer_template="shopify-{id}",
        clock=Clock(VECTOR_TIME + 30),
    )
    session = verifier.verify(f"{VECTOR_QUERY}&signature={VECTOR_SIGNATURE}".encode())
    assert (session.subject_field, session.subject) == ("customer_id", "shopify-1")


def test_the_anonymous_vector_verifies_and_is_no_one() -> None:
    verifier = AppProxyVerifier(
        ["hush"],
        shop="shop-name.myshopify.com",
        customer_template="shopify-{id}",
        clock=Clock(VECTOR_TIME),
    )
    query = VECTOR_QUERY.replace("logged_in_customer_id=1", "logged_in_customer_id=")
    with pytest.raises(MissingSession):
        verifier.verify(f"{query}&signature={ANONYMOUS_SIGNATURE}".encode())


# --- one shop's requests, as Shopify forwards them ---------------------------------------


def signed(
    customer: str = "7001234",
    *,
    secret: str = APP_SECRET,
    shop: str = SHOP,
    timestamp: int = NOW,
    extra: list[tuple[str, str]] | None = None,
) -> list[tuple[str, str]]:
    params = [
        *(extra or []),
        ("shop", shop),
        ("logged_in_customer_id", customer),
        ("path_prefix", "/apps/rewards"),
        ("timestamp", str(timestamp)),
    ]
    return [*params, ("signature", sign_app_proxy(secret, params))]


def app_proxy(now: float = NOW, secrets: list[str] | None = None) -> AppProxyVerifier:
    return AppProxyVerifier(
        secrets or [OLD_APP_SECRET, APP_SECRET],
        shop=SHOP,
        customer_template="shopify-{id}",
        clock=Clock(now),
    )


def verify(params: list[tuple[str, str]], **kwargs: object) -> object:
    return app_proxy(**kwargs).verify(urlencode(params).encode())  # type: ignore[arg-type]


def test_a_signed_request_names_its_customer_by_the_template() -> None:
    session = app_proxy().verify(urlencode(signed()).encode())
    assert session.subject == "shopify-7001234"
    assert session.scope == "customer_id:shopify-7001234"
    assert session.key_index == 1


def test_the_previous_secret_still_verifies_during_rotation() -> None:
    assert app_proxy().verify(urlencode(signed(secret=OLD_APP_SECRET)).encode()).key_index == 0


def test_a_secret_no_longer_listed_does_not_verify() -> None:
    with pytest.raises(InvalidSession):
        verify(signed(secret=OLD_APP_SECRET), secrets=[APP_SECRET])


def test_the_storefronts_own_parameters_are_signed_too() -> None:
    params = signed(extra=[("page", "2"), ("limit", "10")])
    assert app_proxy().verify(urlencode(params).encode()).subject == "shopify-7001234"
    tampered = [("page", "3") if k == "page" else (k, v) for k, v in params]
    with pytest.raises(InvalidSession):
        verify(tampered)


def test_a_changed_customer_breaks_the_signature() -> None:
    params = [("logged_in_customer_id", "7009999") if k == "logged_in_customer_id" else (k, v)
              for k, v in signed()]  # fmt: skip
    with pytest.raises(InvalidSession) as info:
        verify(params)
    assert info.value.code == "invalid_session"


def test_a_missing_signature_is_invalid() -> None:
    with pytest.raises(InvalidSession) as info:
        verify([(k, v) for k, v in signed() if k != "signature"])
    assert info.value.code == "invalid_session"


def test_a_signature_for_another_secret_is_invalid() -> None:
    with pytest.raises(InvalidSession):
        verify(signed(secret="shpss_not-this-apps-secret-at-all-00000"))


@pytest.mark.parametrize("name", ["signature", "shop", "timestamp", "logged_in_customer_id"])
def test_a_single_parameter_given_twice_is_invalid(name: str) -> None:
    params = signed()
    value = dict(params)[name]
    # Signed as a repeat would be (values joined with ","), so only the duplicate rule refuses.
    unsigned = [(k, v) for k, v in params if k != "signature"]
    doubled = [*unsigned, (name, value)] if name != "signature" else unsigned
    signature = sign_app_proxy(APP_SECRET, doubled)
    query = [*doubled, ("signature", signature)]
    if name == "signature":
        query.append(("signature", signature))
    with pytest.raises(InvalidSession) as info:
        verify(query)
    assert info.value.code == "invalid_session"
    assert "twice" in str(info.value)
    assert not isinstance(info.value, NotFromAppProxy)  # Shopify signed it: not a forgery


def test_a_repeated_parameter_shopify_did_not_sign_is_a_bad_signature() -> None:
    with pytest.raises(NotFromAppProxy):
        verify([*signed(), ("logged_in_customer_id", "7009999")])


def test_other_repeated_parameters_are_joined_and_verify() -> None:
    params = signed(extra=[("content_types", "earn"), ("content_types", "social")])
    assert app_proxy().verify(urlencode(params).encode()).subject == "shopify-7001234"


def test_another_shop_of_the_same_app_is_not_allowed() -> None:
    with pytest.raises(ShopNotAllowed):
        verify(signed(shop="othershop.myshopify.com"))


@pytest.mark.parametrize("skew", [91, -91])
def test_a_timestamp_over_90_seconds_from_the_clock_has_expired(skew: int) -> None:
    with pytest.raises(ExpiredSession):
        verify(signed(timestamp=NOW - skew))


@pytest.mark.parametrize("skew", [90, -90, 0])
def test_a_timestamp_within_90_seconds_is_fresh(skew: int) -> None:
    assert app_proxy().verify(urlencode(signed(timestamp=NOW - skew)).encode())


def test_no_one_signed_in_is_a_missing_session() -> None:
    with pytest.raises(MissingSession):
        verify(signed(customer=""))


def test_a_customer_id_that_is_not_shopifys_number_is_invalid() -> None:
    with pytest.raises(InvalidSession):
        verify(signed(customer="7001234-or-anyone"))


@pytest.mark.parametrize("stamp", ["soon", "9" * 5000, "-5", ""])
def test_a_signed_timestamp_that_is_no_unix_time_is_invalid(stamp: str) -> None:
    params = [(k, v) for k, v in signed() if k not in ("timestamp", "signature")]
    params.append(("timestamp", stamp))
    params.append(("signature", sign_app_proxy(APP_SECRET, params)))
    with pytest.raises(InvalidSession) as info:
        verify(params)
    assert info.value.code == "invalid_session"


def test_a_query_that_is_not_ascii_is_invalid() -> None:
    with pytest.raises(InvalidSession):
        app_proxy().verify("shop=tinyshop.myshopify.com&x=\u00e9".encode())


def test_shopifys_parameters_are_left_out_of_the_routes_query() -> None:
    query = urlencode(signed(extra=[("page", "2"), ("sort_op", "DESC")])).encode()
    assert parse_app_proxy_query(query)[1] == b"page=2&sort_op=DESC"
    assert parse_app_proxy_query(b"sh%6Fp=x&page=1")[1] == b"page=1"
    assert parse_app_proxy_query(b"") == ([], b"")


@pytest.mark.parametrize(
    "query",
    [
        "a=1&b=&c",
        "path_prefix=%2Fapps%2Fr&x=a+b",
        "k=%E2%82%AC&&k=2",
        "=v&a==b",
        "x=%zz",
        "x=%&y=a%2&z=%2g%41%4",
        "x=+%2B+&%41=%4a%4A",
    ],
)
def test_the_query_is_decoded_as_parse_qsl_decodes_it(query: str) -> None:
    assert parse_app_proxy_query(query.encode())[0] == pairs(query)


@pytest.mark.parametrize("query", [b"x=%C3", b"x=%FF&shop=a", "x=\u00e9".encode()])
def test_a_query_that_is_not_utf8_or_ascii_has_no_parameters(query: bytes) -> None:
    assert parse_app_proxy_query(query) == ([], b"")


def test_a_query_with_too_many_parameters_has_none() -> None:
    assert parse_app_proxy_query(b"&".join([b"a=1"] * 65)) == ([], b"")


# --- theme digests ----------------------------------------------------------------------


def digests(now: float = NOW, max_age: int = 3600) -> DigestVerifier:
    return DigestVerifier(
        [OLD_DIGEST_SECRET, DIGEST_SECRET],
        shop=SHOP,
        customer_template="shopify-{id}",
        max_age_seconds=max_age,
        clock=Clock(now),
    )


def test_the_digest_is_the_liquid_hmac_sha256_of_shop_customer_and_ts() -> None:
    # Shopify's documented hmac_sha256 filter vector: 'Polyjuice' | hmac_sha256: 'Polina'.
    import hashlib
    import hmac

    liquid = hmac.new(b"Polina", b"Polyjuice", hashlib.sha256).hexdigest()
    assert liquid == "8e0d5d65cff1242a4af66c8f4a32854fd5fb80edcc8aabe9b302b29c7c71dc20"
    message = f"{SHOP}:7001234:{NOW}".encode()
    expected = hmac.new(DIGEST_SECRET.encode(), message, hashlib.sha256).hexdigest()
    assert theme_digest(DIGEST_SECRET, SHOP, "7001234", NOW) == expected


def test_a_right_digest_names_its_customer() -> None:
    digest = theme_digest(DIGEST_SECRET, SHOP, "7001234", NOW - 60)
    session = digests().verify(SHOP, "7001234", NOW - 60, digest)
    assert (session.subject, session.key_index) == ("shopify-7001234", 1)


def test_the_previous_digest_secret_still_verifies() -> None:
    digest = theme_digest(OLD_DIGEST_SECRET, SHOP, "7001234", NOW)
    assert digests().verify(SHOP, "7001234", NOW, digest).key_index == 0


@pytest.mark.parametrize(
    ("customer", "ts"), [("7009999", NOW), ("7001234", NOW - 1)], ids=["customer", "ts"]
)
def test_a_digest_for_other_values_is_invalid(customer: str, ts: int) -> None:
    digest = theme_digest(DIGEST_SECRET, SHOP, "7001234", NOW)
    with pytest.raises(InvalidSession) as info:
        digests().verify(SHOP, customer, ts, digest)
    assert info.value.code == "invalid_session"


def test_a_digest_from_another_shop_is_not_allowed() -> None:
    other = "othershop.myshopify.com"
    with pytest.raises(ShopNotAllowed):
        digests().verify(other, "7001234", NOW, theme_digest(DIGEST_SECRET, other, "7001234", NOW))


def test_a_digest_older_than_its_max_age_has_expired() -> None:
    ts = NOW - 3601
    digest = theme_digest(DIGEST_SECRET, SHOP, "7001234", ts)
    with pytest.raises(ExpiredSession):
        digests().verify(SHOP, "7001234", ts, digest)
    assert digests().verify(
        SHOP, "7001234", ts + 1, theme_digest(DIGEST_SECRET, SHOP, "7001234", ts + 1)
    )


def test_a_digest_more_than_90_seconds_ahead_has_expired() -> None:
    ahead = theme_digest(DIGEST_SECRET, SHOP, "7001234", NOW + 91)
    with pytest.raises(ExpiredSession):
        digests().verify(SHOP, "7001234", NOW + 91, ahead)
    near = theme_digest(DIGEST_SECRET, SHOP, "7001234", NOW + 90)
    assert digests().verify(SHOP, "7001234", NOW + 90, near)
