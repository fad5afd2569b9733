"""The live page's tests: helpers imported by name (importlib import mode), the whole-agent helpers of
tests/e2e (the simulated bench on a pty, config, bounded waits) among them."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "e2e"))

from chromium import CHROMIUM_ARGS  # noqa: E402  (found through the path set above)
from live_helpers import chromium_or_fail  # noqa: E402


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium, launched for one test."""
    executable = chromium_or_fail()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()
