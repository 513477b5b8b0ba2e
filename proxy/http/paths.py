"""The proxy's paths: which route a request names, and the bounded label logs give it."""

from __future__ import annotations

import functools
from collections.abc import Callable

from proxy.http.responses import NECTOR_PREFIX

TRIGGER_PREFIX = "/v1/triggers/"
DROPIN_PATH = NECTOR_PREFIX + "activities"
CLIENT_JS_PATH = "/client/trigger-proxy.js"
WHEEL_JS_PATH = "/client/trigger-proxy-wheel.js"  # the <trigger-proxy-wheel> widget
SCRATCH_JS_PATH = "/client/trigger-proxy-scratch.js"  # the <trigger-proxy-scratch> widget
WIDGET_JS_PATH = "/client/trigger-proxy-widget.js"  # what the widgets share
# The browser scripts, each path with its file in proxy/static.
SCRIPTS = {
    path: path.rpartition("/")[2]
    for path in (CLIENT_JS_PATH, WIDGET_JS_PATH, WHEEL_JS_PATH, SCRATCH_JS_PATH)
}


_LABELS = frozenset(["/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/sessions"])
_LABELS |= set(SCRIPTS) | {"/v1/triggers", NECTOR_PREFIX + "offerredeems"}


_TRIGGER_LABEL = TRIGGER_PREFIX + "{trigger}"


def route_label(path: str, read_of: Callable[[str], str | None]) -> str:
    """A bounded label for logs: made-up paths must not become new values. ``read_of`` is
    the reads' route table (``proxy.reads.routes``), passed in so that HTTP stays below it."""
    if path.startswith(TRIGGER_PREFIX):
        return _TRIGGER_LABEL
    if path in _LABELS or path == DROPIN_PATH:
        return path
    if path.startswith(NECTOR_PREFIX):
        return _read_label(path, read_of)
    return "unknown"


@functools.lru_cache(maxsize=64)  # a few reads, asked on every page view
def _read_label(path: str, read_of: Callable[[str], str | None]) -> str:
    rest = read_of(path)
    if rest is None:
        return "unknown"
    name, item, _ = rest.partition("/")
    return NECTOR_PREFIX + name + ("/{id}" if item else "")


def permits(allowed: str, method: str) -> bool:
    """Whether ``allowed`` (one method, or several as an Allow header lists them) lets
    ``method`` in; HEAD goes wherever GET does."""
    methods = allowed.split(", ")
    return method in methods or (method == "HEAD" and "GET" in methods)
