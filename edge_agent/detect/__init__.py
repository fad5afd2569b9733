"""Detection (sans-I/O): local rules per channel, lens label mapping, the anomaly tracker.

`Detector` is the entry point: `on_frame`, `on_link`, `on_inference`, `tick`, `close_all`.
"""

from edge_agent.detect.anomaly import (
    Anomaly,
    AnomalyClosed,
    AnomalyEvent,
    AnomalyKey,
    AnomalyOpened,
    AnomalyUpdated,
    Priority,
    Severity,
    priority_for,
)
from edge_agent.detect.baseline import BaselineFileError, RobustStats, dump_baselines, load_baselines
from edge_agent.detect.detector import Detector, LensAnomalyOptions, SourcePlan
from edge_agent.detect.lens_labels import InferenceLike, LensLabelCheck
from edge_agent.detect.rules import RuleConfigError
from edge_agent.detect.tracker import AnomalySpec, AnomalyTracker, Debounce

__all__ = [
    "Anomaly",
    "AnomalyClosed",
    "AnomalyEvent",
    "AnomalyKey",
    "AnomalyOpened",
    "AnomalySpec",
    "AnomalyTracker",
    "AnomalyUpdated",
    "BaselineFileError",
    "Debounce",
    "Detector",
    "InferenceLike",
    "LensAnomalyOptions",
    "LensLabelCheck",
    "Priority",
    "RobustStats",
    "RuleConfigError",
    "Severity",
    "SourcePlan",
    "dump_baselines",
    "load_baselines",
    "priority_for",
]
