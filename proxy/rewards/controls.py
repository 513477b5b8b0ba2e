"""The campaign controls' edges on the reward path (``campaign.py`` says what each decides):
the clock a schedule is read on, the human check's verifier, the dry run's draw, and settling
a coin reservation in the limit store once the reward's coins are known."""

from __future__ import annotations

import random
from collections.abc import Callable

from proxy.errors import ChallengeUnavailable, StorageUnavailable, TriggerNotActive
from proxy.http.asgi import Request
from proxy.http.responses import Answer
from proxy.limits.coins import CoinWindow, coin_windows
from proxy.limits.decisions import Decision, LimitStore
from proxy.limits.keys import IdempotencyClaim
from proxy.observe.logs import LOG
from proxy.rewards.campaign import Campaign
from proxy.rewards.challenge import ChallengeVerifier

CHALLENGE_HEADER = b"x-challenge-token"
DRY_RUN = "dry_run"  # the decision the access line and the metrics show for a dry run


class CampaignControls:
    def __init__(
        self,
        store: LimitStore,
        *,
        clock: Callable[[], float],
        verifier: ChallengeVerifier | None = None,
        draw: random.Random | None = None,
    ) -> None:
        self._store = store
        self.clock = clock  # wall-clock seconds: schedules are instants
        self._verifier = verifier
        self.draw = draw or random.SystemRandom()

    async def screen(
        self, request: Request, campaign: Campaign, claim: IdempotencyClaim | None
    ) -> Decision | None:
        """Refuse outside the schedule, then check the human: unless the request's
        Idempotency-Key was used before, whose decision (a replay, ...) is returned, even once
        the campaign has closed (a retry gets its first answer)."""
        try:
            campaign.check_open(self.clock())
        except TriggerNotActive:
            known = None if claim is None else await self._store.recall(claim)
            if known is None:
                raise
            return known
        if campaign.challenge is None:
            return None
        if claim is not None:
            known = await self._store.recall(claim)
            if known is not None:
                return known
        if self._verifier is None:  # settings._lint_challenge makes serving need one
            raise ChallengeUnavailable(60, cause="no_verifier")
        await self._verifier.verify(request.headers.get(CHALLENGE_HEADER), request.client_ip)
        return None

    def view(self, campaign: Campaign, public: bytes) -> Answer:
        """A scheduled trigger's public view: kept by caches only until its state changes."""
        shown, fresh = campaign.view(public, self.clock())
        cache = (b"cache-control", b"public, max-age=%d" % fresh)
        return Answer(200, shown, [cache, (b"vary", b"Origin")])

    def coins(self, trigger_id: str, campaign: Campaign, scope: str) -> tuple[CoinWindow, ...]:
        """The coin windows a reward of this campaign reserves its most coins in."""
        if campaign.coin_budget is None and campaign.customer_coins is None:
            return ()
        return coin_windows(
            trigger_id,
            scope,
            budget=campaign.coin_budget,
            per_customer=campaign.customer_coins,
            reserve=campaign.reserve,
        )

    async def settle(self, coins: tuple[CoinWindow, ...], decision: Decision, paid: int) -> None:
        """Set the reservation to the coins paid; a store that cannot keeps the most."""
        if paid == coins[0].coins:
            return
        try:
            await self._store.settle(coins, decision.ticket, paid)
        except StorageUnavailable:
            LOG.warning("the limit store is unavailable: a reward's coins stay at their most")

    async def aclose(self) -> None:
        if self._verifier is not None:
            await self._verifier.aclose()
