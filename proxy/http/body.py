"""Request bodies as JSON: one rule for every object the proxy parses (no key twice, no NaN),
and a request body read as one object; and Nector's answers read for a field."""

from __future__ import annotations

import json
from typing import Any

import orjson

from proxy.errors import InvalidBody, InvalidJSON


def refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A ``json.loads`` object hook that refuses a key written twice: parsers disagree on which
    duplicate wins, so refusing is the only safe reading (request bodies and claims alike)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body: empty means ``{}``; anything else must be one JSON object."""
    if raw == b"{}" or not raw.strip():
        return {}
    try:
        value = json.loads(
            raw, object_pairs_hook=refuse_duplicates, parse_constant=_refuse_constant
        )
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidJSON() from exc
    if not isinstance(value, dict):
        raise InvalidBody()
    return value


def read_answer(raw: bytes) -> Any:
    """A Nector answer's JSON, to read a field of it: by orjson, which is several times faster,
    and by json.loads what orjson refuses (NaN; a body not in UTF-8). Raises ``ValueError``,
    or ``RecursionError`` for one nested past the stdlib's depth."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
