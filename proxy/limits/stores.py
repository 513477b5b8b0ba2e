"""Opening the limit store that ``limits.storage_url`` names."""

from __future__ import annotations

import hashlib
import sys
from typing import TYPE_CHECKING, Protocol

from proxy.config.settings import LimitSettings, display_url
from proxy.limits.decisions import LimitStore
from proxy.limits.memory_store import MemoryStore

if TYPE_CHECKING:
    from proxy.limits.redis_store import RedisStore


class Blobs(Protocol):
    """Where replicas share entries: Redis (``RedisBlobs``), or nowhere."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, blob: bytes, ttl_seconds: float) -> None: ...

    async def lock(self, key: str, ttl_seconds: float) -> bool: ...

    async def unlock(self, key: str) -> None: ...


class CustomerBlobs(Protocol):
    """Where replicas share each customer's own entries, dropped all at once: Redis
    (``limits.redis_blobs.RedisCustomerBlobs``), or nowhere."""

    async def get(self, customer: str, key: str) -> bytes | None: ...

    async def put(self, customer: str, key: str, blob: bytes, ttl_seconds: float) -> None: ...

    async def forget(self, customer: str) -> None: ...


def open_store(settings: LimitSettings, workspace_id: str) -> LimitStore:
    """The store ``limits.storage_url`` names. On Redis every key carries a digest of the
    workspace, so deployments for two workspaces on one database never share a budget."""
    if settings.storage_url.startswith("memory:"):
        return MemoryStore(max_keys=settings.memory_max_keys)
    from proxy.limits.redis_store import RedisStore

    workspace = hashlib.blake2b(workspace_id.encode(), digest_size=6).hexdigest()
    return RedisStore(
        settings.storage_url,
        prefix=f"trigger-proxy:{workspace}:",
        replica_acks=replica_acks(settings),
        replica_wait_seconds=settings.replica_wait_seconds,
    )


def replica_acks(settings: LimitSettings) -> int:
    """How many replicas must acknowledge an idempotency record (``limits.replica_acks``):
    by default one behind Sentinel, whose failovers are what loses unreplicated records."""
    if settings.replica_acks >= 0:
        return settings.replica_acks
    return 1 if "+sentinel://" in settings.storage_url else 0


def _on_redis(store: LimitStore) -> RedisStore | None:
    """The store if it is a Redis store. A store cannot be one unless its module was imported:
    asking this never imports redis-py, which a memory:// worker would carry for nothing
    (docs/design.md, "What a worker loads")."""
    module = sys.modules.get("proxy.limits.redis_store")
    return store if module is not None and isinstance(store, module.RedisStore) else None


def shared_blobs(store: LimitStore) -> Blobs | None:
    """Where the replicas share cached reads: the Redis store's, or nowhere (one process)."""
    redis = _on_redis(store)
    return None if redis is None else redis.blobs()


def shared_customer_blobs(store: LimitStore) -> CustomerBlobs | None:
    """Where the replicas share each customer's kept reads: the Redis store's, or nowhere."""
    redis = _on_redis(store)
    if redis is None:
        return None
    from proxy.limits.redis_blobs import RedisCustomerBlobs

    return RedisCustomerBlobs(redis)


def describe_storage(settings: LimitSettings) -> str:
    """The store as the start line and check-config show it: its URL without secrets, and
    how many replicas must hold an Idempotency-Key's record before Nector is called."""
    shown = display_url(settings.storage_url)
    if settings.storage_url.startswith("memory:"):
        return shown
    acks = replica_acks(settings)
    if not acks:
        return f"{shown}, idempotency records wait for no replica"
    return (
        f"{shown}, idempotency records wait for {acks} replica{'s' * (acks > 1)} "
        f"(up to {settings.replica_wait_seconds:g}s, else 503)"
    )


async def persistence_gap(store: LimitStore) -> str | None:
    """Why the store would lose its records in its own restart, or None (``durability``).
    The memory store is the process's: it says nothing there that a restart would not."""
    redis = _on_redis(store)
    return None if redis is None else await redis.persistence_gap()
