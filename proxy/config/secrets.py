"""The values that must never be shown: ``Secret``, and every secret the proxy is given.

They come only from the environment (``sections.py`` reads and checks them).
"""

from __future__ import annotations

from dataclasses import dataclass


class Secret:
    """A value that must never be printed: ``repr`` and ``str`` mask it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Secrets:
    api_key: Secret | None
    workspace_id: Secret | None
    session_secrets: tuple[Secret, ...]
    mint_key: Secret | None
    lead_token_secret: Secret | None = None
    shopify_app_secrets: tuple[Secret, ...] = ()
    shopify_digest_secrets: tuple[Secret, ...] = ()
    challenge_secret: Secret | None = None  # the human check's provider secret
