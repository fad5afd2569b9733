"""Debian's headless Chromium for the live page's tests and benchmark (bench/bench_live_page.py), driven
by Playwright with `executable_path`: no browser is ever downloaded."""

from __future__ import annotations

import os
import shutil

# Debian's chromium package; `make test` installs it (scripts/test-tools).
CHROMIUM = os.environ.get("EDGE_AGENT_CHROMIUM", "/usr/bin/chromium")
# Root, no sandbox, no GPU, no network but loopback: no background fetches, updates or first-run UI.
# (Playwright adds --headless itself.)
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--metrics-recording-only", "--mute-audio",
]  # fmt: skip
INSTALL_HINT = (
    f"headless Chromium not found at {CHROMIUM}: install Debian's browser with `sudo apt-get install"
    " chromium` (or set EDGE_AGENT_CHROMIUM to a Chromium binary); `make test` installs it"
    " (scripts/test-tools)"
)


def chromium_path() -> str | None:
    if os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which(CHROMIUM)
