"""Settings for every property test.

No deadlines: a per-example time limit is a timed unit test, and fails on a loaded shared machine
for reasons that are not bugs (speed is measured in bench/). On CI (`CI` set, as `.ci/run` does)
the examples are derandomized: the same inputs every run, so a red CI is a regression, not the luck
of a draw; local runs keep exploring new inputs and print the blob to reproduce what they find.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("local", deadline=None, print_blob=True)
settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "local")
