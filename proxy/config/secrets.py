"""The values that must never be shown: ``Secret``, and every secret the proxy is given.

They come only from the environment, and ``read_secrets`` reads and checks them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from proxy.config.reader import Problems
from proxy.config.schema import ENV_PREFIX, MIN_SECRET_LENGTH, ConfigError


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


def read_secrets(environ: Mapping[str, str], *, minting: bool) -> Secrets:
    """The secrets in ``environ``, or every mistake found. Minting signs with the session
    secrets only: the others are serve's to check, and must not stop an operator minting."""

    def given(name: str, required: bool) -> str | None:
        value = environ.get(ENV_PREFIX + name, "")
        if not value and required:
            raise ConfigError(ENV_PREFIX + name, "is required and not set")
        return value or None

    def issued(name: str, required: bool, issuer: str = "Nector") -> Secret | None:
        # Nector's own formats (workspace ids like "shopify-<shop>", keys "ak_" + hex) are
        # taken as issued: only what cannot be a header value is refused.
        value = given(name, required)
        if value is None:
            return None
        if not all("!" <= c <= "~" for c in value):
            raise ConfigError(
                ENV_PREFIX + name, f"must be printable ASCII without spaces, as {issuer} issues it"
            )
        return Secret(value)

    def made(name: str, value: str) -> Secret:
        # The merchant makes these: too short a secret can be guessed offline from one token.
        if len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(name, f"is shorter than {MIN_SECRET_LENGTH} characters")
        return Secret(value)

    def session_secrets() -> tuple[Secret, ...]:
        raw = given("SESSION_SECRETS", True)
        assert raw is not None
        parts = [part.strip() for part in raw.split(",")]
        return tuple(made(f"{ENV_PREFIX}SESSION_SECRETS[{i}]", p) for i, p in enumerate(parts))

    def listed(name: str, check: Callable[[str, str], Secret]) -> tuple[Secret, ...]:
        # Oldest first, as the session secrets: every one verifies (rotation).
        raw = given(name, False)
        parts = [] if raw is None else [part.strip() for part in raw.split(",")]
        return tuple(check(f"{ENV_PREFIX}{name}[{i}]", p) for i, p in enumerate(parts))

    def as_issued(name: str, value: str) -> Secret:
        if not value or not all("!" <= c <= "~" for c in value):
            raise ConfigError(name, "must be printable ASCII without spaces, as Shopify issues it")
        # Shopify's API secret keys are longer: a shorter one is a typo or a placeholder.
        if len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(
                name, f"is shorter than {MIN_SECRET_LENGTH} characters: not a Shopify app secret"
            )
        return Secret(value)

    def mint_key() -> Secret | None:
        value = given("MINT_KEY", False)
        return None if value is None else made(ENV_PREFIX + "MINT_KEY", value)

    if minting:
        return Secrets(None, None, session_secrets(), None)
    problems = Problems()
    secrets = Secrets(
        api_key=problems.read(lambda: issued("API_KEY", True), None),
        workspace_id=problems.read(lambda: issued("WORKSPACE_ID", True), None),
        session_secrets=problems.read(session_secrets, ()),
        mint_key=problems.read(mint_key, None),
        lead_token_secret=problems.read(lambda: issued("LEAD_TOKEN_SECRET", False), None),
        shopify_app_secrets=problems.read(lambda: listed("SHOPIFY_APP_SECRETS", as_issued), ()),
        shopify_digest_secrets=problems.read(lambda: listed("SHOPIFY_DIGEST_SECRETS", made), ()),
        challenge_secret=problems.read(
            lambda: issued("CHALLENGE_SECRET", False, "the bot check's provider"), None
        ),
    )
    problems.raise_any()
    return secrets
