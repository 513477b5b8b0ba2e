"""Shopify storefronts with no backend: the customer from a signed App Proxy query, or from a
digest the theme rendered (docs/shopify.md).

``AppProxyVerifier`` checks Shopify's App Proxy signature with Shopify's published recipe
(shopify.dev, "Authenticate app proxies"): every query parameter but ``signature``, decoded,
written ``key=value`` with a repeated key's values joined by ",", sorted, concatenated with no
separator; the hex HMAC-SHA256 of that, keyed with the app's secret. ``DigestVerifier`` checks
the theme's ``"<shop>:<customer id>:<ts>" | hmac_sha256: secret``. Both give the customer as
``shopify.customer_id`` names it; nothing the browser sends can name another one.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence

from proxy.errors import (
    ExpiredSession,
    InvalidSession,
    MissingSession,
    NotFromAppProxy,
    ShopNotAllowed,
)
from proxy.identity.claims import ClaimError, Session, parse_claims

# Shopify's own library refuses a timestamp further than this from its clock (shopify-app-js,
# HMAC_TIMESTAMP_PERMITTED_CLOCK_TOLERANCE_SEC); the docs name no window.
CLOCK_TOLERANCE_SECONDS = 90
# Parameters Shopify adds to the forwarded query: never a read's, never sent to Nector.
SHOPIFY_PARAMETERS = frozenset(
    ["shop", "logged_in_customer_id", "path_prefix", "timestamp", "signature"]
)
# Parsers disagree on which duplicate wins; refusing is the only safe reading.
_SINGLE = ("signature", "shop", "timestamp", "logged_in_customer_id")
_MAX_PARAMETERS = 64
_HEX_DIGITS = "0123456789abcdefABCDEF"
_HEX_BYTES = {a + b: bytes.fromhex(a + b) for a in _HEX_DIGITS for b in _HEX_DIGITS}  # "%XX"


def app_proxy_message(pairs: Sequence[tuple[str, str]]) -> bytes:
    """What Shopify signs for an App Proxy request: ``pairs`` (decoded, ``signature`` left
    out, empty values kept) as ``key=value`` strings, repeats joined by ",", sorted and
    concatenated."""
    joined: dict[str, list[str]] = {}
    for key, value in pairs:
        joined.setdefault(key, []).append(value)
    return _message({k: ",".join(v) for k, v in joined.items()})


def _message(single: dict[str, str]) -> bytes:
    """``app_proxy_message`` of parameters each given once. Sorting the whole strings is the
    Ruby reference's order."""
    return "".join(sorted([f"{k}={v}" for k, v in single.items()])).encode()


def sign_app_proxy(secret: str, pairs: Sequence[tuple[str, str]]) -> str:
    """The ``signature`` Shopify would add to a query of ``pairs`` (for tests and the demo)."""
    return hmac.new(secret.encode(), app_proxy_message(pairs), hashlib.sha256).hexdigest()


def theme_digest(secret: str, shop: str, customer_id: str, ts: int) -> str:
    """What the theme renders: ``"<shop>:<customer id>:<ts>" | hmac_sha256: secret``."""
    message = _digest_message(shop, customer_id, ts)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _digest_message(shop: str, customer_id: str, ts: int) -> bytes:
    return f"{shop}:{customer_id}:{ts}".encode()


def _customer(template: str, shopify_id: str, key_index: int) -> Session:
    """The session of Shopify customer ``shopify_id``, as ``shopify.customer_id`` names it."""
    try:
        customer = template.replace("{id}", shopify_id, 1)
        return parse_claims({"customer_id": customer}, key_index=key_index)
    except ClaimError as exc:
        raise InvalidSession("the customer id does not make a Nector customer_id") from exc


def _signed_by(keys: Sequence[hmac.HMAC], message: bytes, given: str) -> int | None:
    """The position of the key whose hex HMAC-SHA256 of ``message`` is ``given`` (compared in
    constant time); None if no key's is. ``keys`` are HMACs of no message yet, copied for
    each one: their pads are computed once, at start (as the session tokens' are)."""
    expected = given.encode("ascii", "replace")
    for index, key in enumerate(keys):
        mac = key.copy()
        mac.update(message)
        if hmac.compare_digest(mac.hexdigest().encode(), expected):
            return index
    return None


class RepeatedParameter(InvalidSession):
    """A signed query with a parameter that must be single given twice: refused, but Shopify
    signed it, so it is no forgery (a storefront link may add its own)."""


def _is_id(value: str) -> bool:
    return 0 < len(value) <= 20 and value.isascii() and value.isdigit()


class AppProxyVerifier:
    """The customer of a request Shopify forwarded through the shop's App Proxy."""

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        shop: str,
        customer_template: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = [hmac.new(s.encode(), digestmod=hashlib.sha256) for s in secrets]
        self._shop = shop
        self._template = customer_template
        self._clock = clock

    def verify(self, query: bytes) -> Session:
        """The session the signed ``query`` (raw, as the server got it) names
        (``verify_pairs``)."""
        return self.verify_pairs(parse_app_proxy_query(query)[0])

    def _signed_with_repeats(
        self, pairs: Sequence[tuple[str, str]]
    ) -> tuple[int | None, dict[str, str], str | None]:
        """``verify_pairs``'s reading of a query with a repeated parameter: the signing key's
        position (any of several signatures may be the one), the single parameters, and one
        of those that was given twice (None if none was)."""
        given: dict[str, str] = {}
        signed = []
        signatures = []
        repeated = None
        for key, value in pairs:
            if key == "signature":
                signatures.append(value)
            else:
                signed.append((key, value))
            if key in _SINGLE:
                if key in given:
                    repeated = key
                given[key] = value
        message = app_proxy_message(signed)
        for signature in signatures or [""]:
            index = _signed_by(self._keys, message, signature)
            if index is not None:
                return index, given, repeated
        return None, given, repeated

    def verify_pairs(self, pairs: Sequence[tuple[str, str]]) -> Session:
        """The session the signed query's decoded ``pairs`` name.

        Raises NotFromAppProxy (a bad or missing signature, checked first), RepeatedParameter
        (a parameter that must be single given twice, in a signed query), ShopNotAllowed
        (another shop, signed with the same app's secret), ExpiredSession (a timestamp more
        than 90 s from the clock), InvalidSession (a signed value that is not Shopify's) or
        MissingSession (no one is signed in: ``logged_in_customer_id`` empty)."""
        given = dict(pairs)
        if len(given) == len(pairs):  # nearly always: no parameter given twice
            signature = given.pop("signature", "")
            index = _signed_by(self._keys, _message(given), signature)
            repeated = None
        else:
            index, given, repeated = self._signed_with_repeats(pairs)
        # The signature comes first: only a forgery may count against the address, and an
        # unsigned duplicate is one, while a signed one is a shopper's own query on Shopify's.
        if index is None:
            raise NotFromAppProxy()
        if repeated is not None:
            raise RepeatedParameter(f"{repeated} is given twice")
        if given.get("shop") != self._shop:
            raise ShopNotAllowed()
        stamp = given.get("timestamp", "")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            raise InvalidSession("the App Proxy timestamp is not a number")
        if abs(self._clock() - int(stamp)) > CLOCK_TOLERANCE_SECONDS:
            raise ExpiredSession("the App Proxy request is too old, or the clocks disagree")
        customer = given.get("logged_in_customer_id", "")
        if not customer:
            raise MissingSession("no customer is signed in to the shop")
        if not _is_id(customer):
            raise InvalidSession("logged_in_customer_id is not a Shopify customer id")
        return _customer(self._template, customer, index)


class DigestVerifier:
    """The customer a theme's digest names (``POST /v1/sessions/shopify``)."""

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        shop: str,
        customer_template: str,
        max_age_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = [hmac.new(s.encode(), digestmod=hashlib.sha256) for s in secrets]
        self._shop = shop
        self._template = customer_template
        self._max_age = max_age_seconds
        self._clock = clock

    def verify(self, shop: str, customer_id: str, ts: int, digest: str) -> Session:
        """Raises ShopNotAllowed, InvalidSession (a wrong digest) or ExpiredSession (``ts``
        older than ``max_age_seconds`` or more than 90 s ahead)."""
        if shop != self._shop:
            raise ShopNotAllowed()
        index = _signed_by(self._keys, _digest_message(shop, customer_id, ts), digest)
        if index is None:
            raise InvalidSession("the digest is not the theme's")
        age = self._clock() - ts
        if age > self._max_age or age < -CLOCK_TOLERANCE_SECONDS:
            raise ExpiredSession("the digest is too old: reload the page")
        return _customer(self._template, customer_id, index)


def parse_app_proxy_query(query: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """The decoded parameters of a forwarded query, and the query left for the route: the raw
    parts of every parameter but Shopify's. As ``parse_qsl`` reads a query (empty values
    kept), for a fraction of its cost; a query that cannot be decoded has no parameters, so no
    signature verifies."""
    pairs = []
    rest = []
    try:
        parts = query.decode("ascii").split("&")
        if len(parts) > _MAX_PARAMETERS:
            raise ValueError("too many parameters")
        for part in parts:
            if not part:
                continue
            key, _, value = part.partition("=")
            if "%" in key or "+" in key:
                key = _unquote(key)
            if "%" in value or "+" in value:
                value = _unquote(value)
            pairs.append((key, value))
            if key not in SHOPIFY_PARAMETERS:
                rest.append(part)
    except ValueError:  # UnicodeError included
        return [], b""
    return pairs, "&".join(rest).encode()


def _unquote(text: str) -> str:
    """``_unquote_plus``, remembered for short texts: Shopify's escaped path_prefix is the same
    on every request of a shop. Bounded: 512 texts of at most 128 characters."""
    return _unquote_remembered(text) if len(text) <= 128 else _unquote_plus(text)


@functools.lru_cache(maxsize=512)
def _unquote_remembered(text: str) -> str:
    return _unquote_plus(text)


def _unquote_plus(text: str) -> str:
    """``urllib.parse.unquote_plus(text, errors="strict")`` for an ASCII ``text``, in about half
    its time: "+" a space, each ``%XX`` its byte (a ``%`` without two hex digits kept as it is),
    the bytes read as UTF-8 (UnicodeDecodeError, a ValueError, if they are not)."""
    first, *rest = text.replace("+", " ").split("%")
    if not rest:
        return first
    decoded = [first.encode()]
    for item in rest:
        byte = _HEX_BYTES.get(item[:2])
        decoded.append(byte + item[2:].encode() if byte is not None else b"%" + item.encode())
    return b"".join(decoded).decode()
