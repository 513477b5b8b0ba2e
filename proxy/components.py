"""The proxy's parts, built from the settings: each part is handed the section it uses, so its
constructor says what it depends on. The app opens them in its lifespan and closes them after."""

from __future__ import annotations

import time
from typing import NamedTuple

import httpx

from proxy.config.settings import Settings, display_url
from proxy.errors import StorageUnavailable
from proxy.identity.auth import Authenticator, FailureLimit
from proxy.identity.leadtokens import LeadTokens
from proxy.identity.mint import DigestMinter, Minter
from proxy.identity.resolved import ResolvedLeads
from proxy.identity.sessions import SessionVerifier
from proxy.identity.shopify import AppProxyVerifier, DigestVerifier
from proxy.limits.decisions import LimitStore
from proxy.limits.memory_store import MemoryStore
from proxy.limits.stores import open_store, persistence_gap, shared_blobs, shared_customer_blobs
from proxy.observe.logs import LOG, RequestLog
from proxy.reads.handler import Reads
from proxy.rewards.challenge import ChallengeVerifier
from proxy.rewards.controls import CampaignControls
from proxy.rewards.gateway import IN_FLIGHT_MARGIN_SECONDS, Gateway
from proxy.rewards.policy import TriggerPolicy
from proxy.rewards.redeem import Redemptions
from proxy.upstream.client import UpstreamClient


class Components(NamedTuple):
    """What serving needs open: the reward path, the reads, and the edges they share."""

    gateway: Gateway
    reads: Reads
    redemptions: Redemptions
    store: LimitStore
    upstream: UpstreamClient

    async def aclose(self) -> None:
        await self.reads.aclose()
        await self.gateway.aclose()
        await self.upstream.aclose()
        await self.store.aclose()


def minter(settings: Settings) -> Minter:
    """``POST /v1/sessions``: needs no store or upstream, so it is built with the app."""
    return Minter(
        settings.secrets.mint_key,
        settings.secrets.session_secrets,
        max_age_seconds=settings.sessions.max_age_seconds,
        max_body_bytes=settings.server.max_body_bytes,
        failures=settings.limits.per_ip_invalid_session,
    )


def digest_minter(settings: Settings, failures: FailureLimit) -> DigestMinter:
    """``POST /v1/sessions/shopify``: on with TRIGGER_PROXY_SHOPIFY_DIGEST_SECRETS; its failed
    trades count in ``failures``, the session checks' limit."""
    shopify, secrets = settings.shopify, settings.secrets
    verifier = None
    if shopify.shop and secrets.shopify_digest_secrets:
        verifier = DigestVerifier(
            [s.reveal() for s in secrets.shopify_digest_secrets],
            shop=shopify.shop,
            customer_template=shopify.customer_id,
            max_age_seconds=shopify.digest_max_age_seconds,
        )
    return DigestMinter(
        verifier,
        secrets.session_secrets,
        max_age_seconds=settings.sessions.max_age_seconds,
        max_body_bytes=settings.server.max_body_bytes,
        failures=failures,
    )


def app_proxy_verifier(settings: Settings) -> AppProxyVerifier | None:
    """The signed query's verifier, with shopify.app_proxy on."""
    shopify, secrets = settings.shopify, settings.secrets.shopify_app_secrets
    if not (shopify.app_proxy and shopify.shop and secrets):
        return None
    return AppProxyVerifier(
        [s.reveal() for s in secrets], shop=shopify.shop, customer_template=shopify.customer_id
    )


def campaign_controls(
    settings: Settings, store: LimitStore, transport: httpx.AsyncBaseTransport | None
) -> CampaignControls:
    """The schedules' clock and the human check's verifier (docs/campaigns.md). The clock is
    the memory store's own, which tests inject; Redis runs on its own, so the system's."""
    clock = store.clock if isinstance(store, MemoryStore) else time.time
    providers = {t.challenge for t in settings.triggers if t.challenge is not None}
    secret = settings.secrets.challenge_secret
    verifier = None
    if providers and secret is not None:
        (provider,) = providers  # settings._lint_challenge allows one
        verifier = ChallengeVerifier(settings.challenge, provider, secret, transport=transport)
    return CampaignControls(store, clock=clock, verifier=verifier)


def open_components(
    settings: Settings,
    log: RequestLog,
    failures: FailureLimit,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    store: LimitStore | None = None,
) -> Components:
    """Build the serving parts; ``failures`` is the per-address limit on failed session
    checks, which the theme digest's trades share; ``transport`` and ``store`` replace the
    configured ones."""
    secrets = settings.secrets
    if secrets.api_key is None or secrets.workspace_id is None:
        raise RuntimeError("serving needs the API key and the workspace id")
    if store is None:
        store = open_store(settings.limits, secrets.workspace_id.reveal())
    upstream = UpstreamClient(
        settings.upstream,
        api_key=secrets.api_key,
        workspace_id=secrets.workspace_id,
        transport=transport,
    )
    session_secrets = [s.reveal() for s in secrets.session_secrets]
    storefront = settings.upstream.key_purpose == "storefront"
    auth = Authenticator(
        SessionVerifier(session_secrets, settings.sessions.max_age_seconds),
        cookie_name=settings.sessions.cookie_name,
        failures=failures,
        log_secret=session_secrets[-1],
        leads_only=storefront,
        log=log,
        app_proxy=app_proxy_verifier(settings),
    )
    lead_secret = secrets.lead_token_secret
    lead_tokens = LeadTokens(lead_secret) if storefront and lead_secret is not None else None
    resolved = ResolvedLeads(store.clock)  # the reads resolve, the drop-in checks
    reads = Reads(
        settings.reads,
        budget=settings.limits.upstream,
        auth=auth,
        store=store,
        upstream=upstream,
        lead_tokens=lead_tokens,
        blobs=shared_blobs(store),
        customer_blobs=shared_customer_blobs(store),
        triggers=frozenset(t.id for t in settings.triggers),
        resolved=resolved,
    )
    gateway = Gateway(
        auth=auth,
        policy=TriggerPolicy(
            settings.triggers, settings.limits.per_customer, site_key=settings.challenge.site_key
        ),
        budget=settings.limits.upstream,
        idempotency_ttl_seconds=settings.limits.idempotency_ttl_seconds,
        max_body_bytes=settings.server.max_body_bytes,
        store=store,
        upstream=upstream,
        lead_tokens=lead_tokens,
        log=log,
        controls=campaign_controls(settings, store, transport),
        resolved=resolved,
        rewarded=reads.forget,  # a reward drops that customer's kept reads
    )
    redemptions = Redemptions(
        settings.redemption,
        auth=auth,
        budget=settings.limits.upstream,
        idempotency_ttl_seconds=settings.limits.idempotency_ttl_seconds,
        in_flight_seconds=upstream.timeout_seconds + IN_FLIGHT_MARGIN_SECONDS,
        max_body_bytes=settings.server.max_body_bytes,
        store=store,
        upstream=upstream,
        lead_tokens=lead_tokens,
        resolved=resolved,
        log=log,
        rewarded=reads.forget,  # spending coins moves the balance too
    )
    return Components(gateway, reads, redemptions, store, upstream)


async def report_store(settings: Settings, store: LimitStore) -> None:
    """At start, say what is wrong with the limit store: serving goes on (health answers,
    rewards fail closed), and the operator must know why."""
    where = display_url(settings.limits.storage_url)
    try:
        await store.ping()
    except StorageUnavailable as exc:
        LOG.error(
            "the limit store at %s does not answer (%s): rewards are refused with 503 "
            "storage_unavailable until it does",
            where,
            exc.cause,
        )
        return
    gap = await persistence_gap(store)
    if gap is not None:
        LOG.warning(
            "the limit store at %s keeps nothing across its restart: %s; idempotency records "
            "and limits would be lost, and a retried reward paid again",
            where,
            gap,
        )
