"""What the data path may hold in memory: `[memory]`, the one budget, and `[evidence]`, the ring of
recent frames that draws most of it (and the span an incident's evidence takes from it).
"""

from __future__ import annotations

from pydantic import Field

from edge_agent.config.values import Duration, Interval, Section

# 64 MiB holds the default 2 min of the fastest ordinary source (8 channels at 3 Mbaud, 5,000 lines/s:
# ~81 bytes a row, ~49 MB) or of four 921,600-baud ones (1,536 lines/s: ~15 MB each) beside the other
# consumers' usual few MB; wider or faster input is cut by bytes (and the evidence says so) instead of
# growing the process. Their caps (recorder 16 and a quarter a port + lens 8 + live page 3.5 MiB) leave
# the ring at least 35 with four ports.
DEFAULT_EVIDENCE_MEMORY_MB = 64.0


class MemorySection(Section):
    data_path_mb: float = Field(
        DEFAULT_EVIDENCE_MEMORY_MB,
        ge=4.0,
        le=64 * 1024,
        description="Memory budget of the data path (MiB): what the evidence ring, the recorder (frames"
        " waiting, rows not yet written), the lens send queue and the live page hold together, so what the"
        " process may grow by with its input. The ring holds what the others leave and gives way when"
        " they grow; their own caps (recorder.max_pending_mb plus 0.25 MiB a port, lens.queue_mb, the"
        " live page's 128 channels) must leave it a quarter. Together they are held a sixteenth below it:"
        " what the allocator keeps of what they free.",
    )


class EvidenceSection(Section):
    # The ring holds every frame of this span in memory: an hour is already far past one incident's
    # evidence (pre + a part + post), and memory grows with it.
    ring_seconds: Interval = Field(
        120.0, le=3600.0, description="Frames kept in memory for evidence (at most 1 h)."
    )
    memory_mb: float | None = Field(
        None,
        ge=1.0,
        le=64 * 1024,
        description="The evidence ring's own cap within memory.data_path_mb (at most that), all sources"
        " together (MiB); unset: whatever the data path's other consumers leave. Past it the oldest"
        " frames of the source holding the most are dropped first.",
    )
    pre: Duration = 10.0
    post: Duration = 5.0
    max_duration: Interval = 300.0
    plots: bool = Field(
        True,
        description="Upload a PNG plot with each incident's evidence (drawn in a child process, 1-3 s of"
        " CPU a plot); false on a bench PC too slow to spare it.",
    )
