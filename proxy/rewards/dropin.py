"""The drop-in reward's body check, with the lead a customer_id session resolved to.

Nector's widget posts ``{trigger_id, lead_id}`` with the lead's ``_id`` from its own lead read,
whichever id the merchant's session carries: from a customer_id session that one lead (the one
the proxy resolved for that customer, ``identity.resolved``) is accepted, and no other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.identity.claims import Session
from proxy.identity.resolved import ResolvedLeads
from proxy.observe.logs import AccessRecord
from proxy.rewards.policy import check_dropin_body


async def check_dropin(
    body: Mapping[str, Any],
    session: Session,
    resolved: ResolvedLeads,
    source: str,
    request_id: str,
    record: AccessRecord,
) -> None:
    """``check_dropin_body`` for ``body``, knowing the session's resolved lead (looked up when
    the body names a lead_id and none is known yet)."""
    lead = await resolved.named_in(body, session, source, request_id, record)
    check_dropin_body(body, session, lead)
