"""Fixtures and hooks for the whole suite; what tests share is in tests/helpers.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.browsers import browser
from tests.helpers import TRIED, Harness, open_harness

__all__ = ["browser"]  # a fixture for the browser tests


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with open_harness() as h:
        yield h


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TRIED:
        return
    terminalreporter.section("what the suites tried")
    for suite in sorted(TRIED):
        counts = ", ".join(f"{what} x{n}" for what, n in sorted(TRIED[suite].items()))
        terminalreporter.write_line(f"{suite}: {counts}")
