"""Session tokens: verification, rotation, expiry, claims, and the documented format."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from proxy.errors import ExpiredSession, InvalidSession
from proxy.identity.claims import ClaimError, parse_claims
from proxy.identity.sessions import SALT, SessionVerifier, mint_token
from tests.helpers import Clock

VECTORS = json.loads((Path(__file__).parents[2] / "docs/session-token-vectors.json").read_text())
DOC = (Path(__file__).parents[2] / "docs/sessions.md").read_text()
OLD = "an-old-signing-secret-of-32-chars-or-more"
NEW = "the-new-signing-secret-of-32-chars-or-more"
T0 = 1_767_225_600


def verifier(
    clock: Clock, secrets: list[str] | None = None, max_age: int = 3600
) -> SessionVerifier:
    return SessionVerifier(secrets or [OLD, NEW], max_age, clock=clock)


def test_round_trip_gives_the_claims_back() -> None:
    clock = Clock(T0)
    tok = mint_token([OLD, NEW], {"customer_id": "customer-1", "name": "Ada"}, clock=clock)
    session = verifier(clock).verify(tok)
    assert (session.subject_field, session.subject, session.name) == (
        "customer_id",
        "customer-1",
        "Ada",
    )
    assert session.key_index == 1  # the newest secret signs


def test_every_listed_secret_verifies_and_reports_its_position() -> None:
    clock = Clock(T0)
    old_token = mint_token([OLD], {"customer_id": "customer-1"}, clock=clock)
    assert verifier(clock).verify(old_token).key_index == 0


def test_a_removed_secret_no_longer_verifies() -> None:
    clock = Clock(T0)
    old_token = mint_token([OLD], {"customer_id": "customer-1"}, clock=clock)
    with pytest.raises(InvalidSession) as info:
        verifier(clock, [NEW]).verify(old_token)
    assert not isinstance(info.value, ExpiredSession)


def test_max_age_is_enforced_at_the_second() -> None:
    clock = Clock(T0)
    tok = mint_token([NEW], {"customer_id": "customer-1"}, clock=clock)
    clock.now = T0 + 3600
    verifier(clock).verify(tok)
    clock.now = T0 + 3601
    with pytest.raises(ExpiredSession):
        verifier(clock).verify(tok)


def test_max_age_applies_whatever_exp_says() -> None:
    clock = Clock(T0)
    tok = mint_token([NEW], {"customer_id": "customer-1", "exp": T0 + 10 * 86400}, clock=clock)
    clock.now = T0 + 7200
    with pytest.raises(ExpiredSession):
        verifier(clock).verify(tok)


def test_exp_is_refused_from_its_second_on() -> None:
    clock = Clock(T0)
    tok = mint_token([NEW], {"customer_id": "customer-1"}, ttl_seconds=60, clock=clock)
    clock.now = T0 + 59
    assert verifier(clock).verify(tok).expires_at == T0 + 60
    clock.now = T0 + 60
    with pytest.raises(ExpiredSession):
        verifier(clock).verify(tok)


@pytest.mark.parametrize(
    "tampered",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: "eyJjdXN0b21lcl9pZCI6ImF0dGFja2VyLTAwMSJ9" + t[t.index(".") :],
        lambda t: t.replace(".", "", 1),
        lambda t: "",
        lambda t: "x" * 5000,
    ],
)
def test_tampered_tokens_are_invalid(tampered: Callable[[str], str]) -> None:
    clock = Clock(T0)
    tok = mint_token([NEW], {"customer_id": "customer-1"}, clock=clock)
    with pytest.raises(InvalidSession):
        verifier(clock).verify(tampered(tok))


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({}, "exactly one"),
        (
            {"customer_id": "customer-1", "lead_id": "2b7e1516-28ae-4d2a-a6f7-15887e09cf4f"},
            "exactly one",
        ),
        ({"customer_id": "short"}, "customer_id"),
        ({"customer_id": "x" * 129}, "customer_id"),
        ({"customer_id": 12345678}, "customer_id"),
        ({"lead_id": "not-a-uuid"}, "lead_id"),
        ({"customer_id": "customer-1", "role": "admin"}, "role"),
        ({"customer_id": "customer-1", "source": "desktop"}, "source"),
        ({"customer_id": "customer-1", "exp": "soon"}, "exp"),
        ({"customer_id": "customer-1", "exp": True}, "exp"),
        ({"customer_id": "customer-1", "source": None}, "source"),
        ({"customer_id": "customer-1", "name": None}, "name"),
        ({"customer_id": "customer-1", "metadetail": None}, "metadetail"),
        ({"customer_id": None}, "customer_id"),
        ({"customer_id": "customer-1", "metadetail": {"mobile": "5551234"}}, "country"),
        ({"customer_id": "customer-1", "metadetail": {"country": "USA"}}, "country"),
        ({"customer_id": "customer-1", "metadetail": {"gender": "x"}}, "gender"),
        ({"customer_id": "customer-1", "metadetail": {"dob": "1990-02-30"}}, "dob"),
        ({"customer_id": "customer-1", "metadetail": {"email": "no-at-sign"}}, "email"),
        ({"customer_id": "customer-1", "metadetail": {"coins": "5"}}, "coins"),
        (
            {"customer_id": "customer-1", "metadetail": {"mobile": 5551234, "country": "usa"}},
            "strings",
        ),
    ],
)
def test_claims_are_checked_and_the_error_names_the_claim(
    claims: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ClaimError, match=problem):
        parse_claims(claims)
    with pytest.raises(ClaimError):
        mint_token([NEW], claims)


def test_the_vectors_are_what_mint_token_produces() -> None:
    for vector in VECTORS["vectors"]:
        minted = mint_token(
            [VECTORS["secret"]], vector["claims"], clock=lambda: VECTORS["timestamp"]
        )
        assert minted == vector["token"]


def test_the_vectors_verify() -> None:
    clock = Clock(VECTORS["timestamp"] + 5)
    check = SessionVerifier([VECTORS["secret"]], 3600, clock=clock)
    for vector in VECTORS["vectors"]:
        session = check.verify(vector["token"])
        assert session.subject == vector["claims"].get(
            "customer_id", vector["claims"].get("lead_id")
        )


def test_the_vectors_are_in_the_docs() -> None:
    assert VECTORS["salt"] == SALT
    for vector in VECTORS["vectors"][:2]:
        assert vector["token"] in DOC
    assert VECTORS["secret"] in DOC


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def independent_mint(secret: str, salt: str, timestamp: int, claims: dict[str, Any]) -> str:
    """The format exactly as docs/sessions.md describes it, with no itsdangerous."""
    raw = json.dumps(claims, separators=(",", ":")).encode()
    compressed = zlib.compress(raw)
    payload = "." + _b64(compressed) if len(compressed) < len(raw) - 1 else _b64(raw)
    stamp = _b64(timestamp.to_bytes((timestamp.bit_length() + 7) // 8, "big"))
    key = hashlib.sha1(salt.encode() + b"signer" + secret.encode()).digest()  # noqa: S324
    signed = f"{payload}.{stamp}"
    signature = _b64(hmac.new(key, signed.encode(), hashlib.sha1).digest())
    return f"{signed}.{signature}"


def test_the_documented_format_reproduces_every_vector() -> None:
    for vector in VECTORS["vectors"]:
        token = independent_mint(
            VECTORS["secret"], VECTORS["salt"], VECTORS["timestamp"], vector["claims"]
        )
        assert token == vector["token"]


def test_a_remembered_token_still_expires_by_age_and_by_exp() -> None:
    clock = Clock(T0)
    check = verifier(clock)
    aged = mint_token([NEW], {"customer_id": "customer-1"}, clock=clock)
    short = mint_token([NEW], {"customer_id": "customer-2"}, ttl_seconds=60, clock=clock)
    check.verify(aged)
    check.verify(short)
    clock.now = T0 + 60
    with pytest.raises(ExpiredSession):
        check.verify(short)
    check.verify(aged)
    clock.now = T0 + 3601
    with pytest.raises(ExpiredSession):
        check.verify(aged)


def test_forged_tokens_are_never_remembered_and_the_memory_is_bounded() -> None:
    from proxy.identity.sessions import VERIFIED_CACHE_SIZE

    clock = Clock(T0)
    check = verifier(clock)
    for i in range(200):
        with pytest.raises(InvalidSession):
            check.verify(f"forged-{i}.aVW5AA.signature")
    assert check._verified == {}
    tokens = [
        mint_token([NEW], {"customer_id": f"customer-{i:05}"}, clock=clock)
        for i in range(VERIFIED_CACHE_SIZE + 50)
    ]
    for tok in tokens:
        check.verify(tok)
    # At the bound the oldest eighth goes at once (bounded.drop_oldest).
    assert len(check._verified) == VERIFIED_CACHE_SIZE - VERIFIED_CACHE_SIZE // 8 + 50
    assert tokens[0] not in check._verified
    assert tokens[-1] in check._verified
    for tok in tokens:  # never more than the bound, however many come
        check.verify(tok)
        assert len(check._verified) <= VERIFIED_CACHE_SIZE


def test_the_quick_signature_check_agrees_with_itsdangerous() -> None:
    """Forged tokens are refused by one HMAC per secret before itsdangerous is asked; that
    check must never refuse a token itsdangerous accepts, nor pick another secret."""
    from itsdangerous import BadSignature, URLSafeTimedSerializer

    clock = Clock(T0)
    check = verifier(clock)
    claims = {"customer_id": "customer-1"}
    tokens = {
        "old": (mint_token([OLD], claims, clock=clock), 0),
        "new": (mint_token([OLD, NEW], claims, clock=clock), 1),
        "other secret": (mint_token(["x" * 40], claims, clock=clock), None),
        "other salt": (URLSafeTimedSerializer(NEW, salt="other").dumps(claims), None),
    }
    new = tokens["new"][0]
    for i in range(1, 28):  # every character of the signature, changed
        changed = new[:-i] + ("A" if new[-i] != "A" else "B") + new[len(new) - i + 1 :]
        tokens[f"signature char -{i}"] = (changed, None)
    for name, (tok, index) in tokens.items():
        assert check._signing_key(tok) == index, name
        accepted = []
        for position, secret in enumerate([OLD, NEW]):
            try:
                URLSafeTimedSerializer(secret, salt=SALT).loads(tok)
                accepted.append(position)
            except BadSignature:
                pass
        if index is not None:
            assert index in accepted, name
        elif accepted:
            # Only a signature spelled in non-canonical base64 (the same bytes, other unused
            # bits in its last character) passes itsdangerous and not the quick check.
            assert name == "signature char -1", name


@pytest.mark.parametrize(
    "value",
    [
        b"eyJjdXN0b21lcl9pZCI6ImN1c3RvbWVyLTEifQ",  # no timestamp
        b"eyJjdXN0b21lcl9pZCI6ImN1c3RvbWVyLTEifQ.*not-base64*",
        b"bm90IGpzb24.aVW5AA",  # not JSON
        b"WzEsMl0.aVW5AA",  # JSON, not an object
        b".eyJjdXN0b21lcl9pZCI6ImN1c3RvbWVyLTEifQ.aVW5AA",  # "compressed", not zlib
        # compressed claims inflating past MAX_CLAIMS_BYTES (a 96 KB name in 120 bytes)
        b"."
        + base64.urlsafe_b64encode(
            zlib.compress(b'{"customer_id":"customer-1","name":"' + b"x" * 96_000 + b'"}')
        ).rstrip(b"=")
        + b".aVW5AA",
        # a zlib stream cut short
        b"."
        + base64.urlsafe_b64encode(zlib.compress(b'{"customer_id":"customer-1"}')[:-6]).rstrip(b"=")
        + b".aVW5AA",
    ],
)
def test_a_correctly_signed_malformed_token_is_invalid(value: bytes) -> None:
    """The payload is decoded by the proxy itself (sessions._load_payload), as itsdangerous
    would: whatever that refuses is invalid, however well signed."""
    from itsdangerous import Signer

    tok = Signer(NEW, salt=SALT, digest_method=hashlib.sha1).sign(value).decode()
    with pytest.raises(InvalidSession):
        verifier(Clock(T0)).verify(tok)


def test_compressed_claims_are_read_as_itsdangerous_writes_them() -> None:
    clock = Clock(T0)
    claims = {"customer_id": "c" * 100, "name": "Ada " * 30, "referral_code": "r" * 100}
    tok = mint_token([NEW], claims, clock=clock)
    assert tok.startswith(".")  # itsdangerous compressed it
    session = verifier(clock).verify(tok)
    assert (session.subject, session.name, session.referral_code) == (
        claims["customer_id"],
        claims["name"],
        claims["referral_code"],
    )


def test_compressed_claims_stop_inflating_at_the_bound() -> None:
    from proxy.identity.sessions import MAX_CLAIMS_BYTES, _load_payload

    def packed(raw: bytes) -> str:
        return "." + base64.urlsafe_b64encode(zlib.compress(raw)).rstrip(b"=").decode()

    inside = b'{"customer_id":"customer-1","pad":"' + b"x" * (MAX_CLAIMS_BYTES - 100) + b'"}'
    assert _load_payload(packed(inside))["customer_id"] == "customer-1"
    with pytest.raises(ValueError, match="too large"):
        _load_payload(packed(inside + b" " * 200))


def test_the_usual_claims_take_a_short_path_to_the_same_session() -> None:
    """A customer_id alone (nearly every token) skips the general checks: the session must be
    the one they give (a mapping that is not a dict takes the general path)."""
    from types import MappingProxyType

    for claims in ({"customer_id": "customer-0001"}, {"customer_id": "c" * 128}):
        short = parse_claims(claims, key_index=1)
        assert short == parse_claims(MappingProxyType(claims), key_index=1)
        assert short.scope == "customer_id:" + claims["customer_id"]
    for bad in ({"customer_id": "short"}, {"customer_id": 12345678}, {"customer_id": "c" * 129}):
        with pytest.raises(ClaimError):
            parse_claims(bad)


@pytest.mark.parametrize("openssl", [True, False], ids=["copied OpenSSL state", "hmac.digest"])
def test_the_signature_is_hmac_sha1_with_or_without_openssls_hmac_object(
    openssl: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import _hashlib

    from proxy.identity.sessions import _hmac_sha1

    if not openssl:  # an interpreter whose hashlib has no OpenSSL HMAC object
        monkeypatch.delattr(_hashlib, "hmac_new")
    key = hashlib.sha256(b"derived").digest()[:20]  # as long as a derived SHA-1 key
    sign = _hmac_sha1(key)
    for message in (b"", b"payload.stamp", b"x" * 5000):
        assert sign(message) == hmac.digest(key, message, "sha1")
        assert sign(message) == sign(message)  # the kept state is never changed


def test_mint_token_refuses_a_string_where_a_list_of_secrets_belongs() -> None:
    # mint_token(os.environ["TRIGGER_PROXY_SESSION_SECRETS"], ...) would sign with the string's
    # last character, and the proxy would only ever say invalid_session.
    with pytest.raises(TypeError, match="list of strings"):
        mint_token(NEW, {"customer_id": "customer-0001"})


@pytest.mark.parametrize("secrets", [["short-secret"], [NEW, "x" * 31], [""]])
def test_mint_token_refuses_secrets_the_proxy_would_not_accept(secrets: list[str]) -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        mint_token(secrets, {"customer_id": "customer-0001"})
