"""The names an operator can get wrong: every TRIGGER_PROXY_* variable the proxy reads, and
the nearest known name to suggest for a typo."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import fields

from proxy.config.schema import ENV_PREFIX

# The TRIGGER_PROXY_* variables that are not a key's override (``setting(env=...)``): the
# secrets, and the config file's path for worker processes. Any other is a mistake.
SECRET_VARIABLES = ("API_KEY", "WORKSPACE_ID", "LEAD_TOKEN_SECRET", "SESSION_SECRETS", "MINT_KEY")
CONFIG_VARIABLE = "CONFIG"


def known_variables(sections: Mapping[str, type]) -> tuple[str, ...]:
    """Every TRIGGER_PROXY_* variable the proxy reads, from the schema itself."""
    overrides = [f.metadata["env"] for cls in sections.values() for f in fields(cls)]
    names = [*SECRET_VARIABLES, CONFIG_VARIABLE, *(env for env in overrides if env)]
    return tuple(ENV_PREFIX + name for name in names)


def nearest(name: str, known: Sequence[str], prefix: str = "") -> str:
    """`` (did you mean X?)`` for the known name nearest ``name``, or nothing; a ``prefix``
    all of them share is left out of the comparison."""
    bare = [k.removeprefix(prefix) for k in known]
    match = difflib.get_close_matches(name.removeprefix(prefix), bare, n=1, cutoff=0.6)
    return f" (did you mean {prefix}{match[0]}?)" if match else ""
