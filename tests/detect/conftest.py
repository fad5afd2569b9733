"""The detector tests' shared helpers (detect_helpers.py) are imported by name: this folder goes on
sys.path (pytest runs with --import-mode=importlib)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
