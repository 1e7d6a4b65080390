"""Incremental Content-Encoding decoding for metering, with bounded output per step.

mitmproxy hands a streamed response to the stream callable still Content-Encoded (Anthropic sends gzip SSE
when the client accepts it): usage is silently lost unless the meter decodes it itself (vm0-ai/vm0 #8884,
envoyproxy/ai-gateway #1927). The client keeps receiving the original encoded bytes; only the meter's copy is
decoded. Output is produced in pieces of about ``PIECE`` bytes (brotli may overshoot by one internal block), so
a decompression bomb costs CPU but never memory.

Codings (RFC 9110 section 8.4.1): gzip (also multi-member), deflate (RFC 1950 zlib-wrapped; raw RFC 1951 deflate
is accepted too, as some servers send it), br (RFC 7932), zstd (RFC 8878, multi-frame), identity; a comma list
is decoded in reverse order of application.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli  # type: ignore[import-untyped]  # mitmproxy dependency, untyped

# The same zstd binding mitmproxy uses (mitmproxy/net/encoding.py): stdlib from 3.14, the backport before.
if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

__all__ = ["PIECE", "DecodeError", "StreamDecoder", "UnsupportedEncoding", "decode_body"]

PIECE = 64 * 1024


class UnsupportedEncoding(ValueError):
    """A Content-Encoding this module cannot decode."""


class DecodeError(ValueError):
    """The encoded bytes are corrupt."""


class _Stage(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]: ...

    def flush(self) -> Iterator[bytes]: ...


class _Zlib:
    """gzip and zlib-wrapped deflate; restarts on a new gzip member after the previous one ended."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._d = zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            try:
                out = self._d.decompress(data, PIECE)
            except zlib.error as e:
                raise DecodeError(str(e)) from e
            if out:
                yield out
            if self._d.eof:
                # Concatenated gzip members (RFC 1952 section 2.2); trailing garbage after zlib is ignored.
                data = self._d.unused_data
                self._d = zlib.decompressobj(self._wbits)
                if self._wbits < 32:
                    return
            else:
                data = self._d.unconsumed_tail

    def flush(self) -> Iterator[bytes]:
        try:
            out = self._d.flush()
        except zlib.error as e:
            raise DecodeError(str(e)) from e
        if out:
            yield out


class _Deflate:
    """HTTP "deflate" should be zlib-wrapped (RFC 9110 8.4.1.2) but raw deflate exists in the wild: sniff it."""

    def __init__(self) -> None:
        self._stage: _Zlib | None = None
        self._head = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._stage is None:
            self._head += data
            if len(self._head) < 2:
                return
            cmf, flg = self._head[0], self._head[1]
            wrapped = cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0
            self._stage = _Zlib(15 if wrapped else -15)
            data, self._head = self._head, b""
        yield from self._stage.feed(data)

    def flush(self) -> Iterator[bytes]:
        if self._stage is None:
            if self._head:
                raise DecodeError("truncated deflate stream")
            return
        yield from self._stage.flush()


class _Brotli:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            out: bytes = self._d.process(data, output_buffer_limit=PIECE)
            if out:
                yield out
            # Output held back by the limit comes out of further calls with empty input.
            while not self._d.is_finished():
                out = self._d.process(b"", output_buffer_limit=PIECE)
                if not out:
                    break
                yield out
        except brotli.error as e:
            raise DecodeError(str(e)) from e

    def flush(self) -> Iterator[bytes]:
        return iter(())


class _Zstd:
    def __init__(self) -> None:
        self._d = zstd.ZstdDecompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            while True:
                out = self._d.decompress(data, PIECE)
                if out:
                    yield out
                if self._d.eof:
                    # Several frames may follow each other (RFC 8878 section 3.1).
                    data = self._d.unused_data
                    self._d = zstd.ZstdDecompressor()
                    if not data:
                        return
                    continue
                if self._d.needs_input:
                    return
                data = b""
        except zstd.ZstdError as e:
            raise DecodeError(str(e)) from e

    def flush(self) -> Iterator[bytes]:
        return iter(())


def _stage(coding: str) -> _Stage | None:
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return _Zlib(47)  # 32 + 15: gzip or zlib header, auto-detected
    if coding == "deflate":
        return _Deflate()
    if coding == "br":
        return _Brotli()
    if coding == "zstd":
        return _Zstd()
    raise UnsupportedEncoding(f"unsupported Content-Encoding {coding!r}")


class StreamDecoder:
    """Decode a Content-Encoded byte stream piece by piece."""

    def __init__(self, content_encoding: str | None) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        # Codings are listed in the order applied; undo them last-first.
        self._stages = [s for s in (_stage(c) for c in reversed(codings)) if s is not None]

    @property
    def identity(self) -> bool:
        return not self._stages

    def feed(self, data: bytes) -> Iterator[bytes]:
        yield from self._run(0, data, final=False)

    def flush(self) -> Iterator[bytes]:
        yield from self._run(0, b"", final=True)

    def _run(self, i: int, data: bytes, *, final: bool) -> Iterator[bytes]:
        if i == len(self._stages):
            if data:
                yield data
            return
        stage = self._stages[i]
        if data:
            for piece in stage.feed(data):
                yield from self._run(i + 1, piece, final=False)
        if final:
            for piece in stage.flush():
                yield from self._run(i + 1, piece, final=False)
            yield from self._run(i + 1, b"", final=True)


def decode_body(body: bytes, content_encoding: str | None, *, limit: int = 64 * 1024 * 1024) -> bytes:
    """Decode a whole body; raises ``DecodeError``/``UnsupportedEncoding``, or ``DecodeError`` past ``limit``."""
    dec = StreamDecoder(content_encoding)
    if dec.identity:
        return body
    out = bytearray()
    for gen in (dec.feed(body), dec.flush()):
        for piece in gen:
            out += piece
            if len(out) > limit:
                raise DecodeError(f"decoded body larger than {limit} bytes")
    return bytes(out)
