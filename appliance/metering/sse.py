"""Incremental Server-Sent Events parser (WHATWG HTML "Server-sent events", section 9.2.6 "Event stream
interpretation"), built for metering a stream that must never be buffered.

- Bytes may split anywhere: inside a field name, inside a UTF-8 sequence, between the CR and LF of a CRLF.
- Lines end in CRLF, LF or CR; a leading UTF-8 BOM is dropped; ``:`` lines are comments; ``data`` lines of one
  event are joined with ``\\n``; one space after the colon is stripped; an event with no data is not dispatched.
- Each dispatched event comes with the offset, in the chunk just fed, right after the blank line that ended it:
  the include_usage filter uses it to pass every other event through byte for byte.
- Memory is bounded: a line longer than ``max_line`` keeps only its first bytes (for the field name) and its
  last ``TAIL`` bytes, and the event is flagged ``truncated`` (OpenAI's ``response.completed`` repeats the whole
  output text before ``usage``; its tail still holds the usage object).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser", "DEFAULT_MAX_LINE", "TAIL"]

DEFAULT_MAX_LINE = 4 * 1024 * 1024
TAIL = 64 * 1024
_HEAD = 64
_LF = 0x0A
_CR = 0x0D
_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    """The ``event:`` field; None when absent (the spec's default type "message")."""
    data: str
    truncated: bool = False
    """A line of this event overflowed ``max_line``: ``data`` holds only its tail."""


class SSEParser:
    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._max_line = max(max_line, 2 * TAIL)
        self._partial = bytearray()
        self._partial_head: bytes | None = None  # set once the partial line overflowed
        self._skip_lf = False
        self._started = False
        self._event: str | None = None
        self._data: list[bytes] = []
        self._data_len = 0
        self._truncated = False

    def feed(self, data: bytes) -> list[tuple[int, SSEEvent]]:
        """Parse more bytes; returns (offset in ``data`` just past the event's blank line, event) pairs."""
        out: list[tuple[int, SSEEvent]] = []
        n = len(data)
        pos = 0
        shift = 0  # bytes of an earlier chunk prepended to this one (BOM sniffing); offsets exclude them
        if not self._started and n:
            if len(self._partial) + n < 3 and _BOM.startswith(bytes(self._partial) + data):
                self._partial += data  # could still be a BOM; wait for more
                return out
            self._started = True
            if self._partial:
                shift = len(self._partial)
                data = bytes(self._partial) + data
                self._partial.clear()
                n = len(data)
            if data.startswith(_BOM):
                pos = 3
        if self._skip_lf and pos < n:
            self._skip_lf = False
            if data[pos] == _LF:
                pos += 1
        next_lf = next_cr = -2  # -2: not searched yet; n: none left in this chunk
        while pos < n:
            if next_lf < pos:
                f = data.find(b"\n", pos)
                next_lf = n if f < 0 else f
            if next_cr < pos:
                f = data.find(b"\r", pos)
                next_cr = n if f < 0 else f
            end = min(next_lf, next_cr)
            if end == n:
                self._add_partial(data, pos, n)
                break
            if end == next_cr:
                if end + 1 < n:
                    term = 2 if data[end + 1] == _LF else 1
                else:
                    term = 1
                    self._skip_lf = True  # a CRLF may be split across chunks
            else:
                term = 1
            if self._partial or self._partial_head is not None:
                self._add_partial(data, pos, end)
                line, head = bytes(self._partial), self._partial_head
                self._partial.clear()
                self._partial_head = None
            else:
                line, head = data[pos:end], None
            pos = end + term
            ev = self._line(line, head)
            if ev is not None:
                out.append((pos - shift, ev))
        return out

    def close(self) -> list[SSEEvent]:
        """End of stream: a last line and event that lack their terminators are dispatched anyway.

        The spec discards an unterminated event; a meter counts it, since servers are known to end a stream
        right after ``data: [DONE]`` without the blank line.
        """
        out: list[SSEEvent] = []
        if self._partial or self._partial_head is not None:
            line, head = bytes(self._partial), self._partial_head
            self._partial.clear()
            self._partial_head = None
            ev = self._line(line, head)
            if ev is not None:
                out.append(ev)
        ev = self._line(b"", None)
        if ev is not None:
            out.append(ev)
        return out

    def _add_partial(self, data: bytes, start: int, end: int) -> None:
        self._partial += data[start:end] if start or end != len(data) else data
        # Once a line has overflowed, only its last TAIL..2*TAIL bytes are kept.
        limit = self._max_line if self._partial_head is None else 2 * TAIL
        if len(self._partial) > limit:
            if self._partial_head is None:
                self._partial_head = bytes(self._partial[:_HEAD])
            del self._partial[:-TAIL]

    def _line(self, line: bytes, head: bytes | None) -> SSEEvent | None:
        if head is not None:
            # Overflowed line: the field name comes from its head, the value is its tail.
            colon = head.find(b":")
            field = head[:colon] if colon >= 0 else head
            if field == b"data":
                self._append_data(line, truncated=True)
            return None
        if not line:
            return self._dispatch()
        if line[0] == 0x3A:  # ":" comment
            return None
        colon = line.find(b":")
        if colon < 0:
            field, value = line, b""
        else:
            field, value = line[:colon], line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if field == b"data":
            self._append_data(value, truncated=False)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
        # "id" and "retry" do not matter to a meter.
        return None

    def _append_data(self, value: bytes, *, truncated: bool) -> None:
        self._data.append(value)
        self._data_len += len(value) + 1
        if truncated:
            self._truncated = True
        while self._data_len > self._max_line and len(self._data) > 1:
            dropped = self._data.pop(0)
            self._data_len -= len(dropped) + 1
            self._truncated = True

    def _dispatch(self) -> SSEEvent | None:
        event, self._event = self._event, None
        if not self._data:
            return None
        data = b"\n".join(self._data).decode("utf-8", "replace")
        ev = SSEEvent(event, data, self._truncated)
        self._data = []
        self._data_len = 0
        self._truncated = False
        return ev
