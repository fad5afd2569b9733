"""Tests of monitoring/: the Prometheus rules (promtool), the example scrape config, the Grafana
dashboard, and that both only use metric names a real agent exports."""

from __future__ import annotations

import sys
from pathlib import Path

here = Path(__file__).parent
# Helpers are imported by name (--import-mode=importlib); the agent harness is service_e2e's.
sys.path.insert(0, str(here))
sys.path.insert(0, str(here.parent / "service_e2e"))
