"""The incremental SSE parser against the WHATWG event-stream rules, fed in every possible split."""

from __future__ import annotations

import random

import pytest
from visionality.metering.sse import TAIL, SSEEvent, SSEParser


def _parse(chunks: list[bytes], *, close: bool = False, max_line: int = 1 << 20) -> list[tuple[str | None, str]]:
    p = SSEParser(max_line=max_line)
    out = [(ev.event, ev.data) for c in chunks for _, ev in p.feed(c)]
    if close:
        out += [(ev.event, ev.data) for ev in p.close()]
    return out


STREAM = (
    b": keep-alive comment\n"
    b"event: message_start\n"
    b'data: {"type":"message_start"}\n'
    b"\n"
    b"data: first line\n"
    b"data:second line no space\n"
    b"data:  two spaces keep one\n"
    b"\n"
    b"id: 7\n"
    b"retry: 100\n"
    b"event: only-event-no-data\n"
    b"\n"
    b"data\n"
    b"\n"
    b"data: caf\xc3\xa9 \xe2\x82\xac\n"
    b"\n"
)
EXPECTED = [
    ("message_start", '{"type":"message_start"}'),
    (None, "first line\nsecond line no space\n two spaces keep one"),
    (None, ""),
    (None, "café €"),
]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings_and_fields(eol: bytes) -> None:
    assert _parse([STREAM.replace(b"\n", eol)]) == EXPECTED


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_two_way_split(eol: bytes) -> None:
    data = STREAM.replace(b"\n", eol)
    for i in range(len(data) + 1):
        assert _parse([data[:i], data[i:]]) == EXPECTED, i


def test_random_many_way_splits() -> None:
    rng = random.Random(1234)
    data = STREAM.replace(b"\n", b"\r\n") * 3
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 40)))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert _parse(chunks) == EXPECTED * 3


def test_byte_at_a_time() -> None:
    data = STREAM.replace(b"\n", b"\r\n")
    assert _parse([data[i : i + 1] for i in range(len(data))]) == EXPECTED


def test_offsets_point_just_past_the_blank_line() -> None:
    p = SSEParser()
    data = b"data: a\n\ndata: b\r\n\r\ndata: c"
    got = [(off, ev.data) for off, ev in p.feed(data)]
    assert got == [(9, "a"), (20, "b")]
    assert data[:9] == b"data: a\n\n" and data[9:20] == b"data: b\r\n\r\n"


def test_offsets_relative_to_each_chunk() -> None:
    p = SSEParser()
    assert p.feed(b"data: a\n") == []
    assert [(o, e.data) for o, e in p.feed(b"\ndata: b\n\n")] == [(1, "a"), (10, "b")]


def test_bom_is_dropped_even_when_split() -> None:
    data = b"\xef\xbb\xbfdata: x\n\n"
    for i in range(len(data) + 1):
        p = SSEParser()
        evs = [(o, e.data) for c in (data[:i], data[i:]) for o, e in p.feed(c)]
        assert [d for _, d in evs] == ["x"], i


def test_close_dispatches_unterminated_event() -> None:
    assert _parse([b"data: [DONE]"], close=True) == [(None, "[DONE]")]
    assert _parse([b"data: [DONE]\n"], close=True) == [(None, "[DONE]")]
    assert _parse([b"event: x\n"], close=True) == []


def test_overlong_line_keeps_tail_and_flags_truncated() -> None:
    p = SSEParser(max_line=2 * TAIL)
    body = b'{"type":"response.completed","text":"' + b"x" * (5 * TAIL) + b'","usage":{"input_tokens":3}}'
    evs: list[SSEEvent] = []
    for i in range(0, len(body), 1000):
        evs += [e for _, e in p.feed((b"event: response.completed\ndata: " if i == 0 else b"") + body[i : i + 1000])]
    evs += [e for _, e in p.feed(b"\n\n")]
    assert len(evs) == 1
    ev = evs[0]
    assert ev.truncated and ev.event == "response.completed"
    assert ev.data.endswith('"usage":{"input_tokens":3}}')
    assert len(ev.data) <= 2 * TAIL
    # The parser recovers: the next event is normal.
    assert [e.data for _, e in p.feed(b"data: ok\n\n")] == ["ok"]


def test_memory_bounded_for_endless_line() -> None:
    p = SSEParser(max_line=2 * TAIL)
    for _ in range(200):
        p.feed(b"data: " + b"y" * 10000)
    assert len(p._partial) <= 2 * TAIL  # white-box bound check


def test_non_sse_garbage_yields_nothing_and_does_not_raise() -> None:
    assert _parse([b'{"error": {"message": "nope"}}', b"\x00\xff\xfe binary \n\n"], close=True) == []
