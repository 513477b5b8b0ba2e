"""Structured logs: one access line per request, audit lines for tamper attempts.

No line holds a secret, a token or a raw customer id: customers appear as a keyed hash
(HMAC with a key derived from the signing secret), which lets an operator follow one customer
across lines without the log revealing who it is.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

ACCESS = logging.getLogger("trigger_proxy.access")
AUDIT = logging.getLogger("trigger_proxy.audit")
LOG = logging.getLogger("trigger_proxy")


@dataclass(slots=True)
class AccessRecord:
    """What one request did; filled in as the request goes and logged once at the end."""

    request_id: str
    method: str
    route: str
    status: int = 0
    code: str | None = None
    trigger: str | None = None
    source: str | None = None
    customer: str | None = None
    session_refusal: str | None = None  # the code, when the session check refused it
    key_index: int | None = None
    decision: str | None = None  # the limit store's decision, when one was made
    upstream_status: int | None = None
    upstream_fault: str | None = None  # the contract code of an upstream fault
    upstream_ms: float | None = None
    replayed: bool = False
    duration_ms: float = 0.0


class CustomerHasher:
    """The customer as logs show it: a keyed hash, so lines can be joined per customer but
    not read back to the id. Cached, since one customer's requests come in runs."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"trigger-proxy.log-subject\x00" + secret.encode()).digest()
        self._cached = functools.lru_cache(maxsize=4096)(self._hash)

    def __call__(self, scope: str) -> str:
        return self._cached(scope)

    def _hash(self, scope: str) -> str:
        return hmac.new(self._key, scope.encode(), hashlib.sha256).hexdigest()[:16]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
        return json.dumps(line, separators=(",", ":"), default=str)


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = ""
        if isinstance(fields, dict):
            extra = " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return f"{stamp} {record.levelname:<7} {record.getMessage()}{extra}"


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes its lines in batches, not one write(2) per request.

    Lines go out when ``max_lines`` are waiting or ``interval`` seconds have passed since the
    last write, when ``flush()`` is called (the app calls it every ``interval`` while it runs,
    so an idle proxy's lines are not held back), and at shutdown. A crash can lose at most
    ``interval`` seconds of lines; nginx's ``access_log ... buffer=`` makes the same trade.
    """

    def __init__(self, stream: Any, *, interval: float = 0.2, max_lines: int = 256) -> None:
        super().__init__(stream)
        self.interval = interval
        self.max_lines = max_lines
        self._pending: list[str] = []
        self._last_write = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        if (
            len(self._pending) >= self.max_lines
            or time.monotonic() - self._last_write >= self.interval
        ):
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._pending:
                self.stream.write("\n".join(self._pending) + "\n")
                self._pending.clear()
            self.stream.flush()
            self._last_write = time.monotonic()


def configure(level: str, fmt: str) -> None:
    """Route the proxy's loggers to stderr in the chosen format. Tracebacks are never printed:
    an exception's text may hold data from a request."""
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    LOG.handlers[:] = [handler]
    LOG.setLevel(level.upper())
    LOG.propagate = False


def flush() -> None:
    """Write out any batched log lines."""
    for handler in LOG.handlers:
        handler.flush()


_FIELDS = AccessRecord.__slots__


def log_access(record: AccessRecord) -> None:
    if ACCESS.isEnabledFor(logging.INFO):
        # Not dataclasses.asdict: it deep-copies every value, which cost more than the
        # rest of a refusal.
        fields = {name: value for name in _FIELDS if (value := getattr(record, name)) is not None}
        _emit(ACCESS, logging.INFO, "request", fields)


def log_audit(event: str, record: AccessRecord, client_ip: str) -> None:
    fields = {
        "event": event,
        "request_id": record.request_id,
        "route": record.route,
        "trigger": record.trigger,
        "customer": record.customer,
        "client_ip": client_ip,
    }
    _emit(AUDIT, logging.WARNING, "tamper attempt refused", fields)


def _emit(logger: logging.Logger, level: int, message: str, fields: dict[str, Any]) -> None:
    """Log without ``Logger.findCaller``'s stack walk, which costs as much as the formatting
    on a request path; these lines name their source in ``logger`` already."""
    if logger.isEnabledFor(level):
        record = logger.makeRecord(logger.name, level, "", 0, message, (), None)
        record.fields = fields
        logger.handle(record)
