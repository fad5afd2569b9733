"""Loopback servers for the transport tests: small aiohttp apps that record what reached them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
