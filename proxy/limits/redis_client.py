"""Connecting to Redis: one server (``redis://``, ``rediss://``, ``unix://``), or whichever
server a set of Sentinels names the primary (``redis+sentinel://``, ``rediss+sentinel://``).

    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?sentinel_password=...]

The password is the primary's; the Sentinels' own, if they have one, is ``sentinel_password``;
``rediss+sentinel`` speaks TLS to the primary. With Sentinels, every new connection asks them
where the primary is, and a connection to a server that was demoted is dropped (redis-py's
Sentinel support): after a failover the store recovers by itself once Sentinel has promoted a
replica, and refuses meanwhile (fail closed).

Both kinds use a blocking pool: a burst beyond ``max_connections`` waits for a free connection
(up to the timeout) instead of failing with "Too many connections". Nothing retries inside the
client: a request that cannot be decided now is refused now, and the next one reconnects.
``persistence_gap`` asks a server whether what it holds would outlive its restart.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379


class _BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's Sentinel pool (connections follow the primary) with the blocking pool's
    waiting for a free connection."""


def connect(url: str, *, timeout_seconds: float, max_connections: int) -> redis.Redis:
    """A client for ``url``; connecting happens on its first command."""
    common: dict[str, Any] = {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "retry": Retry(NoBackoff(), 0),
    }
    if urlsplit(url).scheme not in SENTINEL_SCHEMES:
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout_seconds, **common
        )
        return redis.Redis(connection_pool=pool)
    target = parse_sentinel_url(url)
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
        target.sentinels,
        sentinel_kwargs={**common, "password": target.sentinel_password},
        **common,
    )
    client: redis.Redis = sentinel.master_for(
        target.service,
        redis_class=redis.Redis,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=max_connections,
        timeout=timeout_seconds,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
    )
    return client


class SentinelTarget:
    """The parts of a ``redis+sentinel://`` URL."""

    def __init__(
        self,
        sentinels: list[tuple[str, int]],
        service: str,
        db: int,
        username: str | None,
        password: str | None,
        sentinel_password: str | None,
        tls: bool,
    ) -> None:
        self.sentinels = sentinels
        self.service = service
        self.db = db
        self.username = username
        self.password = password
        self.sentinel_password = sentinel_password
        self.tls = tls


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Raise ``ValueError`` with a readable reason for a URL that names no Sentinel or no
    service."""
    scheme, _, rest = url.partition("://")
    if scheme not in SENTINEL_SCHEMES:
        raise ValueError(f"{scheme}:// is not a Sentinel URL")
    rest, _, query = rest.partition("?")
    location, _, path = rest.partition("/")
    userinfo, at, hosts = location.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = []
    for host in hosts.split(","):
        name, colon, port = host.strip().rpartition(":") if ":" in host else (host, "", "")
        if not name or (colon and not port.isdigit()):
            raise ValueError(f"{host!r} is not a Sentinel's host:port")
        sentinels.append((name.strip("[]"), int(port) if colon else DEFAULT_SENTINEL_PORT))
    service, _, db = path.partition("/")
    if not service:
        raise ValueError("names no service: redis+sentinel://host:port/<service>[/db]")
    if db and not db.isdigit():
        raise ValueError(f"{db!r} is not a database number")
    options = parse_qs(query)
    return SentinelTarget(
        sentinels=sentinels,
        service=unquote(service),
        db=int(db or 0),
        username=username,
        password=password,
        sentinel_password=options.get("sentinel_password", [None])[-1],
        tls=scheme.startswith("rediss"),
    )


# What the store keeps across Redis's own restart: idempotency records and windows on a Redis
# that persists nothing (no AOF, no RDB) are gone, and a keyed reward retried after it is paid
# again. The proxy asks at start and warns (docs/operations.md).
async def persistence_gap(client: Any) -> str | None:
    """Why ``client``'s Redis would lose the records in a restart, or None if it persists them
    (or cannot be asked: the start's ping reports a Redis that does not answer).

    ``CONFIG GET`` tells both AOF and the RDB schedule; managed Redis often refuses CONFIG, and
    then ``INFO persistence`` tells AOF alone."""
    try:
        try:
            config = await client.config_get("appendonly")
            config.update(await client.config_get("save"))
        except ResponseError:  # CONFIG renamed or not allowed to this user
            info = await client.info("persistence")
            if int(info.get("aof_enabled", 0)):
                return None
            return "AOF is off (INFO persistence; CONFIG is not allowed, so RDB is unknown)"
    except (RedisError, OSError):
        return None
    if config.get("appendonly") == "yes" or str(config.get("save", "")).strip():
        return None
    return 'nothing persists (appendonly no, save "")'
