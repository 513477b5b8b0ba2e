"""The ``triggers`` read, cut to the allow-list: a trigger the proxy would refuse must not get
a button in Nector's widget (its ways to earn) that then fails with trigger_not_allowed."""

from __future__ import annotations

import json
from collections.abc import Set


def allow_listed_only(body: bytes, allowed: Set[str]) -> bytes:
    """Nector's ``triggers`` answer with only the allow-listed ``data.items`` (and ``count``
    the number kept); a body of another shape is returned as it came."""
    try:
        answer = json.loads(body)
        data = answer["data"]
        items = data["items"]
    except (ValueError, KeyError, TypeError):
        return body
    if not isinstance(items, list):
        return body
    kept = [x for x in items if isinstance(x, dict) and str(x.get("_id", "")).lower() in allowed]
    data["items"] = kept
    data["count"] = len(kept)
    return json.dumps(answer, separators=(",", ":")).encode()
