"""The live page's tests: helpers imported by name (importlib import mode), the whole-agent helpers of
tests/e2e (the simulated bench on a pty, config, bounded waits) among them."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "e2e"))
