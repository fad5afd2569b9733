"""Evidence: the per-source ring of recent frames, packed and bounded in bytes (ring.py, blocks.py,
sans-I/O), the planner that says which
span of which sources' frames is due when (planner.py, sans-I/O), and the atomic CSV + JSON writer
(writer.py)."""

from edge_agent.evidence.blocks import ABSENT
from edge_agent.evidence.planner import SCHEDULING_SLACK, EvidencePlanner, EvidenceWindow
from edge_agent.evidence.ring import EvidenceRings
from edge_agent.evidence.slices import Coverage, MergedSlices, RingSlice
from edge_agent.evidence.source_ring import SourceRing
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
    "ABSENT",
    "SCHEDULING_SLACK",
    "Coverage",
    "EvidenceFiles",
    "EvidencePlanner",
    "EvidenceRings",
    "EvidenceWindow",
    "MergedSlices",
    "RingSlice",
    "SourceRing",
    "check_stem",
    "evidence_dir",
    "merge_by_time",
    "remove_stale_tmp",
    "write_evidence",
    "write_evidence_async",
]
