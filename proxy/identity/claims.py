"""Session claims: who a session names, and the rules its claims follow.

Exactly one of ``customer_id`` (8-128 characters) or ``lead_id`` (a UUID); optionally
``name``, ``referral_code``, ``metadetail`` (Nector's formats), ``source`` (web, mobile, unix)
and ``exp`` (unix seconds). Any other key makes the claims invalid. How claims are signed
into a token is ``sessions.py``'s.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from proxy.config.settings import SOURCES
from proxy.errors import InvalidSource, SourceNotAllowed

DEFAULT_SOURCE = "web"

_CLAIMS = frozenset(
    {"customer_id", "lead_id", "name", "referral_code", "metadetail", "source", "exp"}
)
_METADETAIL = frozenset({"email", "mobile", "country", "gender", "dob"})


class ClaimError(ValueError):
    """A claim that breaks the session format; the message names the claim."""


class Session(NamedTuple):
    """A verified customer identity, as ``parse_claims`` builds it. ``key_index`` is the
    position of the verifying secret. A tuple: one is built for every token verified, and a
    frozen dataclass costs several times as much to build."""

    subject_field: str  # "customer_id" or "lead_id"
    subject: str
    name: str | None
    referral_code: str | None
    metadetail: Mapping[str, str] | None
    source: str | None
    expires_at: int | None
    key_index: int
    scope: str  # "<subject_field>:<subject>": names the customer in limit and idempotency keys


def _string(claims: Mapping[str, Any], key: str, low: int, high: int) -> str | None:
    # A claim that is present must be of its type: null is not "absent" (Nector, too,
    # checks types strictly).
    if key not in claims:
        return None
    value = claims[key]
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise ClaimError(f"{key} must be a string of {low}-{high} characters")
    return value


def _check_uuid(key: str, value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError as exc:
        raise ClaimError(f"{key} must be a UUID") from exc
    return value


# Spelled out rather than \s, which means different things in Python and in the JSON Schema
# regex dialect the OpenAPI document uses.
_EMAIL = re.compile(r"^[^@ \t\r\n]+@[^@ \t\r\n]+$")
_COUNTRY = re.compile(r"^[a-z]{3}$")
_MOBILE = re.compile(r"^\+?[0-9]{4,15}$")
_DOB = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _metadetail(claims: Mapping[str, Any]) -> dict[str, str] | None:
    if "metadetail" not in claims:
        return None
    value = claims["metadetail"]
    if not isinstance(value, Mapping):
        raise ClaimError("metadetail must be an object")
    unknown = set(value) - _METADETAIL
    if unknown:
        raise ClaimError(f"metadetail.{sorted(unknown)[0]} is not a known field")
    if not all(isinstance(v, str) for v in value.values()):
        raise ClaimError("metadetail values must be strings")
    if "email" in value and (len(value["email"]) > 254 or not _EMAIL.match(value["email"])):
        raise ClaimError("metadetail.email is not an email address")
    if "mobile" in value:
        if not 4 <= len(value["mobile"]) <= 15 or not _MOBILE.match(value["mobile"]):
            raise ClaimError("metadetail.mobile must be 4-15 digits")
        if "country" not in value:
            raise ClaimError("metadetail.country is required when metadetail.mobile is given")
    if "country" in value and not _COUNTRY.match(value["country"]):
        raise ClaimError("metadetail.country must be 3 lowercase letters, e.g. 'usa'")
    if "gender" in value and value["gender"] not in ("male", "female", "other"):
        raise ClaimError("metadetail.gender must be male, female or other")
    if "dob" in value:
        try:
            if not _DOB.match(value["dob"]):
                raise ValueError
            datetime.date.fromisoformat(value["dob"])
        except ValueError as exc:
            raise ClaimError("metadetail.dob must be a date YYYY-MM-DD") from exc
    return dict(value)


def parse_claims(claims: object, *, key_index: int = 0) -> Session:
    """Validate a claims object and return the ``Session`` it describes.

    Raises ``ClaimError`` naming the first claim that is wrong.
    """
    if type(claims) is dict and len(claims) == 1:  # nearly every token: a customer_id alone
        subject = claims.get("customer_id")
        if type(subject) is str and 8 <= len(subject) <= 128:
            scope = "customer_id:" + subject
            return Session("customer_id", subject, None, None, None, None, None, key_index, scope)
    if not isinstance(claims, Mapping):
        raise ClaimError("the claims must be a JSON object")
    unknown = set(claims) - _CLAIMS
    if unknown:
        raise ClaimError(f"{sorted(unknown)[0]} is not a session claim")
    customer_id = _string(claims, "customer_id", 8, 128)
    lead_id = _string(claims, "lead_id", 1, 64)
    if (customer_id is None) == (lead_id is None):
        raise ClaimError("exactly one of customer_id or lead_id is required")
    source = claims.get("source")
    if "source" in claims and source not in SOURCES:
        raise ClaimError("source must be one of web, mobile, unix")
    exp = claims.get("exp")
    if "exp" in claims and (isinstance(exp, bool) or not isinstance(exp, int)):
        raise ClaimError("exp must be an integer (unix seconds)")
    subject_field, subject = (
        ("customer_id", customer_id) if customer_id is not None else ("lead_id", lead_id)
    )
    if lead_id is not None:
        _check_uuid("lead_id", lead_id)
    assert subject is not None
    return Session(
        subject_field=subject_field,
        subject=subject,
        name=_string(claims, "name", 1, 128),
        referral_code=_string(claims, "referral_code", 1, 128),
        metadetail=_metadetail(claims),
        source=source,
        expires_at=exp,
        key_index=key_index,
        scope=f"{subject_field}:{subject}",
    )


def resolve_source(header: str | None, session: Session, allowed: frozenset[str]) -> str:
    """The x-source sent upstream: the session's claim if it has one, else the header.

    A header is only a hint: it must be one of the three values, must agree with a signed
    claim, and the result must be ``allowed`` (the trigger's sources).
    """
    if header is not None and header not in SOURCES:
        raise InvalidSource()
    if session.source is not None:
        if header is not None and header != session.source:
            raise SourceNotAllowed("X-Source differs from the session's source")
        source = session.source
    else:
        source = header or DEFAULT_SOURCE
    if source not in allowed:
        raise SourceNotAllowed()
    return source
