"""Recording: every frame of every source, at full resolution, into gzip'd CSV segment files.

    frames (event loop) ─▶ Recorder.add (a list append) ─hand-off─▶ writer thread
                                                                     ├─ Segmenter (sans-I/O): which segment
                                                                     ├─ csvgz: rows -> gzip members
                                                                     └─ files + sidecars (state dir)
    finished segment ─▶ outbox: S3 upload (edge_agent.s3) ─▶ Atlas test-run data registration (jobs.py)

model.py holds the segment record and names, segmenter.py the pure routing and rotation,
csvgz.py the file format (write, recover, read), writer.py the thread, retention.py the disk budget
rule, recorder.py the component, jobs.py the Atlas registration, export.py `edge-agent export`.
"""

from edge_agent.recorder.model import SegmentInfo, StepRef
from edge_agent.recorder.recorder import Recorder

__all__ = ["Recorder", "SegmentInfo", "StepRef"]
