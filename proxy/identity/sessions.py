"""Signed customer sessions: the only source of who the customer is.

A token is ``itsdangerous.URLSafeTimedSerializer(secrets, salt=SALT)`` output with the
library's defaults (HMAC-SHA1, django-concat key derivation, compact JSON, zlib when shorter)
for a JSON object of the claims below. docs/sessions.md describes the format byte by byte with
test vectors, so a merchant backend in any language can mint tokens.

The claims and their rules are ``claims.py``'s; this module signs and verifies them.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import re
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from proxy.config.settings import MIN_SECRET_LENGTH
from proxy.errors import ExpiredSession, InvalidSession
from proxy.http.body import refuse_duplicates
from proxy.identity.claims import ClaimError, Session, parse_claims
from proxy.limits.bounded import drop_oldest

SALT = "trigger-proxy.session"
MAX_TOKEN_LENGTH = 4096
MAX_CLAIMS_BYTES = 65536  # a compressed payload is refused if it inflates past this
# Remembered verified tokens: as many as a busy minute's customers, and no more than the memory
# benchmark's bound allows (bench/README.md, the memory group).
VERIFIED_CACHE_SIZE = 4096
Clock = Callable[[], float]


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _unb64(text: str) -> bytes:
    """base64url without padding, as itsdangerous writes it (binascii.Error, a ValueError, if
    it is not). base64.urlsafe_b64decode's steps, without its Python layers."""
    return binascii.a2b_base64(
        (text + "=" * (-len(text) % 4)).encode("ascii").translate(_FROM_URLSAFE)
    )


def _b64(data: bytes) -> bytes:
    """base64url without padding, as itsdangerous writes signatures."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def _load_payload(payload: str) -> Any:
    """A signed payload's claims, decoded as itsdangerous's URLSafeSerializer does (base64url
    without padding; zlib first when it starts with "."; UTF-8 JSON), without its layers of
    wrappers. Decompression stops at MAX_CLAIMS_BYTES."""
    compressed = payload.startswith(".")
    data = _unb64(payload[1:] if compressed else payload)
    if compressed:
        inflate = zlib.decompressobj()
        data = inflate.decompress(data, MAX_CLAIMS_BYTES)
        if inflate.unconsumed_tail or not inflate.eof:
            raise ValueError("the claims are too large or cut short")
    # orjson reads strict UTF-8 JSON as json.loads(data.decode("utf-8")) does; what it refuses
    # beyond that (NaN, integers past 64 bits, lone surrogates) no valid claims can hold.
    claims = orjson.loads(data)
    if len(_KEY_ENDS.findall(data)) > _keys(claims):
        # Perhaps a key written twice (the last would win here, another parser's the first):
        # refused, as request bodies are, once json reads each pair (only then, for speed).
        json.loads(data, object_pairs_hook=refuse_duplicates)
    return claims


_KEY_ENDS = re.compile(rb'"\s*:')  # at least one after each key (and maybe in a string)


def _keys(value: Any) -> int:
    """The object keys in a decoded claims value, nested ones included."""
    if isinstance(value, dict):
        return len(value) + sum(_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_keys(v) for v in value)
    return 0


class _ClockedSigner(TimestampSigner):
    """itsdangerous's TimestampSigner with an injectable clock (for tests and vectors)."""

    def __init__(self, *args: Any, clock: Clock = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


def _serializer(secret: str, clock: Clock) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        secret,
        salt=SALT,
        signer=_ClockedSigner,
        signer_kwargs={"clock": clock, "digest_method": hashlib.sha1},
    )


class SessionVerifier:
    """Verifies session tokens.

    ``secrets`` are oldest first: the last one signs, all of them verify, so a secret can be
    rotated in by appending it and retired by removing it later. A token older than
    ``max_age_seconds`` is refused whatever its ``exp``.
    """

    def __init__(
        self, secrets: Sequence[str], max_age_seconds: int, *, clock: Clock = time.time
    ) -> None:
        if not secrets:
            raise ValueError("at least one secret is required")
        self._max_age = max_age_seconds
        self._clock = clock
        self._verified: dict[str, tuple[Session, int, int]] = {}
        # The HMAC keys itsdangerous derives from each secret and the salt, derived once (its
        # loads() makes new signers, and derives again, on every call). Newest first, so the
        # secret that signs today's tokens is tried first.
        self._keys = [
            (
                index,
                _hmac_sha1(
                    TimestampSigner(secret, salt=SALT, digest_method=hashlib.sha1).derive_key()
                ),
            )
            for index, secret in reversed(list(enumerate(secrets)))
        ]

    def verify(self, token: str) -> Session:
        """Return the session, or raise ``InvalidSession`` / ``ExpiredSession``.

        A token that verified once is remembered (a bounded map, oldest out first): an app or
        widget sends the same token many times, and so does a flood of over-quota or replayed
        requests. Its age and ``exp`` are checked again on every use. Forged tokens are never
        remembered, so each one costs its signature check.
        """
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidSession()
        known = self._verified.get(token)
        if known is None:
            known = self._verify_signature(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                drop_oldest(self._verified, VERIFIED_CACHE_SIZE)
            self._verified[token] = known
        session, signed_at, expires = known
        now = int(self._clock())
        # The same rule as itsdangerous's max_age, and exp on top of it.
        if now >= expires or now < signed_at:
            raise ExpiredSession()
        return session

    def _verify_signature(self, token: str) -> tuple[Session, int, int]:
        """The session, when it was signed, and the second from which it is expired."""
        index = self._signing_key(token)
        if index is None:
            raise InvalidSession()
        # Signed by the secret at ``index``: what is left is decoding the timestamp and the
        # payload as itsdangerous would (its unsign() would compute the same HMAC again).
        payload, sep, stamp = token.rpartition(".")[0].rpartition(".")
        try:
            stamp_bytes = _unb64(stamp)
            if not sep or len(stamp_bytes) > 8:  # as TimestampSigner.unsign refuses them
                raise InvalidSession()
            session = parse_claims(_load_payload(payload), key_index=index)
        except (ClaimError, ValueError, zlib.error, RecursionError) as exc:
            raise InvalidSession() from exc
        signed_at = int.from_bytes(stamp_bytes, "big")
        expires = signed_at + self._max_age + 1  # itsdangerous: expired once age > max_age
        if session.expires_at is not None:
            expires = min(expires, session.expires_at)
        return session, signed_at, expires

    def _signing_key(self, token: str) -> int | None:
        """The position of the secret whose signature the token carries, or None.

        itsdangerous's signature (HMAC-SHA1 with the key its signer derives from the secret and
        the salt, base64url without padding) in one call per secret, compared in constant time
        with the token's signature as it is written. Its Signer.unsign() takes several times
        as long to refuse a forged token, and forged tokens are the flood to absorb.
        """
        value, sep, signature = token.rpartition(".")
        if not sep or not token.isascii():
            return None
        data, given = value.encode(), signature.encode()
        for index, sign in self._keys:
            if hmac.compare_digest(_b64(sign(data)), given):
                return index
        return None


def _hmac_sha1(key: bytes) -> Callable[[bytes], bytes]:
    """HMAC-SHA1 under ``key``, as a function of the message.

    OpenSSL's HMAC state after the key is kept and copied for each message, instead of
    hmac.digest() setting the key up again on every call (forged tokens are checked against
    every secret). Where the interpreter's hashlib
    has no OpenSSL HMAC object, hmac.digest() it is.
    """
    try:
        from _hashlib import hmac_new  # CPython's OpenSSL binding: private, hence the fallback

        keyed = hmac_new(key, digestmod="sha1")
    except (ImportError, ValueError, TypeError):
        return lambda message: hmac.digest(key, message, "sha1")

    def sign(message: bytes) -> bytes:
        h = keyed.copy()
        h.update(message)
        return h.digest()

    return sign


def mint_token(
    secrets: Sequence[str],
    claims: Mapping[str, Any],
    *,
    ttl_seconds: int | None = None,
    clock: Clock = time.time,
) -> str:
    """Sign ``claims`` into a session token with the newest secret (the last one).

    ``secrets`` is a list, oldest first, as the proxy is given them; a string is refused with
    ``TypeError`` (it would sign with its last character), a secret shorter than the proxy
    accepts with ``ValueError``. ``ttl_seconds`` adds an ``exp`` claim that far in the future.
    The claims are checked as the verifier will check them; ``ClaimError`` names the first
    wrong one.

    >>> mint_token(["x" * 32], {"customer_id": "customer-42"})  # doctest: +SKIP
    'eyJjdXN0b21lcl9pZCI6ImN1c3RvbWVyLTQyIn0.Z...'
    """
    if isinstance(secrets, (str, bytes)):
        raise TypeError(
            "secrets must be a list of strings, oldest first; for the environment variable "
            'use TRIGGER_PROXY_SESSION_SECRETS.split(",")'
        )
    if not secrets:
        raise ValueError("at least one secret is required")
    for secret in secrets:
        if not isinstance(secret, str) or len(secret.strip()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"every secret must be a string of at least {MIN_SECRET_LENGTH} characters, "
                "as the proxy requires"
            )
    payload = dict(claims)
    if ttl_seconds is not None:
        if ttl_seconds < 1:
            raise ClaimError("ttl_seconds must be at least 1")
        payload["exp"] = int(clock()) + ttl_seconds
    parse_claims(payload)
    return _serializer(secrets[-1].strip(), clock).dumps(payload)
