"""Nector's reads, made customer-scoped: which routes, which query parameters, and what each
request becomes upstream (docs/api.md, "Reads").

A read names its route by its path under ``/api/v2/merchant/`` and takes a fixed set of query
parameters, each with a checked value. Whatever names a customer (the path id of a lead,
``customer_id``, ``lead_id``) is dropped and the session's own lead or customer put in its
place; the lookups by another key (``referral_code``, ``email``, ``mobile``) are refused. The
upstream target is built from checked values only, in one normal form (parameters sorted), so
it is also the key a workspace-wide answer is cached under. Nothing here does I/O.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, urlencode

from proxy.errors import InvalidQuery, NotFound, ReadNotAllowed
from proxy.http.body import read_answer
from proxy.http.responses import NECTOR_PREFIX
from proxy.identity.claims import Session

MAX_PARAMETERS = 32
MAX_PAGE = 100  # past it a widget has nothing to show; a bound on what one customer can vary
CACHED_READ_LENGTH = 256


class Kind(enum.Enum):
    LEAD = "lead"  # the session's own lead record
    CUSTOMER = "customer"  # a list filtered by the session's lead
    COUPON = "coupon"  # one coupon, answered only if it is the session's
    WORKSPACE = "workspace"  # the same for every customer: cached and shared


def _pattern(regex: str) -> Callable[[str], str | None]:
    compiled = re.compile(regex)
    return lambda value: value if compiled.fullmatch(value) else None


def _number(high: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        # ASCII digits only ("²" is a digit to str.isdigit, not to int), and short.
        if not (value.isascii() and value.isdigit() and len(value) <= len(str(high))):
            return None
        return value if 1 <= int(value) <= high else None

    return check


def _sort_op(value: str) -> str | None:
    upper = value.upper()
    return upper if upper in ("ASC", "DESC") else None


_NAME = _pattern(r"[A-Za-z0-9_.-]{1,64}")
# Nector's widget sends ``tier=`` when the lead's tier is null or an object (querystring
# writes both as empty), and ``time_segment`` from the hour: an empty value is one it sends.
_OPTIONAL_NAME = _pattern(r"[A-Za-z0-9_.-]{0,64}")
_ITEM = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_PAGING = {
    "page": _number(MAX_PAGE),
    "limit": _number(100),
    "sort": _pattern(r"[A-Za-z_.]{1,64}"),
    "sort_op": _sort_op,
}
_CONTENT_TYPES = 16  # at most this many content_types in one query
# Parameters that name a customer: whatever the client sends, the session's own is used.
_IDENTITY = frozenset(["lead_id", "customer_id"])
# The lead lookup's other keys: a way to read someone else's lead, so refused.
_OTHER_LOOKUPS = frozenset(["referral_code", "email", "mobile"])


class Route(NamedTuple):
    kind: Kind
    item: bool  # the path names an item: route/{id}
    params: dict[str, Callable[[str], str | None]]


_LIST = Route(Kind.CUSTOMER, False, {"lead_id": _NAME, **_PAGING})
ROUTES: dict[str, Route] = {
    "leads": Route(Kind.LEAD, True, {"customer_id": _NAME}),
    "wallettransactions": _LIST,
    "coupons": _LIST,
    # The widget's referral list filters by event (``event=referral_create``).
    "activities": Route(Kind.CUSTOMER, False, {**_LIST.params, "event": _NAME}),
    "triggers": Route(Kind.WORKSPACE, False, {"lead_id": _NAME, "content_types": _NAME, **_PAGING}),
    "aggreegateddetails": Route(Kind.WORKSPACE, False, {}),
    "aggreegatedoffers": Route(
        Kind.WORKSPACE, False, {"tier": _OPTIONAL_NAME, "time_segment": _OPTIONAL_NAME}
    ),
    "offers": Route(Kind.WORKSPACE, True, {}),
    "entities": Route(Kind.WORKSPACE, True, {}),
}
_COUPON = Route(Kind.COUPON, True, {})


class Read(NamedTuple):
    """One checked read: its route, the item its path names, and its other parameters in
    normal form (the identity parameters left out)."""

    route: str
    kind: Kind
    item: str | None
    params: tuple[tuple[str, str], ...]

    def target(self, session: Session, lead: str | None) -> str:
        """The path and query sent to Nector, with the session's own customer in it.
        ``lead`` is the session's lead id: needed by every kind but WORKSPACE, and by LEAD
        only for a lead_id session (a customer_id session is looked up by its customer id)."""
        kind = self.kind
        if kind is Kind.WORKSPACE:
            return self.shared_target
        if kind is Kind.LEAD and session.subject_field == "customer_id":
            customer = _segment(session.subject)
            return f"leads/{customer}?customer_id={customer}"
        assert lead is not None
        if kind is Kind.LEAD:
            return f"leads/{_segment(lead)}"
        if kind is Kind.COUPON:
            assert self.item is not None
            return f"coupons/{quote(self.item)}"
        return f"{self.route}?" + urlencode([("lead_id", lead), *self.params])

    @property
    def shared_target(self) -> str:
        """A workspace-wide read's path and query: the same for everyone, visitors too."""
        path = self.route if self.item is None else f"{self.route}/{quote(self.item)}"
        return path + ("?" + urlencode(self.params) if self.params else "")

    @property
    def needs_lead(self) -> bool:
        return self.kind is not Kind.WORKSPACE and self.kind is not Kind.LEAD


def route_name(rest: str) -> str | None:
    """The read route a path under ``/api/v2/merchant/`` names, or None."""
    name = rest.split("/", 1)[0]
    return name if name in ROUTES else None


def read_of(path: str) -> str | None:
    """The part after ``/api/v2/merchant/`` of a read's path, or None."""
    if not path.startswith(NECTOR_PREFIX):
        return None
    rest = path[len(NECTOR_PREFIX) :]
    return rest if route_name(rest) is not None else None


@functools.lru_cache(maxsize=4096)
def _segment(value: str) -> str:
    """``value`` as one path segment; remembered, since a customer's page views repeat it."""
    return quote(value, safe="")


def parse(rest: str, query: bytes) -> Read:
    """``_parse``, remembered for short reads: a widget's page views repeat the same few, and
    a bound on the key's length keeps what an attacker's made-up ones can hold small."""
    if len(rest) + len(query) <= CACHED_READ_LENGTH:
        return _remembered(rest, query)
    return _parse(rest, query)


def _parse(rest: str, query: bytes) -> Read:
    """Check a read's path (``rest``, under ``/api/v2/merchant/``) and query string.

    Raises ``NotFound`` for a path no read has, ``ReadNotAllowed`` for a lookup by another
    customer's key, ``InvalidQuery`` for a parameter the read does not take or a bad value."""
    name, slash, item = rest.partition("/")
    route = ROUTES.get(name)
    if route is None:
        raise NotFound()
    if name == "coupons" and slash:
        route = _COUPON
    if slash and route.item and not plain_segment(item):
        raise InvalidQuery("the id must be one plain path segment")
    if "/" in item:
        raise NotFound()
    if route.item != bool(item):
        raise NotFound()
    # A lead's path id is never used (the session's is), but it is bounded like the others.
    if item and (len(item) > 128 or (route.kind is not Kind.LEAD and not _ITEM.fullmatch(item))):
        raise NotFound()
    params, customer = _params(query, route)
    kind = route.kind
    if name == "triggers" and customer:
        kind = Kind.CUSTOMER  # with lead_id the answer holds the customer's activities
    return Read(name, kind, item or None, params)


def plain_segment(item: str) -> bool:
    """An id that names one item and no other path: not empty, ``.`` or ``..`` (which Nector's
    URL would resolve to the list or the merchant root), and no slash (an encoded one arrives
    decoded)."""
    return bool(item) and item not in (".", "..") and "/" not in item


_remembered = functools.lru_cache(maxsize=1024)(_parse)


def _params(query: bytes, route: Route) -> tuple[tuple[tuple[str, str], ...], bool]:
    """The checked parameters, sorted, and whether an identity parameter was sent."""
    try:
        pairs = parse_qsl(
            query.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=bool(query),
            errors="strict",
            max_num_fields=MAX_PARAMETERS,
        )
    except ValueError as exc:  # not ASCII, a bad escape, too many fields
        raise InvalidQuery("the query string is malformed") from exc
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    customer = False
    for key, value in pairs:
        check = route.params.get(key)
        if check is None:
            if key in _OTHER_LOOKUPS and route.kind is Kind.LEAD:
                raise ReadNotAllowed("a lead is read by the session only")
            raise InvalidQuery(f"this read does not take {_shown(key)}")
        if key in _IDENTITY:
            customer = True  # replaced by the session's own
            continue
        if key in seen and key != "content_types":
            raise InvalidQuery(f"{key} is given twice")
        seen.add(key)
        checked = check(value)
        if checked is None:
            raise InvalidQuery(f"{key} has a value this read does not take")
        kept.append((key, checked))
    if sum(key == "content_types" for key, _ in kept) > _CONTENT_TYPES:
        raise InvalidQuery("too many content_types")
    return tuple(sorted(set(kept))), customer


def _shown(key: str) -> str:
    """A parameter's name as an error message may repeat it: short and plain, or not at all."""
    return repr(key) if len(key) <= 32 and key.isidentifier() else "that parameter"


def item_of(body: bytes) -> dict[str, Any]:
    """The ``data.item`` of a Nector answer, or nothing."""
    try:
        data = read_answer(body).get("data") or {}
        item = data.get("item") or {}
    except (ValueError, RecursionError, AttributeError):
        return {}
    return item if isinstance(item, dict) else {}


def lead_id_of(body: bytes) -> str | None:
    """The lead id a Nector answer about one lead names."""
    lead = item_of(body).get("_id")
    return lead if isinstance(lead, str) and lead else None
