"""Incremental Content-Encoding decoding: every coding, any split, bounded output, clear failures."""

from __future__ import annotations

import gzip
import random
import sys
import zlib
from collections.abc import Callable

import brotli  # type: ignore[import-untyped]
import pytest

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd
from visionality.metering.decoding import PIECE, DecodeError, StreamDecoder, UnsupportedEncoding, decode_body

PLAIN = b"".join(b'data: {"n":%d,"text":"lorem ipsum"}\n\n' % i for i in range(400))


def _raw_deflate(b: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(b) + c.flush()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


def _stream_decode(dec: StreamDecoder, chunks: list[bytes]) -> bytes:
    out = b"".join(p for c in chunks for p in dec.feed(c))
    return out + b"".join(dec.flush())


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_each_coding_in_random_splits(coding: str) -> None:
    enc = ENCODERS[coding](PLAIN)
    rng = random.Random(coding)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(enc)), min(len(enc) - 1, rng.randint(1, 30))))
        chunks = [enc[a:b] for a, b in zip([0, *cuts], [*cuts, len(enc)], strict=True)]
        assert _stream_decode(StreamDecoder(coding), chunks) == PLAIN


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_each_coding_byte_at_a_time(coding: str) -> None:
    enc = ENCODERS[coding](PLAIN[:2000])
    assert _stream_decode(StreamDecoder(coding), [enc[i : i + 1] for i in range(len(enc))]) == PLAIN[:2000]


def test_gzip_sync_flushed_stream_decodes_as_it_arrives() -> None:
    """What an SSE server does: one Z_SYNC_FLUSH per event, so each event is readable on arrival."""
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    dec = StreamDecoder("gzip")
    for i in range(5):
        event = b"data: %d\n\n" % i
        assert b"".join(dec.feed(c.compress(event) + c.flush(zlib.Z_SYNC_FLUSH))) == event


def test_raw_deflate_is_accepted() -> None:
    assert decode_body(_raw_deflate(PLAIN), "deflate") == PLAIN


def test_multi_member_gzip_and_multi_frame_zstd() -> None:
    assert decode_body(gzip.compress(b"a" * 10) + gzip.compress(b"b" * 10), "gzip") == b"a" * 10 + b"b" * 10
    assert decode_body(zstd.compress(b"x") + zstd.compress(b"y"), "zstd") == b"xy"


def test_stacked_codings_undone_in_reverse() -> None:
    enc = brotli.compress(gzip.compress(PLAIN))
    assert decode_body(enc, "gzip, br") == PLAIN


@pytest.mark.parametrize("coding", [None, "", "identity", "IDENTITY"])
def test_identity(coding: str | None) -> None:
    dec = StreamDecoder(coding)
    assert dec.identity
    assert _stream_decode(dec, [b"abc", b"def"]) == b"abcdef"


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_bomb_output_is_emitted_in_bounded_pieces(coding: str) -> None:
    bomb = ENCODERS[coding](b"\0" * (8 * 1024 * 1024))
    total = 0
    for piece in StreamDecoder(coding).feed(bomb):
        # brotli's output_buffer_limit may overshoot by one internal block; still bounded.
        assert len(piece) <= 2 * PIECE
        total += len(piece)
    assert total == 8 * 1024 * 1024


def test_decode_body_limit() -> None:
    with pytest.raises(DecodeError):
        decode_body(gzip.compress(b"\0" * 100_000), "gzip", limit=50_000)


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_corrupt_input_raises_decode_error(coding: str) -> None:
    with pytest.raises(DecodeError):
        decode_body(b"this is not compressed at all, not even close" * 3, coding)


def test_unsupported_coding() -> None:
    with pytest.raises(UnsupportedEncoding):
        StreamDecoder("compress")
