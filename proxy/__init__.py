"""trigger-proxy: a safe gateway to Nector's open triggers.

The public Python API is small: ``create_app`` builds the ASGI app, ``Settings`` loads its
configuration, ``mint_token`` signs a customer session the way the proxy verifies it.
"""

from __future__ import annotations

from proxy.app import create_app
from proxy.config.settings import ConfigError, Settings
from proxy.identity.sessions import mint_token

__all__ = ["ConfigError", "Settings", "create_app", "mint_token"]
__version__ = "0.1.0"
