"""A separate process for the SIGKILL test: enqueues jobs into an outbox and delivers them until killed.

Usage: python outbox_child.py STATE_DIR PEER_URL N_JOBS. Prints "enqueued" once the jobs are committed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from outbox_peer import ItemHandler

from edge_agent.config import OutboxSection
from edge_agent.outbox import Outbox

GROUPS = 4


async def main(state_dir: Path, url: str, n_jobs: int) -> None:
    handler = ItemHandler(url, timeout=30.0)
    section = OutboxSection.model_validate({"retry_base": 0.01, "retry_cap": 0.2})
    outbox = Outbox(state_dir, section, {"item": handler}, concurrency=4)
    await outbox.start()
    last: dict[int, int] = {}
    for i in range(n_jobs):
        group = i % GROUPS
        deps = [last[group]] if group in last else []
        last[group] = await outbox.enqueue("item", f"g{group}", {"key": f"k{i}"}, deps=deps)
    print("enqueued", flush=True)
    await asyncio.Event().wait()  # deliver until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
