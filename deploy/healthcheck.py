"""The image's HEALTHCHECK: GET /healthz on the port the proxy serves, found as serve finds
it (TRIGGER_PROXY_PORT, else the config file's server.port, else 8080). Exit 0 if healthy."""

import os
import sys
import tomllib
import urllib.request


def port() -> int:
    given = os.environ.get("TRIGGER_PROXY_PORT")
    if given:
        return int(given)
    try:
        with open(
            os.environ.get("TRIGGER_PROXY_CONFIG", "/etc/trigger-proxy/proxy.toml"), "rb"
        ) as f:
            return int(tomllib.load(f).get("server", {}).get("port", 8080))
    except (OSError, tomllib.TOMLDecodeError):
        return 8080


def host() -> str:
    given = os.environ.get("TRIGGER_PROXY_HOST", "")
    return "127.0.0.1" if given in ("", "0.0.0.0", "::") else given


if __name__ == "__main__":
    address = host()
    if ":" in address:
        address = f"[{address}]"
    try:
        with urllib.request.urlopen(f"http://{address}:{port()}/healthz", timeout=2) as answer:
            sys.exit(answer.status != 200)
    except OSError:
        sys.exit(1)
