"""A read's rows written as the device spelled them (sans-I/O): the CSV text of a `FrameBatch` made from
its `DeviceText` (what the CSV decoder parsed) instead of from its floats, which costs no float
formatting, the recorder's largest cost (edge_agent/recorder/csvgz.py has the format).

Blanks are taken off and an integer gets `.0` after it (so the column reads as floats, as it does from
`repr`): float() reads the text as the very float the decoder made of it, and pandas too
(tests/recorder/test_pure.py). Only plain numbers are written so: a read with an exponent, `nan`, `inf`,
a `+` or a `_` anywhere, or a recorded column of both kinds (integers and decimals), is not (None: the
caller writes it from the floats).

Per read, not per cell: the read's text is taken apart in C-level passes. Which fields have a point is
read off its shape (the text without its digits and signs, compared with the first row's repeated). In
the common case (the fields in the device's order, integers only in the first or the last column), the
rows are not split into fields at all: the device's lines get their `.0` by one `map` each and their time
cells by one `%`; otherwise the fields are split and laid out column by column.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import add, sub

from edge_agent.frames import DeviceText

# What float() strips around a field (ASCII whitespace: a CRLF device's `\r`, padding), and the only bytes
# a plain number is made of once they are gone: `-12.500`, `.5`, `7.`, `0042` (float() took each field
# already, so a `-` can only lead and a field has at most one point).
_BLANKS = b" \t\r\x0b\x0c"
_PLAIN = b"0123456789.-"
_DIGITS_SIGN = b"0123456789-"  # a plain number without them: its point or nothing


def rows_from_text(
    text: DeviceText,
    monos: Sequence[float],
    start: float,
    time_text: str,
    has_device_time: bool,
) -> bytes | None:
    """CSV rows `<time_text>,<mono - start as %.6f>[,<device time>],<channels...>` of a read whose fields
    are `text` (one row per mono), the fields as the device sent them; None when they cannot be (see
    the module doc). With `has_device_time` the device's time field leads the channels (an empty cell
    when the port has none); without it a device time field is left out. `time_text` holds no '%'."""
    rows = len(monos)
    delimiter, width, time_index = text.delimiter, text.width, text.time_index
    plain = text.data.translate(None, _BLANKS.translate(None, delimiter))  # a blank may be the delimiter
    if plain.translate(None, _PLAIN + delimiter + b"\n"):
        return None  # an exponent, nan, inf, a `+` or a `_` somewhere
    order: list[int | None] = [f for f in range(width) if f != time_index]
    if has_device_time:  # its cell: the device's time field, or empty when the port has none
        order.insert(0, time_index)
    points = _points_by_shape(plain, delimiter, width, rows)
    ts = list(map(sub, monos, repeat(start)))
    if points is not None and order == list(range(width)) and all(points[1:-1]):
        return _line_rows(plain, delimiter, rows, points, time_text, ts)
    return _field_rows(plain, delimiter, width, order, points, time_text, ts)


def _points_by_shape(plain: bytes, delimiter: bytes, width: int, rows: int) -> list[bool] | None:
    """Whether each field of a row has a point, when every row has them where the first row has (one
    C-level pass: the rows without their digits and signs, each field's point or nothing between the
    delimiters, are compared with the first row's shape repeated); None when some row differs (or the
    delimiter could be part of a number or a line end)."""
    if len(delimiter) != 1 or delimiter in _PLAIN + b"\n":
        return None
    end = plain.find(b"\n")
    fields = (plain if end < 0 else plain[:end]).split(delimiter)
    if len(fields) != width:
        return None
    points = [b"." in field for field in fields]
    row = delimiter.join([b"." if point else b"" for point in points])
    if plain.translate(None, _DIGITS_SIGN) != b"\n".join([row] * rows):
        return None
    return points


def _line_rows(
    plain: bytes, delimiter: bytes, rows: int, points: list[bool], time_text: str, ts: list[float]
) -> bytes | None:
    """The rows from the device's lines as they are, but for the `.0` after the integers of the first
    and the last column (every other column has its point) and the time cells before them."""
    if delimiter != b",":
        plain = plain.replace(delimiter, b",")  # one byte, in no plain number
    lines = plain.split(b"\n")
    if len(lines) != rows:
        return None
    if not points[0] and len(points) > 1:
        lines = list(map(bytes.replace, lines, repeat(b","), repeat(b".0,"), repeat(1)))
    if not points[-1]:
        lines = list(map(add, lines, repeat(b".0")))
    cells: list[object] = [None] * (2 * rows)
    cells[0::2] = ts
    cells[1::2] = lines
    return (f"{time_text},%.6f,%b\n".encode() * rows) % tuple(cells)


def _field_rows(
    plain: bytes,
    delimiter: bytes,
    width: int,
    order: list[int | None],
    points: list[bool] | None,
    time_text: str,
    ts: list[float],
) -> bytes | None:
    """The rows from the fields, column by column: `order` says which field each cell is (None: an
    empty cell); a column's kind from `points`, or counted when the rows differ in shape (a column of
    both kinds refused)."""
    rows = len(ts)
    fields = plain.replace(b"\n", delimiter).decode("ascii").split(delimiter.decode("ascii"))
    if len(fields) != rows * width:
        return None
    for field in order:
        if field is None:
            continue  # the empty device-time cell
        column = fields[field::width]
        if points is not None:
            decimal = points[field]
        else:
            count = "".join(column).count(".")
            if count not in (0, rows):
                return None  # a column of both kinds: written from the floats
            decimal = count == rows
        if not decimal:
            fields[field::width] = list(map(add, column, repeat(".0")))
    if order != list(range(width)):  # the device time moved first, left out or an empty cell added
        cells: list[str] = [""] * (rows * len(order))
        for place, field in enumerate(order):
            if field is not None:
                cells[place :: len(order)] = fields[field::width]
        fields = cells
    return _joined_rows(fields, len(order), time_text, ts).encode()


def _joined_rows(cells: list[str], per_row: int, time_text: str, ts: list[float]) -> str:
    """CSV text of `cells` (`per_row` a row, rows after rows), each row led by `time_text` and its
    `t_s` (`ts[r]`, as `%.6f`). One `%` and one join, no pass over the text after them: a row's last
    cell, the newline and the next row's time cells are one item, made by the `%`."""
    rows = len(ts)
    lasts = cells[per_row - 1 :: per_row]
    bridges: list[object] = [None] * (2 * rows - 2)
    bridges[0::2] = lasts[:-1]
    bridges[1::2] = ts[1:]
    joins = (f"%s\n{time_text},%.6f\0" * (rows - 1)) % tuple(bridges)
    cells[per_row - 1 : -1 : per_row] = joins.split("\0")[:-1]
    cells.insert(0, f"{time_text},{ts[0]:.6f}")
    return ",".join(cells) + "\n"
