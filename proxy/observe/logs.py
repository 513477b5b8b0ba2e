"""Structured logs: one access line per request, audit lines for tamper attempts.

No line holds a secret, a token or a raw customer id: customers appear as a keyed hash
(BLAKE2b, keyed from the signing secret), which lets an operator follow one customer across
lines without the log revealing who it is.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

ACCESS = logging.getLogger("trigger_proxy.access")
AUDIT = logging.getLogger("trigger_proxy.audit")
LOG = logging.getLogger("trigger_proxy")


class AccessRecord:
    """What one request did; filled in as the request goes and logged once at the end.

    Only what was set is in the instance's ``__dict__`` (the rest reads the class's defaults),
    so the access line is that dict as it is: no per-field copy and no None to skip.
    """

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
    cause: str | None = None  # why an upstream or store fault happened: "refused", "dns", ...
    upstream_ms: float | None = None
    replayed: bool = False
    duration_ms: float = 0.0

    def __init__(self, request_id: str, method: str, route: str, client: str = "") -> None:
        self.request_id = request_id
        self.method = method
        self.route = route
        self.client = client  # the client's address: the TCP peer, or a trusted peer's XFF


def customer_hasher(secret: str) -> Callable[[str], str]:
    """The customer as logs show it: a keyed hash (BLAKE2b with a key derived from the signing
    secret), so lines can be joined per customer but not read back to the id. The last few
    thousand are remembered: a customer's requests come in runs."""
    key = hashlib.sha256(b"trigger-proxy.log-subject\x00" + secret.encode()).digest()

    @functools.lru_cache(maxsize=4096)
    def digest(scope: str) -> str:
        return hashlib.blake2b(scope.encode(), digest_size=8, key=key).hexdigest()

    return digest


class LineFormatter(logging.Formatter):
    """One line a record: compact JSON, or plain text for people (the demo).

    ``line`` takes the parts of a record directly, so that the request path's lines can skip
    the LogRecord (see ``_emit``).
    """

    def __init__(self, *, json_lines: bool) -> None:
        super().__init__()
        self._json = json_lines

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        exc_type = record.exc_info[0] if record.exc_info else None
        return self.line(
            record.created,
            record.levelname.lower(),
            record.name,
            record.getMessage(),
            fields if isinstance(fields, dict) else None,
            exc_type.__name__ if exc_type is not None else None,
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        fields: dict[str, Any] | None,
        exc_type: str | None = None,
    ) -> str:
        if not self._json:
            stamp = time.strftime("%H:%M:%S", time.localtime(created))
            extra = ""
            if fields:
                extra = " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
            return f"{stamp} {level.upper():<7} {message}{extra}"
        if exc_type is not None:
            fields = {**(fields or {}), "exc_type": exc_type}
        # orjson, since a line is paid on every request; the line's fixed head is encoded
        # once, and the fields are written after it as they are. Anything that is not JSON
        # (in an exception's fields, say) is written as its str().
        rest = orjson.dumps(fields, default=str) if fields else b"{}"
        line = b'{"ts":%.3f,%b' % (created, _json_head(level, logger, message))
        return (line + (b"," + rest[1:] if len(rest) > 2 else b"}")).decode()


@functools.lru_cache(maxsize=256)
def _json_head(level: str, logger: str, message: str) -> bytes:
    """``"level":...,"logger":...,"msg":...`` of a JSON line."""
    return orjson.dumps({"level": level, "logger": logger, "msg": message})[1:-1]


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
        self.write_line(line)

    def write_line(self, line: str) -> None:
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
    formatter = LineFormatter(json_lines=fmt == "json")
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    LOG.handlers[:] = [handler]
    LOG.setLevel(level.upper())
    LOG.propagate = False
    # The server's own lines (uvicorn.error: startup, protocol warnings) in the same format
    # and stream, not as plain text beside JSON.
    server = logging.getLogger("uvicorn")
    server.handlers[:] = [handler]
    server.setLevel(max(logging.WARNING, LOG.level))
    server.propagate = False
    errors = logging.getLogger("uvicorn.error")  # whatever an earlier config set on it
    errors.handlers[:] = []
    errors.setLevel(logging.NOTSET)
    errors.propagate = True


def configure_if_unset(level: str, fmt: str) -> None:
    """Mounted in an app that configured no logging, the proxy's lines would vanish (Python's
    last-resort handler prints warnings only): then they go to stderr as ``serve`` writes them.
    Where the parent configured logging (a root handler, or the proxy's logger), it decides."""
    if LOG.handlers or logging.getLogger().handlers:
        return
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter(json_lines=fmt == "json"))
    LOG.handlers[:] = [handler]
    LOG.setLevel(level.upper())
    LOG.propagate = False


def flush() -> None:
    """Write out any batched log lines."""
    for handler in LOG.handlers:
        handler.flush()


class RequestLog:
    """The access line of every request and the audit lines of tamper attempts.

    Where ``configure()`` has set the proxy's own handler up (``serve``), a line is formatted
    and queued on that handler alone, directly: a LogRecord (and Logger.findCaller's stack
    walk) cost more than the rest of a refusal, and these lines name their source in ``logger``
    already. Elsewhere (an embedding app's own logging) lines go through ``logging``. Which one
    is decided when the app is built.
    """

    def __init__(self) -> None:
        self._direct: tuple[BatchingStreamHandler, LineFormatter] | None = None
        for handler in LOG.handlers:
            formatter = handler.formatter
            if isinstance(handler, BatchingStreamHandler) and isinstance(formatter, LineFormatter):
                self._direct = (handler, formatter)
                break

    def access(self, record: AccessRecord) -> None:
        level = logging.INFO
        # Membership, not a call, for the refusals that make up most requests.
        if record.code in _FAULT_CODES or record.upstream_status is not None:
            level = fault_level(record)
        self._emit(ACCESS, level, "request", vars(record))

    def audit(self, event: str, record: AccessRecord, client_ip: str, suppressed: int = 0) -> None:
        """An audit line; ``suppressed`` counts the like events left out before it."""
        fields: dict[str, Any] = {
            "event": event,
            "request_id": record.request_id,
            "route": record.route,
            "trigger": record.trigger,
            "customer": record.customer,
            "client_ip": client_ip,
        }
        if suppressed:
            fields["suppressed"] = suppressed
        self._emit(AUDIT, logging.WARNING, "tamper attempt refused", fields)

    def _emit(
        self, logger: logging.Logger, level: int, message: str, fields: dict[str, Any]
    ) -> None:
        """Log one request line. ``fields`` is copied, never kept."""
        if not logger.isEnabledFor(level):
            return
        if self._direct is not None:
            handler, formatter = self._direct
            name = _LEVEL_NAMES[level]
            handler.write_line(formatter.line(time.time(), name, logger.name, message, fields))
            return
        record = logger.makeRecord(logger.name, level, "", 0, message, (), None)
        record.fields = dict(fields)
        logger.handle(record)


_LEVEL_NAMES = {logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}


_OPERATOR_FAULTS = frozenset({"storage_unavailable", "upstream_rejected"})
# Codes a failing dependency answers with (the upstream's faults, the store down).
_FAULT_CODES = _OPERATOR_FAULTS | {"upstream_error", "upstream_timeout", "upstream_busy"}


def fault_level(record: AccessRecord) -> int:
    """A request's access line is a WARNING when a dependency failed it (Nector timing out,
    refusing or erring), an ERROR when nothing can succeed until an operator acts (the limit
    store down, Nector refusing the key); refusals of the client's own doing stay INFO."""
    if record.code in _OPERATOR_FAULTS or record.upstream_status in (401, 403):
        return logging.ERROR
    if record.upstream_fault is not None or (record.upstream_status or 0) >= 500:
        return logging.WARNING
    return logging.WARNING if record.upstream_status == 429 else logging.INFO
