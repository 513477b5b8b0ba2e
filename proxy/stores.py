"""Opening the limit store that ``limits.storage_url`` names."""

from __future__ import annotations

import hashlib

from .memory_store import MemoryStore
from .ratelimit import LimitStore
from .settings import LimitSettings


def open_store(settings: LimitSettings, workspace_id: str) -> LimitStore:
    """The store ``limits.storage_url`` names. On Redis every key carries a digest of the
    workspace, so deployments for two workspaces on one database never share a budget."""
    if settings.storage_url.startswith("memory:"):
        return MemoryStore(max_keys=settings.memory_max_keys)
    from .redis_store import RedisStore

    workspace = hashlib.blake2b(workspace_id.encode(), digest_size=6).hexdigest()
    return RedisStore(settings.storage_url, prefix=f"trigger-proxy:{workspace}:")
