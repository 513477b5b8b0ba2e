"""The lead a customer_id session resolved to, shared by the reads and the drop-in reward.

Nector's widget reads the lead (``leads/...?customer_id=``), then posts the lead's ``_id`` as
``lead_id`` with its reward. The reads look a customer_id session's lead up once and keep it
here; the drop-in then accepts, from that session, that one ``lead_id`` and no other. When the
reward comes before any read, the drop-in asks ``lookup`` (set by the reads: one call to Nector,
spent from the customer's reads and the workspace budget like any read).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from proxy.identity.claims import Session
from proxy.limits.bounded import ExpiringMap
from proxy.observe.logs import AccessRecord

LEADS_REMEMBERED = 10_000
LEAD_SECONDS = 86_400.0  # a lead's id never changes; the bound is for forgetting old customers
# (session, source, request id, access line) -> the session's lead id, or None if Nector has none
Lookup = Callable[[Session, str, str, AccessRecord], Awaitable[str | None]]


class ResolvedLeads:
    """customer_id sessions' leads, by the session's scope (bounded, expiring)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._leads: ExpiringMap[str, str] = ExpiringMap(LEADS_REMEMBERED, clock)
        self.lookup: Lookup | None = None

    def get(self, session: Session) -> str | None:
        return self._leads.get(session.scope)

    def remember(self, session: Session, lead: str | None) -> None:
        if lead is not None and session.subject_field == "customer_id":
            self._leads.put(session.scope, self._leads.clock() + LEAD_SECONDS, lead)

    async def named_in(
        self,
        body: Mapping[str, Any],
        session: Session,
        source: str,
        request_id: str,
        record: AccessRecord,
    ) -> str | None:
        """The session's own lead id, when a customer_id session's body names a ``lead_id``
        (looked up if not known yet); None otherwise."""
        if session.subject_field != "customer_id" or not isinstance(body.get("lead_id"), str):
            return None
        return await self.lead_of(session, source, request_id, record)

    async def lead_of(
        self, session: Session, source: str, request_id: str, record: AccessRecord
    ) -> str | None:
        """The session's lead id: its own for a lead_id session, else the resolved one (looked
        up if not known yet); None if Nector has no lead for the customer."""
        if session.subject_field == "lead_id":
            return session.subject
        known = self.get(session)
        if known is not None or self.lookup is None:
            return known
        return await self.lookup(session, source, request_id, record)
