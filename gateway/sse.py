"""Whole SSE events out of a streamed answer's reads, so that the error event the gateway adds
when an upstream breaks off never lands inside a half-sent event (the client would read one
garbled event, not the error).

An event ends at a blank line; a line ends at CR LF, LF or CR. So an event's end is where a
line's last byte (LF or CR) meets an empty line's first (LF or CR), except LF after CR, which is
one CR LF: the byte pairs LF LF, LF CR and CR CR, and the LF after the CR when it is CR LF.
"""

from __future__ import annotations

ENDS = (b"\n\n", b"\n\r", b"\r\r")


class WholeEvents:
    """Bytes in, whole events out; what follows the last event's end waits for more."""

    def __init__(self) -> None:
        self._held = b""
        self._cr = False  # what went out ends with an event's CR: an LF next is its CR LF

    def feed(self, data: bytes) -> bytes:
        """What of the bytes so far can go out now: up to the end of the last whole event."""
        buffer = self._held + data
        if not buffer:
            return b""
        end = 1 if self._cr and buffer[:1] == b"\n" else 0
        since = max(0, len(self._held) - 1)  # what was held has no event's end
        for pair in ENDS:
            found = buffer.rfind(pair, since)
            if found >= 0:
                end = max(end, found + 2)
        if end and buffer[end - 1 : end] == b"\r" and buffer[end : end + 1] == b"\n":
            end += 1
        self._held = buffer[end:]
        self._cr = end > 0 and not self._held and buffer[end - 1 : end] == b"\r"
        return buffer[:end]

    def rest(self) -> bytes:
        """What was held: the end of an answer that did not end with a whole event."""
        held, self._held = self._held, b""
        return held
