"""Step markers: lines such as `#STEP START warmup` / `#STEP END warmup PASS` become StepMarkers.

The regex runs only on lines that can match: when it is anchored (`^`) and starts with literal
characters, that literal prefix is checked first with `str.startswith`, so ordinary data lines never
pay for a regex match.
"""

from __future__ import annotations

import re

from edge_agent.frames import StepEdge, StepMarker, Verdict

_EDGES = {"start": StepEdge.START, "begin": StepEdge.START, "end": StepEdge.END, "stop": StepEdge.END}
_VERDICTS = {
    "pass": Verdict.PASS,
    "passed": Verdict.PASS,
    "ok": Verdict.PASS,
    "fail": Verdict.FAIL,
    "failed": Verdict.FAIL,
}
# Characters that stand for themselves in a regex (outside a class). Anything else ends the prefix.
_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789#!@%&_-=:;<>/~'\",` ")
_QUANTIFIERS = frozenset("*?+{")


def literal_prefix(pattern: str) -> str:
    """The literal text every match must start with, or "" when the pattern is not `^literal...`."""
    if not pattern.startswith("^") or _has_top_level_alternation(pattern):
        return ""
    prefix: list[str] = []
    for char in pattern[1:]:
        if char not in _LITERAL:
            # A quantifier makes the character before it optional or repeated: not a sure prefix.
            if char in _QUANTIFIERS and prefix:
                prefix.pop()
            break
        prefix.append(char)
    return "".join(prefix)


def _has_top_level_alternation(pattern: str) -> bool:
    """`^a|b` matches lines starting with "b" too, so a `|` outside any group voids the prefix."""
    depth = 0
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
    return False


class MarkerMatcher:
    """Turns marker lines into StepMarkers; pure (times are passed in)."""

    __slots__ = ("_prefix", "_regex", "source")

    def __init__(self, source: str, pattern: str) -> None:
        self.source = source
        self._regex = re.compile(pattern)
        self._prefix = literal_prefix(pattern)

    @property
    def prefix(self) -> str:
        """Literal text every marker line starts with ("" when the regex has no such prefix)."""
        return self._prefix

    def could_match(self, line: str) -> bool:
        return line.startswith(self._prefix)  # "" prefix: every line is a candidate

    def match(self, line: str, mono: float, wall: float) -> StepMarker | str | None:
        """A StepMarker, None when the line is no marker, or "bad" when it matched but makes no sense."""
        found = self._regex.search(line)
        if found is None:
            return None
        edge = _EDGES.get((found.group("edge") or "").strip().lower())
        name = (found.group("name") or "").strip()
        if edge is None or not name:
            return "bad"
        verdict_text = found.groupdict().get("verdict")
        verdict = _VERDICTS.get(verdict_text.strip().lower()) if verdict_text else None
        return StepMarker(self.source, edge, name, mono, wall, verdict)
