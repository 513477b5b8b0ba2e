"""Each customer's own entries on Redis (``limits.stores.CustomerBlobs``): one hash a customer,
``k:<customer>``, whose fields are the entries, so that one ``DEL`` drops them all on every
replica at once. Each write sets the hash to expire after the entry's lifetime, so a customer
who stops coming leaves nothing behind; an entry larger than ``MAX_BLOB_BYTES`` is not stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from proxy.errors import StorageUnavailable, failure_cause
from proxy.limits.redis_store import RedisStore

MAX_BLOB_BYTES = 128 * 1024


class RedisCustomerBlobs:
    def __init__(self, store: RedisStore, max_blob_bytes: int = MAX_BLOB_BYTES) -> None:
        self._redis: Any = store._redis
        self._prefix = store._prefix + "k:"
        self._max = max_blob_bytes

    async def get(self, customer: str, key: str) -> bytes | None:
        blob: bytes | None = await self._do(lambda r: r.hget(self._prefix + customer, key))
        return blob

    async def put(self, customer: str, key: str, blob: bytes, ttl_seconds: float) -> None:
        if len(blob) > self._max:
            return
        name = self._prefix + customer
        ttl = max(1, round(ttl_seconds * 1000))

        async def write(redis: Any) -> Any:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.hset(name, key, blob)
                pipe.pexpire(name, ttl)
                return await pipe.execute()

        await self._do(write)

    async def forget(self, customer: str) -> None:
        await self._do(lambda r: r.delete(self._prefix + customer))

    async def _do(self, command: Callable[[Any], Awaitable[Any]]) -> Any:
        try:
            return await command(self._redis)
        except (RedisError, OSError) as exc:
            raise StorageUnavailable(cause=failure_cause(exc)) from exc
