"""The proxy's paths: which route a request names, and the bounded label logs give it."""

from __future__ import annotations

import functools

from .reads import route_name
from .responses import NECTOR_PREFIX

TRIGGER_PREFIX = "/v1/triggers/"
DROPIN_PATH = NECTOR_PREFIX + "activities"
CLIENT_JS_PATH = "/client/trigger-proxy.js"
WHEEL_JS_PATH = "/client/trigger-proxy-wheel.js"  # the <trigger-proxy-wheel> widget


def read_of(path: str) -> str | None:
    """The part after ``/api/v2/merchant/`` of a read's path (``reads.py``), or None."""
    if not path.startswith(NECTOR_PREFIX):
        return None
    rest = path[len(NECTOR_PREFIX) :]
    return rest if route_name(rest) is not None else None


_LABELS = frozenset(["/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/sessions"])
_LABELS |= {CLIENT_JS_PATH, WHEEL_JS_PATH}


def route_label(path: str) -> str:
    """A bounded label for logs: made-up paths must not become new values. Remembered for
    short paths (most requests name one of a few), so made-up ones cannot hold much."""
    return _remembered(path) if len(path) <= 256 else _label(path)


def _label(path: str) -> str:
    if path.startswith(TRIGGER_PREFIX):
        return TRIGGER_PREFIX + "{trigger}"
    if path in _LABELS or path == DROPIN_PATH:
        return path
    rest = read_of(path)
    if rest is not None:
        name, item, _ = rest.partition("/")
        return NECTOR_PREFIX + name + ("/{id}" if item else "")
    return "unknown"


_remembered = functools.lru_cache(maxsize=1024)(_label)


def permits(allowed: str, method: str) -> bool:
    """Whether ``allowed`` (one method, or several as an Allow header lists them) lets
    ``method`` in; HEAD goes wherever GET does."""
    methods = allowed.split(", ")
    return method in methods or (method == "HEAD" and "GET" in methods)
