"""Evidence: the per-source ring of recent frames (ring.py, sans-I/O), the planner that says which
span of which sources' frames is due when (planner.py, sans-I/O), and the atomic CSV + JSON writer
(writer.py)."""

from edge_agent.evidence.planner import SCHEDULING_SLACK, EvidencePlanner, EvidenceWindow
from edge_agent.evidence.ring import DEFAULT_MAX_FRAMES_PER_SECOND, EvidenceRings, FrameRing
from edge_agent.evidence.writer import (
    EvidenceFiles,
    check_stem,
    evidence_dir,
    merge_by_time,
    remove_stale_tmp,
    write_evidence,
    write_evidence_async,
)

__all__ = [
    "DEFAULT_MAX_FRAMES_PER_SECOND",
    "SCHEDULING_SLACK",
    "EvidenceFiles",
    "EvidencePlanner",
    "EvidenceRings",
    "EvidenceWindow",
    "FrameRing",
    "check_stem",
    "evidence_dir",
    "merge_by_time",
    "remove_stale_tmp",
    "write_evidence",
    "write_evidence_async",
]
