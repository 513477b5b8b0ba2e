"""The read path: a storefront widget's GETs under ``/api/v2/merchant/``, always for the
session's own customer (docs/api.md, "Reads"; ``routes.py`` says what each becomes).

The order of checks is the reward path's: (route and method, in the app) session, the read
enabled, source, query, then limits and the upstream call. A call to Nector spends the
customer's read windows and, in the same atomic store decision as rewards use, both the whole
workspace budget and the reads' slice of it (``reads.budget``), so reads can never take what
rewards need. Workspace-wide answers come from ``reads.cache.ReadCache`` and spend nothing when
cached; a customer's own are kept for them alone (``reads.kept``, dropped by their reward). Every
call, a stale answer's refresh included, is charged to whoever asked. Only a visitor's answer
(``reads.public_routes``) is ``public``; every answer says ``X-Cache`` (HIT, MISS or STALE).

A customer_id session is looked up once (``leads/<id>?customer_id=<id>``) for its lead id,
which the lists filter by; the answer is remembered, bounded (``identity.resolved``, which the
drop-in reward asks too).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from proxy.config.settings import SOURCES, Rate, ReadSettings
from proxy.errors import (
    MissingSession,
    NotFound,
    ProxyError,
    RateLimited,
    ReadNotAllowed,
    UpstreamBusy,
    UpstreamError,
    UpstreamUnreachable,
)
from proxy.http.asgi import Request
from proxy.http.responses import Answer, quota_headers, rate_policy
from proxy.identity.auth import Authenticator
from proxy.identity.claims import Session, resolve_source
from proxy.identity.leadtokens import LeadTokens
from proxy.identity.resolved import ResolvedLeads
from proxy.limits.decisions import LimitStore, Outcome
from proxy.limits.keys import Window, budget_window, customer_windows
from proxy.limits.stores import Blobs, CustomerBlobs
from proxy.observe.logs import AccessRecord
from proxy.reads.cache import Entry, ReadCache, answer_headers
from proxy.reads.kept import HIT, MISS, STALE, Kept, Own
from proxy.reads.listed import allow_listed_only
from proxy.reads.routes import Kind, Read, item_of, lead_id_of, parse
from proxy.upstream.client import UpstreamClient

PRIVATE = [(b"cache-control", b"private, no-store"), (b"vary", b"Origin")]
_REFUSED = [MISS, (b"vary", b"Origin")]
_READS = "reads"  # the "trigger" the customer's read windows are keyed by
ALL_SOURCES = frozenset(SOURCES)  # reads are no trigger's: every source may read
VISITOR = Session("customer_id", "", None, None, None, None, None, 0, "visitor")  # no claims


class Reads:
    def __init__(
        self,
        reads: ReadSettings,
        *,
        budget: Rate,
        auth: Authenticator,
        store: LimitStore,
        upstream: UpstreamClient,
        lead_tokens: LeadTokens | None,
        blobs: Blobs | None = None,
        triggers: frozenset[str] = frozenset(),
        resolved: ResolvedLeads | None = None,
        customer_blobs: CustomerBlobs | None = None,
    ) -> None:
        self._enabled = frozenset(reads.routes)
        self._public = frozenset(reads.public_routes)  # answered with no session, cached
        self._per_address = reads.per_address
        self._triggers = triggers  # the allow-list's ids: the triggers read lists no other
        self._auth = auth
        self._store = store
        self._upstream = upstream
        self._rates = reads.per_customer
        self._policy = rate_policy(reads.per_customer)
        self._budgets = (budget_window(budget), _slice(reads.budget))
        self._cache = ReadCache(
            fresh_seconds=reads.cache_seconds,
            stale_seconds=reads.stale_seconds,
            size=reads.max_cached,
            blobs=blobs,
            wait_seconds=upstream.timeout_seconds,
        )
        self._max_age = reads.cache_seconds
        self._kept = Kept(
            fresh_seconds=reads.customer_cache_seconds,
            stale_seconds=reads.stale_seconds,
            max_bytes=reads.max_kept_megabytes * 1024 * 1024,
            blobs=customer_blobs,
        )
        self._leads = resolved or ResolvedLeads(store.clock)
        self._leads.lookup = self._lookup  # the drop-in's, for a lead_id it must check
        self._lead_tokens = lead_tokens

    async def aclose(self) -> None:
        await self._cache.aclose()
        await self._kept.aclose()

    async def forget(self, customer: str) -> None:
        """After ``customer``'s reward (a session's scope): their next reads are fresh."""
        await self._kept.forget(customer)

    async def read(
        self, request: Request, rest: str, record: AccessRecord, cookie_ok: bool
    ) -> Answer:
        """``GET /api/v2/merchant/{rest}``: the session's own data, or the workspace's; a
        refusal too says it is nobody's copy (X-Cache: MISS) and varies by Origin."""
        try:
            return await self._read(request, rest, record, cookie_ok)
        except ProxyError as exc:
            if _REFUSED[0] not in exc.headers:
                exc.headers = [*exc.headers, *_REFUSED]
            raise

    async def _read(
        self, request: Request, rest: str, record: AccessRecord, cookie_ok: bool
    ) -> Answer:
        try:
            session, _ = self._auth.session(request, record, cookie_ok)
        except MissingSession:
            if rest.partition("/")[0] not in self._public:
                raise
            return await self._visitor(request, rest, record)
        if rest.partition("/")[0] not in self._enabled:
            raise ReadNotAllowed("this read is not enabled on this proxy")
        source = resolve_source(request.header(b"x-source"), session, ALL_SOURCES)
        record.source = source
        read = parse(rest, request.query)
        if read.kind is Kind.WORKSPACE:
            windows = customer_windows(_READS, session.scope, self._rates)
            return await self._workspace(read, windows, source, request.request_id, record)
        lead = session.subject if session.subject_field == "lead_id" else None
        if read.needs_lead and lead is None:
            found = await self._lead(session, source, request.request_id, record)
            if isinstance(found, Answer):
                return found  # Nector's own answer to the lookup: no such customer, say
            lead = found
        target = read.target(session, lead)
        status, body, headers = await self._own(
            session, target, source, request.request_id, record, lead
        )
        # The lists' lookup, made for free; a kept lead's id was taken when it came.
        by_customer = read.kind is Kind.LEAD and session.subject_field == "customer_id"
        if by_customer and status == 200 and self._leads.get(session) is None:
            self._leads.remember(session, lead_id_of(body))
        if read.kind is Kind.COUPON and status == 200 and item_of(body).get("lead_id") != lead:
            raise NotFound("no such coupon")  # another customer's: not even its existence
        if read.route == "triggers" and status == 200:
            body = allow_listed_only(body, self._triggers)
        return Answer(status, body, [*PRIVATE, *headers])

    async def _workspace(
        self,
        read: Read,
        windows: tuple[Window, ...],
        source: str,
        request_id: str,
        record: AccessRecord,
        shared: bool = False,
    ) -> Answer:
        """A workspace-wide read from the cache; a miss or a refresh is paid by ``windows`` (the
        customer's reads, or a visitor's address: ``shared``, a public answer)."""
        target = read.shared_target
        # The answer is Nector's to a call that names the source (x-source), so it is kept per
        # source: nothing says Nector's reads ignore it, and a storefront reads from one source.
        key = f"{source}:{target}"
        cache = self._cache
        entry = cache.get(key)

        def fetch(
            into: AccessRecord | None, paying: tuple[Window, ...]
        ) -> Callable[[], Awaitable[tuple[int, bytes]]]:
            async def call() -> tuple[int, bytes]:
                status, body, _ = await self._call(target, paying, source, request_id, into, None)
                if read.route == "triggers" and status == 200:
                    body = allow_listed_only(body, self._triggers)
                return status, body

            return call

        def cached(entry: Entry, state: tuple[bytes, bytes]) -> Answer:
            headers = answer_headers(entry, state, cache.clock(), self._max_age, shared)
            return Answer(entry.status, entry.body, headers)

        if entry is not None:
            if cache.fresh(entry):
                record.decision = "cached"
                return cached(entry, HIT)
            # The refresh outlives this request: it must not write into its access line. It is
            # a call to Nector, paid by whoever asked; past their limit, none is made.
            cache.refresh(key, fetch(None, windows))
            record.decision = "stale"
            return cached(entry, STALE)
        # A miss: the customer's read windows pay for joining (or starting) the fill.
        decision = await self._store.admit(windows, (), None)
        if decision.outcome is Outcome.RATE_LIMITED:
            raise RateLimited(decision.retry_after, headers=self._quota(windows, decision.windows))
        return cached(await cache.fill(key, fetch(record, ())), MISS)

    async def _visitor(self, request: Request, rest: str, record: AccessRecord) -> Answer:
        """A read with no session, of a route in ``reads.public_routes``: workspace-wide only,
        a miss paid by the visitor's address (``reads.per_address``)."""
        if rest.partition("/")[0] not in self._enabled:
            raise ReadNotAllowed("this read is not enabled on this proxy")
        source = resolve_source(request.header(b"x-source"), VISITOR, ALL_SOURCES)
        record.source = source
        read = parse(rest, request.query)
        if read.kind is not Kind.WORKSPACE:  # the triggers read with a lead_id, say
            raise MissingSession()
        windows = customer_windows(_READS, "address:" + request.client_ip, self._per_address)
        return await self._workspace(read, windows, source, request.request_id, record, True)

    async def _lead(
        self, session: Session, source: str, request_id: str, record: AccessRecord
    ) -> str | Answer:
        """A customer_id session's lead id, looked up once; or Nector's answer to the lookup
        when it found none."""
        known = self._leads.get(session)
        if known is not None:
            return known
        target = Read("leads", Kind.LEAD, None, ()).target(session, None)
        status, body, headers = await self._own(session, target, source, request_id, record, None)
        if status != 200:
            return Answer(status, body, [*PRIVATE, *headers])
        lead = lead_id_of(body)
        if lead is None:
            raise UpstreamError(cause="no_lead_id")
        self._leads.remember(session, lead)
        return lead

    async def _lookup(
        self, session: Session, source: str, request_id: str, record: AccessRecord
    ) -> str | None:
        """The drop-in's question (``identity.resolved``): the lead, or None if there is none."""
        try:
            found = await self._lead(session, source, request_id, record)
        except UpstreamError as exc:
            if exc.cause != "no_lead_id":
                raise
            return None
        return None if isinstance(found, Answer) else found

    async def _own(
        self,
        session: Session,
        target: str,
        source: str,
        request_id: str,
        record: AccessRecord,
        lead: str | None,
    ) -> Own:
        """A customer's own read, kept for them (``Kept.serve``); a call spends their reads.
        Nector's answer is to a call naming the source, so the key names it too."""
        windows = customer_windows(_READS, session.scope, self._rates)
        return await self._kept.serve(
            session.scope,
            f"{source}:{target}",
            lambda: self._call(target, windows, source, request_id, record, lead),
            record,
        )

    async def _call(
        self,
        target: str,
        windows: tuple[Window, ...],
        source: str,
        request_id: str,
        record: AccessRecord | None,
        lead: str | None,
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """One call to Nector, admitted by the store: its status, body and quota headers.
        ``record``: the access line of the request it answers, if any."""
        decision = await self._store.admit(windows, self._budgets, None)
        if record is not None:
            record.decision = decision.outcome
        if decision.outcome is Outcome.RATE_LIMITED:
            raise RateLimited(decision.retry_after, headers=self._quota(windows, decision.windows))
        if decision.outcome is Outcome.BUDGET_SPENT:
            raise UpstreamBusy(decision.retry_after)
        tokens = self._lead_tokens
        token = None if tokens is None or lead is None else tokens.for_lead(lead)
        try:
            answer = await self._upstream.get(
                target, source=source, request_id=request_id, lead_token=token
            )
        except UpstreamUnreachable:
            await self._store.release(windows, self._budgets, None, decision.ticket)
            raise
        if record is not None:
            record.upstream_status = answer.status
            record.upstream_ms = round(answer.elapsed * 1000, 2)
        return answer.status, answer.body, self._quota(windows, decision.windows)

    def _quota(self, windows: tuple[Window, ...], states: Any) -> list[tuple[bytes, bytes]]:
        return quota_headers(windows, states, self._policy)


def _slice(rate: Any) -> Window:
    """The reads' own slice of the workspace budget: a window beside the whole one."""
    whole = budget_window(rate)
    return whole._replace(key="r" + whole.key)
