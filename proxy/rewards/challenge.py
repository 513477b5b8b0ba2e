"""The human check: a provider's token (Turnstile, hCaptcha, reCAPTCHA), verified server-side.

The three providers share one verify API: a form POST of ``secret``, ``response`` (the token)
and ``remoteip`` to their siteverify URL, answered ``{"success": bool, "error-codes": [...]}``.
A token is single-use at the provider; it is also remembered here for as long as a provider
keeps it valid, so a reused one is refused without asking. A provider that cannot answer in
``timeout_seconds`` fails closed (503 challenge_unavailable): a bot must not pass by making the
check slow.
"""

from __future__ import annotations

import json
import logging
import time

import httpx

from proxy.config.settings import ChallengeSettings, Secret
from proxy.errors import ChallengeFailed, ChallengeUnavailable, failure_cause
from proxy.limits.bounded import ExpiringMap

LOG = logging.getLogger("trigger_proxy")
# Providers keep a token valid for 300 seconds (Turnstile, hCaptcha) or 120 (reCAPTCHA).
TOKEN_LIFETIME_SECONDS = 300.0
MAX_TOKEN_LENGTH = 4096  # Turnstile's own limit is 2048 characters
RETRY_AFTER_SECONDS = 5.0
TOKENS_REMEMBERED = 100_000


class ChallengeVerifier:
    """Verifies tokens for ``provider`` at its configured verify URL with ``secret``."""

    def __init__(
        self,
        settings: ChallengeSettings,
        provider: str,
        secret: Secret,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.site_key = settings.site_key
        self._url: str = getattr(settings, f"{provider}_verify_url")
        self._secret = secret
        timeout = httpx.Timeout(settings.timeout_seconds)
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
        self._client = httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport)
        self._used: ExpiringMap[str, bool] = ExpiringMap(TOKENS_REMEMBERED, time.monotonic)

    async def verify(self, token: bytes | None, remote_ip: str) -> None:
        """Return when ``token`` passes; raise ``ChallengeFailed`` (bad, missing or reused)
        or ``ChallengeUnavailable`` (the provider failed to answer)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise ChallengeFailed(cause="missing_token" if not token else "token_too_long")
        text = token.decode("latin-1")
        if self._used.get(text) is not None:
            raise ChallengeFailed(cause="reused_token")
        self._used.put(text, self._used.clock() + TOKEN_LIFETIME_SECONDS, True)
        form = {"secret": self._secret.reveal(), "response": text, "remoteip": remote_ip}
        try:
            response = await self._client.post(self._url, data=form)
            answer = json.loads(response.content) if response.status_code == 200 else None
        except (httpx.HTTPError, OSError) as exc:
            cause = failure_cause(exc)
            self._used.put(text, 0.0, True)  # never judged: the same token may come again
            LOG.warning("the %s verifier failed to answer (%s)", self.provider, cause)
            raise ChallengeUnavailable(RETRY_AFTER_SECONDS, cause=cause) from exc
        except ValueError as exc:
            answer = None
            LOG.warning("the %s verifier answered no JSON", self.provider, exc_info=exc)
        if not isinstance(answer, dict) or not isinstance(answer.get("success"), bool):
            LOG.warning("the %s verifier answered %d", self.provider, response.status_code)
            self._used.put(text, 0.0, True)
            raise ChallengeUnavailable(RETRY_AFTER_SECONDS, cause="verifier_answer")
        if not answer["success"]:
            codes = answer.get("error-codes")
            raise ChallengeFailed(cause=",".join(map(str, codes))[:80] if codes else "failed")

    async def aclose(self) -> None:
        await self._client.aclose()
