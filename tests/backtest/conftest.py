"""Backtest tests: the live reference (backtest_reference.py) is imported by name."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # helpers are imported by name (--import-mode=importlib)
