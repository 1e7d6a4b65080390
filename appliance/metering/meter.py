"""Meter a response as it passes: streams chunk by chunk (never buffered), bodies in one go.

``StreamMeter.feed`` is called from mitmproxy's stream callable with the raw bytes off the wire and returns the
bytes to send on. It never raises and never holds the stream back, with one deliberate exception: when the
appliance injected ``stream_options.include_usage`` for a client that did not ask, the usage chunk must be cut
out again, so complete SSE events are passed on and a partial event waits for its blank line. That filter only
runs on an unencoded stream (the caller forces ``Accept-Encoding: identity`` upstream in that case); if the stream
arrives encoded anyway it is passed through untouched and only metered (re-encoding is not worth the risk), and
``notes.parse_error`` says so. A held partial event larger than ``MAX_HELD`` ends filtering the same way.

mitmproxy calls the stream callable with ``b""`` at the end of the body: that flushes whatever is held.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from . import anthropic as _anthropic
from . import openai as _openai
from .decoding import DecodeError, StreamDecoder, UnsupportedEncoding, decode_body
from .sse import SSEEvent, SSEParser
from .usage import EventHandler, Notes, Usage

__all__ = ["MAX_HELD", "StreamMeter", "stream_meter", "body_usage", "upstream_request_id"]

MAX_HELD = 1024 * 1024
"""Largest partial event the include_usage filter holds back before giving up filtering (a chat chunk is
a few hundred bytes; anything near this is not a chat stream)."""

PROVIDERS = {"openai", "anthropic"}


def _carries_content(ev: SSEEvent) -> bool:
    """Whether an event delivers generated output, without parsing its JSON (this runs for every event).

    Anthropic ``content_block_delta``; Responses ``response.*.delta`` (output text, function arguments,
    reasoning); chat chunks whose delta holds content or tool-call arguments (not role-only or usage chunks).
    """
    name = ev.event
    if name is not None:
        return name == "content_block_delta" or (name.startswith("response.") and name.endswith(".delta"))
    data = ev.data
    if '"delta"' not in data:
        return False
    return any(f'"{key}":"' in data and f'"{key}":""' not in data for key in _CONTENT_KEYS)


_CONTENT_KEYS = ("content", "arguments", "text")


class StreamMeter:
    """Counts usage in one streamed response; see the module doc."""

    __slots__ = (
        "_decoder",
        "_ended",
        "_filtering",
        "_finished",
        "_handler",
        "_held",
        "_metering",
        "_parser",
        "_usage",
        "content_events",
        "first_byte_at",
        "notes",
    )

    def __init__(self, handler: EventHandler, content_encoding: str | None, *, strip_injected_usage: bool) -> None:
        self._handler = handler
        self._usage = Usage()
        self.notes = Notes()
        self.first_byte_at: float | None = None
        # Events that carried generated content (text, tool-call arguments) as they passed: each is at least one
        # output token, the floor for a stream cut off before the provider's usage arrived.
        self.content_events = 0
        self._parser = SSEParser()
        self._held = bytearray()
        self._ended = False
        self._finished = False
        self._metering = True
        try:
            self._decoder = StreamDecoder(content_encoding)
        except UnsupportedEncoding as e:
            self._decoder = StreamDecoder(None)
            self._metering = False
            self.notes.parse(str(e))
        self._filtering = strip_injected_usage and self._metering
        if strip_injected_usage and not self._decoder.identity:
            self._filtering = False
            self.notes.parse(f"stream is {content_encoding}-encoded: injected usage chunk passed through unfiltered")

    @property
    def parse_error(self) -> str | None:
        return self.notes.parse_error

    @property
    def upstream_error(self) -> str | None:
        return self.notes.upstream_error

    @property
    def usage(self) -> Usage:
        """The usage seen so far (a copy)."""
        return self._usage.copy()

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return self._end()
        if self.first_byte_at is None:
            self.first_byte_at = time.perf_counter()
        if self._ended:
            return chunk
        if self._filtering:
            return self._feed_filtered(chunk)
        if self._metering:
            try:
                for piece in self._decoder.feed(chunk):
                    for _, ev in self._parser.feed(piece):
                        self._on_event(ev)
            except DecodeError as e:
                self._metering = False
                self.notes.parse(f"cannot decode stream: {e}")
            except Exception as e:  # never break the client's stream over a meter bug
                self._metering = False
                self.notes.parse(f"meter failed: {type(e).__name__}: {e}")
        return chunk

    def finish(self) -> Usage:
        """After the end or an abort: the best usage seen so far. Idempotent."""
        if not self._finished:
            self._finished = True
            if not self._ended:
                self._ended = True
                self._flush_metering()
            self._held = bytearray()
        return self._usage.copy()

    # -- internals ------------------------------------------------------------------------------------

    def _on_event(self, ev: SSEEvent) -> bool:
        if _carries_content(ev):
            self.content_events += 1
        try:
            return self._handler(ev, self._usage, self.notes)
        except ValueError as e:  # json.JSONDecodeError included
            self.notes.parse(f"malformed event {ev.event or 'message'}: {e}")
        except Exception as e:  # a handler bug keeps the event (and the stream) intact
            self.notes.parse(f"meter failed on event {ev.event or 'message'}: {type(e).__name__}: {e}")
        return False

    def _feed_filtered(self, chunk: bytes) -> bytes:
        try:
            events = self._parser.feed(chunk)
        except Exception as e:
            return self._stop_filtering(f"meter failed: {type(e).__name__}: {e}", chunk, keep_metering=False)
        if not events:
            self._held += chunk
            if len(self._held) > MAX_HELD:
                return self._stop_filtering(
                    f"partial event over {MAX_HELD} bytes: filtering stopped", b"", keep_metering=True
                )
            return b""
        buf = bytes(self._held) + chunk if self._held else chunk
        base = len(self._held)
        out = bytearray()
        start = 0
        for offset, ev in events:
            end = base + offset
            if not self._on_event(ev):
                out += buf[start:end]
            start = end
        self._held = bytearray(buf[start:])
        if len(self._held) > MAX_HELD:
            out += self._stop_filtering(
                f"partial event over {MAX_HELD} bytes: filtering stopped", b"", keep_metering=True
            )
        return bytes(out)

    def _stop_filtering(self, why: str, extra: bytes, *, keep_metering: bool) -> bytes:
        """Give up filtering: release what is held (plus ``extra``) and pass everything through from now on.

        The parser has seen every byte so far (filtering only runs unencoded), so metering can go on unless
        the parser itself failed.
        """
        self.notes.parse(why)
        self._filtering = False
        self._metering = self._metering and keep_metering
        out = bytes(self._held) + extra
        self._held = bytearray()
        return out

    def _end(self) -> bytes:
        if self._ended:
            return b""
        self._ended = True
        if self._filtering:
            dropped = False
            try:
                for ev in self._parser.close():
                    dropped = self._on_event(ev) or dropped
            except Exception as e:
                self.notes.parse(f"meter failed: {type(e).__name__}: {e}")
            out = b"" if dropped else bytes(self._held)
            self._held = bytearray()
            return out
        self._flush_metering()
        return b""

    def _flush_metering(self) -> None:
        if not self._metering:
            return
        try:
            if not self._filtering:
                for piece in self._decoder.flush():
                    for _, ev in self._parser.feed(piece):
                        self._on_event(ev)
            for ev in self._parser.close():
                self._on_event(ev)
        except DecodeError as e:
            self.notes.parse(f"cannot decode stream: {e}")
        except Exception as e:
            self.notes.parse(f"meter failed: {type(e).__name__}: {e}")


def _handler(provider: str, endpoint: str) -> EventHandler:
    # The wire format follows the endpoint: Anthropic's OpenAI-compatible chat.completions streams OpenAI chunks.
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}")
    if endpoint == "messages":
        return _anthropic.MessagesStream()
    if endpoint == "responses":
        return _openai.ResponsesStream()
    return _openai.ChatStream()


def stream_meter(
    provider: str, endpoint: str, *, content_encoding: str | None, strip_injected_usage: bool
) -> StreamMeter:
    """A meter for one streamed response. ``strip_injected_usage`` only applies to OpenAI chat streams."""
    strip = strip_injected_usage and endpoint in ("chat.completions", "completions")
    return StreamMeter(_handler(provider, endpoint), content_encoding, strip_injected_usage=strip)


def _looks_like_sse(body: bytes) -> bool:
    head = body[:64].lstrip()
    return head.startswith((b"data:", b"event:", b":", b"id:"))


def body_usage(provider: str, endpoint: str, body: bytes, content_encoding: str | None) -> Usage:
    """Usage from a whole (non-stream) response body. Never raises; an unparseable body gives ``Usage()``.

    mitmproxy normally hands over ``.content`` already decoded while the header still names the coding, so a
    body that fails to decode is tried as-is.
    """
    if provider not in PROVIDERS or not body:
        return Usage()
    data = body
    if content_encoding and content_encoding.strip().lower() not in ("", "identity"):
        try:
            data = decode_body(body, content_encoding)
        except (DecodeError, UnsupportedEncoding):
            data = body
    if _looks_like_sse(data):
        # A stream that reached us whole (e.g. content-type was not text/event-stream).
        m = stream_meter(provider, endpoint, content_encoding=None, strip_injected_usage=False)
        m.feed(data)
        return m.finish()
    try:
        obj: Any = json.loads(data)
    except ValueError:
        return Usage()
    if not isinstance(obj, dict):
        return Usage()
    if endpoint == "messages":
        return _anthropic.body_usage(obj)
    return _openai.body_usage(endpoint, obj)


def upstream_request_id(provider: str, headers: Mapping[str, str]) -> str | None:
    """The provider's request id: OpenAI ``x-request-id``, Anthropic ``request-id``.

    Looked up case-insensitively (mitmproxy's Headers already are; a plain dict may not be).
    """
    names = ("request-id", "x-request-id") if provider == "anthropic" else ("x-request-id", "request-id")
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None
