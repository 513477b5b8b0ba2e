"""What ``limits.storage_url`` may be: a scheme the store opens, and only options it takes."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

SCHEMES = ("memory", "redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")


def storage_url_problem(url: str) -> str | None:
    """Why the store could not open ``url``, or None if it could."""
    try:
        parts = urlsplit(url)
    except ValueError:  # urlsplit's message is not shown: it may quote the URL's password
        return "is not a URL (a '[' or ']' out of place?): memory://, redis://host:port/db, ..."
    if parts.scheme not in SCHEMES:
        return "must be memory://, redis://host:port/db or redis+sentinel://host:port/service"
    if parts.scheme.endswith("+sentinel"):
        if not parts.path.strip("/"):
            return "names no service: redis+sentinel://host:port/<service>[/db]"
        unknown = sorted(set(parse_qs(parts.query)) - {"sentinel_password"})
        if unknown:
            return f"takes no option {unknown[0]!r} (only sentinel_password)"
    elif parts.scheme != "memory":
        return _redis_problem(url)
    return None


def _redis_problem(url: str) -> str | None:
    """Build (never connect) the connection the store would make, so that an option redis-py
    does not take fails in the config's check rather than in every worker's start."""
    import redis.asyncio

    try:
        pool = redis.asyncio.ConnectionPool.from_url(url)
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:  # an option no connection takes
        name = re.search(r"argument '(\w+)'", str(exc))
        return f"takes no option {name[1] if name else ''!r} (redis-py's from_url lists them)"
    except ValueError as exc:  # an option's value; the message is not shown, it may hold the URL
        name = re.search(r"for '(\w+)'", str(exc))
        return f"has a value for {name[1] if name else 'an option'!r} that redis-py refuses"
    return None


def display_url(url: str) -> str:
    """``url`` as it may be shown: any userinfo, and the value of every query parameter whose
    name mentions a password, a secret, a token or auth (``password``, ``sentinel_password``,
    ...: redis-py takes several), replaced by ``***``; a URL that cannot be parsed, all of it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    hidden = [_HIDDEN.search(key) is not None for key, _ in pairs]
    if "@" not in parts.netloc and not any(hidden):
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = urlencode(
        [(k, "***" if hide else v) for (k, v), hide in zip(pairs, hidden, strict=True)],
        safe="*",
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


_HIDDEN = re.compile(r"pass|secret|token|auth", re.IGNORECASE)
