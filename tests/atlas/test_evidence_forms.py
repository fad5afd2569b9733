"""The forms refused evidence is retried in (sans-I/O): compressed, split, trimmed; and the texts."""

from __future__ import annotations

import gzip

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.atlas.client import MAX_COMMENT_CHARS
from edge_agent.atlas.evidence_forms import (
    MAX_PIECES,
    MIN_SPLIT_BYTES,
    EvidencePlan,
    KeptFile,
    Piece,
    build_piece,
    retry_delay,
    split_rows,
)
from edge_agent.atlas.incident_text import insert_before_marker, kept_locally_note, opening_comment

HEADER = b"wall_time,offset_s,source,device_time,supply_v\n"


def table(offsets: list[float]) -> bytes:
    rows = [f"2026-01-01T00:00:{i:09.6f},{o:.6f},bench,,{12 + i / 1000!r}\n" for i, o in enumerate(offsets)]
    return HEADER + "".join(rows).encode()


def plan(*names: str, span_end_s: float | None = None) -> EvidencePlan:
    files = [KeptFile(n, f"/state/evidence/{n}", 100_000, "HTTP 413") for n in names]
    return EvidencePlan.start(files, span_end_s)


def rows_of(piece_bytes: bytes) -> list[bytes]:
    lines = gzip.decompress(piece_bytes).splitlines(keepends=True)
    assert lines[0] == HEADER  # every piece is a CSV of its own
    return lines[1:]


def test_the_first_form_is_each_file_whole_and_compressed() -> None:
    p = plan("x_open.csv", "x_open.json")
    assert [p.name(piece) for piece in p.pieces] == ["x_open.csv.gz", "x_open.json.gz"]
    data = table([-1.0, 0.0, 1.0])
    body, rows = build_piece(p, p.pieces[0], data)
    assert gzip.decompress(body) == data and rows == 3


def test_a_file_refused_for_something_else_than_its_size_is_retried_as_it_was_first() -> None:
    files = [KeptFile("x.csv", "/e/x.csv", 100_000, "HTTP 502", too_large=False)]
    p = EvidencePlan.start(files)
    assert [p.name(x) for x in p.pieces] == ["x.csv"]  # the same name: finds what a lost answer attached
    data = table([0.0, 1.0])
    assert build_piece(p, p.pieces[0], data) == (data, 2)
    p.pieces[0].attachment_id = "a"
    assert p.describe() == "as it was"
    p.pieces[0].attachment_id = None
    # ... and a 413 then makes it compressed first, before any split.
    assert p.refused(p.pieces[0], 100_000, 2, None) == "compressed"
    assert [p.name(x) for x in p.pieces] == ["x.csv.gz"] and gzip.decompress(
        build_piece(p, p.pieces[0], data)[0]
    ) == data
    assert p.refused(p.pieces[0], 50_000, 2, None) == "split"


def test_a_refusal_that_is_not_about_size_keeps_the_form() -> None:
    p = plan("x.csv", "x.json")
    csv_piece, json_piece = p.pieces
    assert p.refused(json_piece, 50_000, 0, None) == "same"  # a summary cannot be split
    assert p.refused(csv_piece, MIN_SPLIT_BYTES - 1, 500, None) == "same"  # no proxy limit is that low
    assert p.refused(csv_piece, 50_000, 500, 60_000) == "same"  # a larger upload went through before
    assert len(p.pieces) == 2


def test_a_413_halves_only_the_refused_piece_and_attached_parts_stay() -> None:
    p = plan("x.csv")
    assert p.refused(p.pieces[0], 50_000, 1000, None) == "split"
    assert [p.name(x) for x in p.pieces] == ["x.rows1-500.csv.gz", "x.rows501-1000.csv.gz"]
    p.pieces[0].attachment_id = "a1"
    assert p.refused(p.pieces[1], 25_000, 1000, None) == "split"
    assert [(x.rows, x.attachment_id) for x in p.pieces] == [
        ((0, 500), "a1"),
        ((500, 750), None),
        ((750, 1000), None),
    ]
    assert [p.name(x) for x in p.waiting()] == ["x.rows501-750.csv.gz", "x.rows751-1000.csv.gz"]


def test_parts_are_cut_under_the_largest_size_accepted_before() -> None:
    p = plan("x.csv")
    # 100 kB refused, 20 kB went through before: parts of at most 16 kB (80 %) -> 7 parts.
    assert p.refused(p.pieces[0], 100_000, 7000, 20_000) == "split"
    assert len(p.pieces) == 7 and p.pieces[0].rows == (0, 1000)
    # A tiny size accepted before (a JSON summary) would need too many parts: halves instead.
    q = plan("y.csv")
    assert q.refused(q.pieces[0], 100_000, 7000, 1000) == "split" and len(q.pieces) == 2


def test_when_parts_would_not_fit_in_one_comment_the_csv_is_trimmed_to_the_incident() -> None:
    p = plan("x.csv", "x.json", span_end_s=2.0)
    p.pieces[1].attachment_id = "json"
    csv_first = p.pieces[0]
    p.pieces[0:1] = [Piece(0, bounds) for bounds in split_rows(0, 900, MAX_PIECES - 1)]
    assert len(p.pieces) == MAX_PIECES
    p.pieces[0].attachment_id = "part1"
    assert csv_first not in p.pieces
    assert p.refused(p.pieces[1], 40_000, 900, None) == "trimmed"
    assert [(p.name(x), x.attachment_id) for x in p.pieces] == [
        ("x.incident.csv.gz", None),
        ("x.json.gz", "json"),
    ]
    data = table([-2.0, -1.0, 0.0, 0.5, 2.0, 2.5, 3.0])
    body, rows = build_piece(p, p.pieces[0], data)
    assert rows == 3 and [r.split(b",")[1] for r in rows_of(body)] == [b"0.000000", b"0.500000", b"2.000000"]
    # Trimmed, and refused whole: split again (by the trimmed rows).
    assert p.refused(p.pieces[0], 40_000, 3, None) == "split"
    assert [p.name(x) for x in p.waiting()] == ["x.incident.rows1-1.csv.gz", "x.incident.rows2-3.csv.gz"]
    for i, piece in enumerate(p.waiting()):
        piece.attachment_id = f"t{i}"
    assert p.done and p.describe() == (
        "gzip-compressed, in 3 pieces (rows as named, each with the header), trimmed to the incident's"
        " span (the context before and after is left out)"
    )


def test_trimmed_while_the_incident_is_still_open_keeps_everything_from_its_start() -> None:
    p = plan("x.csv")
    p.pieces[0].trimmed = True
    body, rows = build_piece(p, p.pieces[0], table([-1.0, 0.0, 10.0]))
    assert rows == 2 and len(rows_of(body)) == 2


def test_a_trimmed_piece_with_no_room_left_keeps_its_form() -> None:
    p = plan("x.csv")
    p.pieces = [Piece(0, bounds, True) for bounds in split_rows(0, 100, MAX_PIECES)]
    assert p.refused(p.pieces[0], 40_000, 100, None) == "same"


@settings(max_examples=60, deadline=None)
@given(
    offsets=st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=80),
    refusals=st.lists(st.integers(0, 20), max_size=12),
)
def test_the_pieces_always_hold_every_row_once_in_order(offsets: list[float], refusals: list[int]) -> None:
    data = table(offsets)
    p = plan("x.csv")
    for pick in refusals:  # refuse some waiting piece again and again, as a strict proxy would
        waiting = p.waiting()
        piece = waiting[pick % len(waiting)]
        _, rows = build_piece(p, piece, data)
        if p.refused(piece, MIN_SPLIT_BYTES * 4, rows, None) == "trimmed":
            break
        waiting[0].attachment_id = f"id{pick}"  # some parts go through in between
    trimmed = any(x.trimmed for x in p.pieces)
    expected = [r for r in data.splitlines(keepends=True)[1:]]
    if trimmed:
        expected = [r for r in expected if float(r.split(b",")[1]) >= 0]
    got = [row for piece in p.pieces for row in rows_of(build_piece(p, piece, data)[0])]
    assert got == expected


def test_pieces_already_in_atlas_are_adopted_by_name() -> None:
    p = plan("x.csv", "x.json")
    assert p.refused(p.pieces[0], 50_000, 10, None) == "split"
    assert p.adopt({"x.rows1-5.csv.gz": "a", "x.csv.gz": "old", "x.json.gz": ""}) == 1
    assert [p.name(x) for x in p.waiting()] == ["x.rows6-10.csv.gz", "x.json.gz"]
    again = EvidencePlan.from_json(p.to_json())
    assert again == p


def test_the_backoff_doubles_from_the_first_step_to_the_cap() -> None:
    assert [retry_delay(n, 10.0, 900.0) for n in (1, 2, 3, 7, 8, 500)] == [10, 20, 40, 640, 900, 900]


def test_the_kept_note_goes_before_the_marker_which_stays_last_even_when_cut() -> None:
    summary = {"id": "i-1", "bench": "b", "started_at": "t", "members": [{"description": "d"}]}
    opening = opening_comment(summary, ["x_open.csv"])
    deferred = [{"name": "x_open.csv", "path": "/var/lib/edge-agent/evidence/i-1.open.csv", "bytes": 2048,
                 "reason": "HTTP 413: too large", "kept": True}]  # fmt: skip
    note = kept_locally_note(deferred)
    text = insert_before_marker(opening, note)
    assert text.startswith(opening.rpartition("\n\n")[0]) and note in text
    assert text.splitlines()[-1] == "edge-agent:i-1:open"
    assert "x_open.csv (2.0 kB) at /var/lib/edge-agent/evidence/i-1.open.csv" in note
    huge = insert_before_marker(opening, "n" * 20_000)
    assert len(huge) <= MAX_COMMENT_CHARS and huge.splitlines()[-1] == "edge-agent:i-1:open"
