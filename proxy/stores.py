"""Opening the limit store that ``limits.storage_url`` names."""

from __future__ import annotations

import hashlib

from .memory_store import MemoryStore
from .ratelimit import LimitStore
from .readcache import Blobs
from .settings import LimitSettings


def open_store(settings: LimitSettings, workspace_id: str) -> LimitStore:
    """The store ``limits.storage_url`` names. On Redis every key carries a digest of the
    workspace, so deployments for two workspaces on one database never share a budget."""
    if settings.storage_url.startswith("memory:"):
        return MemoryStore(max_keys=settings.memory_max_keys)
    from .redis_store import RedisStore

    workspace = hashlib.blake2b(workspace_id.encode(), digest_size=6).hexdigest()
    return RedisStore(settings.storage_url, prefix=f"trigger-proxy:{workspace}:")


def shared_blobs(store: LimitStore) -> Blobs | None:
    """Where the replicas share cached reads: the Redis store's, or nowhere (one process)."""
    from .redis_store import RedisStore

    return store.blobs() if isinstance(store, RedisStore) else None
