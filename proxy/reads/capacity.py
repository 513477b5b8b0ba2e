"""What the reads can serve, from the settings alone (``check-config``; docs/operations.md,
"Reads": the arithmetic and how to size it).

Every call a read makes to Nector spends the reads' slice (``reads.budget``, itself under
``limits.upstream``). The workspace-wide answers cost one call per query per
``reads.cache_seconds`` whatever the traffic; what is left pays for the customers' own answers.
A signed-in page view reads one answer per enabled customer-scoped route, and a customer's
answers are kept for ``reads.customer_cache_seconds``: their further views within that time cost
nothing. So a customer opening ``v`` pages a minute costs ``routes * min(v, 60 / kept)`` calls a
minute, and the slice serves about ``left / that * v`` page views a minute.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from proxy.config.schema import rates_text
from proxy.config.settings import Rate, ReadSettings

CUSTOMER_ROUTES = ("leads", "wallettransactions", "coupons", "activities")
WORKSPACE_QUERIES = ("triggers", "aggreegateddetails", "aggreegatedoffers")  # one query each
STOREFRONT_VIEWS = 5  # a shopper's page views a minute, as the benchmark's storefront has them


def per_minute(rate: Rate) -> float:
    """A rate's calls a minute, on average over its period."""
    return rate.limit * 60 / rate.seconds


class Capacity(NamedTuple):
    calls: float  # upstream read calls a minute: the slice, under the whole budget
    workspace_calls: float  # what the workspace-wide answers' refreshes take of them
    reads_per_view: int  # customer-scoped answers a signed-in page view reads
    kept_seconds: int  # reads.customer_cache_seconds
    per_customer: float  # the most one customer may spend a minute

    def customer_calls(self, views: float) -> float:
        """The calls a minute of one customer opening ``views`` pages a minute."""
        if not self.kept_seconds:
            return self.reads_per_view * views
        return self.reads_per_view * min(views, max(1.0, 60 / self.kept_seconds))

    def page_views(self, views: float) -> int:
        """Signed-in page views a minute the slice serves, each customer opening ``views``."""
        left = max(0.0, self.calls - self.workspace_calls)
        cost = self.customer_calls(views)
        return math.floor(left / cost * views) if cost else 0


def capacity(reads: ReadSettings, budget: Rate) -> Capacity:
    enabled = set(reads.routes)
    queries = sum(route in enabled for route in WORKSPACE_QUERIES)
    return Capacity(
        calls=min(per_minute(reads.budget), per_minute(budget)),
        workspace_calls=queries * 60 / reads.cache_seconds,
        reads_per_view=sum(route in enabled for route in CUSTOMER_ROUTES),
        kept_seconds=reads.customer_cache_seconds,
        per_customer=min(per_minute(rate) for rate in reads.per_customer),
    )


def describe_reads(reads: ReadSettings, budget: Rate) -> str:
    """``check-config``'s lines on the reads: which are on, and what they can serve."""
    if not reads.routes:
        return "reads: off (no [reads] routes)"
    rates = rates_text(reads.per_customer)
    head = (
        f"reads: {', '.join(reads.routes)}; workspace answers cached {reads.cache_seconds}s, "
        f"budget {reads.budget} of the workspace's, per customer {rates}"
    )
    return "\n".join([head, *describe(reads, budget)])


def describe_visitors(reads: ReadSettings, per_ip_invalid_session: Rate) -> str:
    """``check-config``'s line on signed-out visitors: what they may read, and at what rate."""
    served = (
        f"{', '.join(reads.public_routes)} from the cache, misses {rates_text(reads.per_address)} "
        "per address (reads.per_address)"
        if reads.public_routes
        else "no reads (no reads.public_routes)"
    )
    return (
        f"visitors: {served}; invalid sessions {per_ip_invalid_session} per address "
        "(limits.per_ip_invalid_session)"
    )


def describe(reads: ReadSettings, budget: Rate) -> list[str]:
    """What the reads can serve."""
    c = capacity(reads, budget)
    lines = [
        f"  reads can serve {c.calls:g} upstream calls a minute (reads.budget, under "
        f"limits.upstream); the workspace answers' refreshes take {c.workspace_calls:g}",
    ]
    if not c.reads_per_view:
        return lines
    kept = f"kept {c.kept_seconds}s" if c.kept_seconds else "not kept"
    lines.append(
        f"  a signed-in page view reads {c.reads_per_view} customer answer(s), {kept}: about "
        f"{c.page_views(1)} page views a minute from customers opening one page, "
        f"{c.page_views(STOREFRONT_VIEWS)} from customers opening {STOREFRONT_VIEWS} a minute"
    )
    share = c.per_customer / c.calls if c.calls else 0
    lines.append(
        f"  one customer may spend {c.per_customer:g} calls a minute (reads.per_customer)"
        + (": the whole slice" if share >= 1 else f", {share:.0%} of the slice")
    )
    return lines
