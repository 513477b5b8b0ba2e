"""The names an operator can get wrong: the TRIGGER_PROXY_* variables the proxy reads, and the
nearest known name to suggest for a typo.

What is known is what the reading asked for (``AskedEnviron``), not a list kept beside it: a
section's override, a secret, or a new one, each is known as soon as the code reads it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import fields

from proxy.config.schema import ENV_PREFIX, ConfigError, ConfigErrors

# The secrets, which the image and compose must never set (tests/test_deploy.py).
SECRET_VARIABLES = (
    "API_KEY",
    "WORKSPACE_ID",
    "LEAD_TOKEN_SECRET",
    "SESSION_SECRETS",
    "MINT_KEY",
    "CHALLENGE_SECRET",
)
# The config file's path for worker processes: read by the command line, not by the settings.
CONFIG_VARIABLE = "CONFIG"


class AskedEnviron(Mapping[str, str]):
    """An environment that remembers every name it was asked for."""

    def __init__(self, environ: Mapping[str, str], known: Iterable[str] = ()) -> None:
        self._environ = environ
        self.asked: set[str] = {ENV_PREFIX + CONFIG_VARIABLE, *known}

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self._environ[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.asked.add(name)
        return name in self._environ

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)

    def check(self) -> None:
        """Refuse every TRIGGER_PROXY_* variable set that nothing asked for: a typo, which
        would otherwise be ignored. Call it once everything has been read."""
        known = sorted(self.asked)
        unknown = sorted(n for n in self._environ if n.startswith(ENV_PREFIX) and n not in known)
        errors = [
            ConfigError(name, "unknown variable" + nearest(name, known, ENV_PREFIX))
            for name in unknown
        ]
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ConfigErrors(errors)


def overrides(sections: Mapping[str, type]) -> list[str]:
    """The variables that override keys of ``sections`` (``setting(env=...)``)."""
    found = [f.metadata["env"] for cls in sections.values() for f in fields(cls)]
    return [ENV_PREFIX + name for name in found if name]


def nearest(name: str, known: Sequence[str], prefix: str = "") -> str:
    """`` (did you mean X?)`` for the known name nearest ``name``, or nothing; a ``prefix``
    all of them share is left out of the comparison."""
    bare = [k.removeprefix(prefix) for k in known]
    match = difflib.get_close_matches(name.removeprefix(prefix), bare, n=1, cutoff=0.6)
    return f" (did you mean {prefix}{match[0]}?)" if match else ""
