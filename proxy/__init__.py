"""trigger-proxy: a safe gateway to Nector's open triggers.

The public Python API is small: ``create_app`` builds the ASGI app, ``Settings`` loads its
configuration, ``mint_token`` signs a customer session the way the proxy verifies it.
"""

from __future__ import annotations

import typing

from proxy.config.settings import ConfigError, Settings
from proxy.identity.sessions import mint_token

if typing.TYPE_CHECKING:
    from proxy.app import create_app

__all__ = ["ConfigError", "Settings", "create_app", "mint_token"]
__version__ = "0.1.0"


def __getattr__(name: str) -> typing.Any:
    # The app (and with it httpx and Starlette) is imported when first asked for, so that the
    # command line's mint and check-config start without it and ``serve`` decides what it loads.
    if name == "create_app":
        from proxy.app import create_app

        return create_app
    raise AttributeError(f"module 'proxy' has no attribute {name!r}")
