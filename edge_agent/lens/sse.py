"""Sans-I/O parser for Server-Sent Events (the lens output consumer), per the WHATWG rules the
service follows: `event:`, `data:` (joined by newlines), `id:`, `retry:`, comments, blank line ends
an event. Chunk boundaries may fall anywhere, even inside a CRLF or a UTF-8 sequence.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None  # the last event id in force for this event (what Last-Event-ID resumes from)


class SseParser:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._event = ""
        self._data: list[str] = []
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        text = self._pending + self._decoder.decode(chunk)
        out: list[SseEvent] = []
        start = 0
        length = len(text)
        while start < length:
            cut = _line_end(text, start)
            if cut < 0:
                break
            end, after = cut, cut + 1
            if text[cut] == "\r":
                if after >= length:
                    break  # a lone CR at the end may be the first half of CRLF: wait for more
                if text[after] == "\n":
                    after += 1
            event = self._line(text[start:end])
            if event is not None:
                out.append(event)
            start = after
        self._pending = text[start:]
        return out

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data), self.last_event_id)
            self._event = ""
            self._data = []
            return event
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None


def _line_end(text: str, start: int) -> int:
    lf = text.find("\n", start)
    cr = text.find("\r", start)
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)
