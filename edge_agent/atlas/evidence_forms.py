"""The forms refused evidence is retried in (pure): compressed, split into parts, trimmed to the incident.

A file refused for something other than its size (5xx on the upload path, a null attachment id) is
first retried as it was: the same name, so a retry also finds what an attempt of unknown outcome
attached. When Atlas (or a proxy in front of it) refuses a file as too large (413), the agent does not
send the same bytes again and again. It tries, in this order of preference:

1. the whole file, gzip-compressed (`<name>.gz`): a CSV of sensor values shrinks four to ten times;
2. on a 413 for a CSV piece, that piece split into parts by rows, each with the header, each gzipped
   (`<stem>.rows1-2500.csv.gz`): into parts under the largest upload Atlas accepted before when one is
   known and that needs no more parts than a comment can link, else in halves. Only the refused piece
   is split: parts already attached stay attached, so a refusal never makes a duplicate;
3. when splitting would need more parts than one comment can link (`MAX_PIECES`), the CSV trimmed to
   the incident's span (the `pre` and `post` context dropped: `offset_s` from 0 to the incident's
   end), compressed, and split again if need be (`<stem>.incident.rows...`).

A piece is not split when a larger upload was accepted before (the refusal is then not about size),
nor below `MIN_SPLIT_BYTES` (no proxy limit is that low; the refusal is about something else). Such a
piece is retried as it is, with backoff, until it is accepted or the retries run out.

The CSV's rows are one line each (the evidence writer writes numbers and names; see
edge_agent/evidence/writer.py), so parts are cut at line ends.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_agent.atlas.client import MAX_COMMENT_ATTACHMENTS

# What one link comment can carry: the pieces of one refused upload are linked by one comment.
MAX_PIECES = MAX_COMMENT_ATTACHMENTS
# Below this a refused piece is not split: no proxy limit is that small (nginx's default is 1 MiB).
MIN_SPLIT_BYTES = 4096
# Parts are aimed this far under the largest size accepted before (multipart framing, row sizes vary).
SPLIT_MARGIN = 0.8
GZIP_TYPE = "application/gzip"


def content_type(plan: EvidencePlan, piece: Piece, guess: Callable[[str], str]) -> str:
    return GZIP_TYPE if piece.compressed else guess(plan.files[piece.file].name)


@dataclass(slots=True)
class KeptFile:
    """One evidence file Atlas refused: its Atlas name, where it is on disk, why it was refused."""

    name: str
    path: str
    size: int
    reason: str
    too_large: bool = True  # refused for its size (413): retried compressed from the start

    @property
    def is_csv(self) -> bool:
        return self.name.endswith(".csv")


@dataclass(slots=True)
class Piece:
    """What one upload request carries: a whole file, or data rows [first, end) of a CSV (of the rows
    inside the incident's span when `trimmed`), gzipped when `compressed` (parts always are)."""

    file: int
    rows: tuple[int, int] | None = None
    trimmed: bool = False
    attachment_id: str | None = None
    compressed: bool = True


@dataclass(slots=True)
class EvidencePlan:
    files: list[KeptFile]
    pieces: list[Piece]
    span_end_s: float | None = None  # the incident's end, seconds from its start (None: still open)

    @classmethod
    def start(cls, files: Sequence[KeptFile], span_end_s: float | None = None) -> EvidencePlan:
        """Each file whole: compressed when it was refused as too large, else as it was."""
        pieces = [Piece(i, compressed=f.too_large) for i, f in enumerate(files)]
        return cls(list(files), pieces, span_end_s)

    def name(self, piece: Piece) -> str:
        kept = self.files[piece.file]
        if not piece.compressed:
            return kept.name
        if not kept.is_csv:
            return f"{kept.name}.gz"
        stem = kept.name.removesuffix(".csv")
        if piece.trimmed:
            stem += ".incident"
        if piece.rows is not None:
            stem += f".rows{piece.rows[0] + 1}-{piece.rows[1]}"
        return f"{stem}.csv.gz"

    def waiting(self) -> list[Piece]:
        return [p for p in self.pieces if p.attachment_id is None]

    @property
    def done(self) -> bool:
        return not self.waiting()

    def attached(self) -> list[tuple[str, str]]:
        """(name, attachment id) of every piece attached, in the plan's order."""
        return [(self.name(p), p.attachment_id) for p in self.pieces if p.attachment_id is not None]

    def adopt(self, by_name: Mapping[str, str]) -> int:
        """Take the ids of pieces Atlas already holds (an earlier attempt whose answer was lost, or one
        made before a restart). Returns how many were adopted."""
        adopted = 0
        for piece in self.waiting():
            found = by_name.get(self.name(piece))
            if found:
                piece.attachment_id = found
                adopted += 1
        return adopted

    def refused(self, piece: Piece, size: int, rows: int, largest_accepted: int | None) -> str:
        """Atlas answered 413 to `piece` (`size` bytes as sent; `rows` data rows in its source, the
        whole or the trimmed CSV). Changes the plan to the next form; returns what was done:
        "compressed", "split", "trimmed" or "same" (retry as it is)."""
        if largest_accepted is not None and largest_accepted >= size:
            return "same"  # a larger upload went through: the size is not why
        if not piece.compressed:
            piece.compressed = True
            return "compressed"
        kept = self.files[piece.file]
        if not kept.is_csv or size < MIN_SPLIT_BYTES:
            return "same"
        first, end = piece.rows if piece.rows is not None else (0, rows)
        room = MAX_PIECES - len(self.pieces) + 1  # this piece's place is reused
        parts = 2
        if largest_accepted:
            fitting = math.ceil(size / (largest_accepted * SPLIT_MARGIN))
            if fitting <= room:
                parts = max(2, fitting)
        parts = min(parts, end - first)
        if 2 <= parts <= room:
            at = self.pieces.index(piece)
            self.pieces[at : at + 1] = [
                Piece(piece.file, bounds, piece.trimmed) for bounds in split_rows(first, end, parts)
            ]
            return "split"
        if not piece.trimmed:
            # The whole file's pieces give way to the trimmed file (parts of the untrimmed one that were
            # attached stay in the session but are not linked: the trimmed file says it all).
            others = [p for p in self.pieces if p.file != piece.file]
            at = min((i for i, p in enumerate(self.pieces) if p.file == piece.file), default=len(others))
            self.pieces = [*others[:at], Piece(piece.file, None, True), *others[at:]]
            return "trimmed"
        return "same"

    def describe(self) -> str:
        """How the attached pieces were sent, for the comment that links them."""
        attached = [p for p in self.pieces if p.attachment_id is not None]
        words = ["gzip-compressed"] if any(p.compressed for p in attached) else ["as it was"]
        if any(p.rows is not None for p in attached):
            words.append(f"in {len(attached)} pieces (rows as named, each with the header)")
        if any(p.trimmed for p in attached):
            words.append("trimmed to the incident's span (the context before and after is left out)")
        return ", ".join(words)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [asdict(f) for f in self.files],
            "pieces": [
                {**asdict(p), "rows": list(p.rows) if p.rows is not None else None} for p in self.pieces
            ],
            "span_end_s": self.span_end_s,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> EvidencePlan:
        files = [KeptFile(**f) for f in raw["files"]]
        pieces = []
        for p in raw["pieces"]:
            rows = p.get("rows")
            bounds = (int(rows[0]), int(rows[1])) if rows is not None else None
            pieces.append(
                Piece(
                    int(p["file"]),
                    bounds,
                    bool(p.get("trimmed")),
                    p.get("attachment_id"),
                    bool(p.get("compressed", True)),
                )
            )
        span = raw.get("span_end_s")
        return cls(files, pieces, float(span) if span is not None else None)


def split_rows(first: int, end: int, parts: int) -> list[tuple[int, int]]:
    """[first, end) in `parts` consecutive ranges of (nearly) equal row counts."""
    count = end - first
    bounds = [first + (count * i) // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]


def gzip_bytes(data: bytes) -> bytes:
    """gzip with no timestamp: the same evidence always compresses to the same bytes."""
    return gzip.compress(data, compresslevel=6, mtime=0)


@dataclass(slots=True)
class CsvRows:
    header: bytes
    rows: list[bytes] = field(default_factory=list)


def csv_rows(data: bytes, *, trimmed: bool = False, span_end_s: float | None = None) -> CsvRows:
    """The header line and the data lines of an evidence CSV; `trimmed`: only the rows inside the
    incident's span (0 <= offset_s <= span_end_s; all rows from 0 on while the end is unknown)."""
    lines = data.splitlines(keepends=True)
    if not lines:
        return CsvRows(b"")
    header, rows = lines[0], lines[1:]
    if not trimmed:
        return CsvRows(header, rows)
    columns = next(csv.reader([header.decode("utf-8", "replace")]), [])
    if "offset_s" not in columns:
        return CsvRows(header, rows)
    at = columns.index("offset_s")
    kept = []
    for line in rows:
        values = next(csv.reader([line.decode("utf-8", "replace")]), [])
        try:
            offset = float(values[at])
        except (IndexError, ValueError):
            continue
        if offset >= 0 and (span_end_s is None or offset <= span_end_s):
            kept.append(line)
    return CsvRows(header, kept)


def build_piece(plan: EvidencePlan, piece: Piece, data: bytes) -> tuple[bytes, int]:
    """The bytes one piece uploads and how many data rows its source has (to split it)."""
    kept = plan.files[piece.file]
    whole = piece.rows is None and not piece.trimmed
    if whole or not kept.is_csv:
        rows = max(0, len(data.splitlines()) - 1) if kept.is_csv else 0
        return (gzip_bytes(data) if piece.compressed else data), rows
    table = csv_rows(data, trimmed=piece.trimmed, span_end_s=plan.span_end_s)
    first, end = piece.rows if piece.rows is not None else (0, len(table.rows))
    return gzip_bytes(table.header + b"".join(table.rows[first:end])), len(table.rows)


def retry_delay(failures: int, first: float, cap: float) -> float:
    """Wait after the `failures`-th refusal in a row of the same form: first, 2x, 4x ... up to cap."""
    return float(min(cap, first * 2 ** min(max(0, failures - 1), 40)))
