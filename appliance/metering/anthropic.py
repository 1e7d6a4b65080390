"""Anthropic Messages usage, streamed and not.

Wire facts (https://docs.anthropic.com/en/docs/build-with-claude/streaming#event-types and
anthropic-sdk-python ``lib/streaming/_messages.py``):
- A stream is message_start, then content_block_start / content_block_delta... / content_block_stop per block,
  ``ping`` events anywhere, one or more message_delta, message_stop; an ``event: error`` may arrive mid-stream
  (e.g. ``overloaded_error``).
- message_start's ``message.usage`` holds the input counts: ``input_tokens`` EXCLUDES cache reads and writes,
  which come as ``cache_read_input_tokens`` and ``cache_creation_input_tokens`` (prompt caching docs, "Tracking
  cache performance"); ``cache_creation.ephemeral_1h_input_tokens`` is the 1-hour part of the writes.
- message_delta's ``usage`` is CUMULATIVE: each one repeats the running totals, so the latest wins and nothing is
  summed (the SDK's accumulator overwrites too; summing double-counts: envoyproxy/ai-gateway #2239, #2241).
  Newer API versions also repeat input/cache counts there. Some servers send ``input_tokens: 0`` on
  message_delta (envoyproxy/ai-gateway #1631), which would wipe the real count: since cumulative counts never
  decrease, each counter keeps the maximum seen, which equals the latest on a well-formed stream.
- ``output_tokens_details.thinking_tokens`` is the reasoning part of ``output_tokens``.
"""

from __future__ import annotations

import json
from typing import Any

from .sse import SSEEvent
from .usage import Notes, Usage, as_count, tail_usage_object

__all__ = ["MessagesStream", "body_usage"]

# Events with nothing to meter, skipped without a JSON parse (the bulk of a stream).
_SKIP = frozenset({"content_block_delta", "content_block_start", "content_block_stop", "ping"})


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class _Counts:
    """Anthropic's separate input counters, overwritten as cumulative updates arrive."""

    def __init__(self) -> None:
        self.uncached = 0
        self.cache_read = 0
        self.cache_write = 0
        self.cache_write_1h = 0

    def apply(self, u: dict[str, Any], usage: Usage) -> None:
        # Cumulative and monotone: keep the maximum (= the latest), never add. Absent or null fields change
        # nothing: a message_delta may carry output_tokens only.
        self.uncached = max(self.uncached, as_count(u.get("input_tokens")))
        self.cache_read = max(self.cache_read, as_count(u.get("cache_read_input_tokens")))
        self.cache_write = max(self.cache_write, as_count(u.get("cache_creation_input_tokens")))
        cc = u.get("cache_creation")
        if isinstance(cc, dict):
            self.cache_write_1h = max(self.cache_write_1h, as_count(cc.get("ephemeral_1h_input_tokens")))
        self.cache_write_1h = min(self.cache_write_1h, self.cache_write)
        usage.output_tokens = max(usage.output_tokens, as_count(u.get("output_tokens")))
        otd = u.get("output_tokens_details")
        if isinstance(otd, dict):
            usage.reasoning_tokens = max(usage.reasoning_tokens, as_count(otd.get("thinking_tokens")))
        usage.input_tokens = self.uncached + self.cache_read + self.cache_write
        usage.cached_tokens = self.cache_read
        usage.cache_write_tokens = self.cache_write
        usage.cache_write_1h_tokens = self.cache_write_1h


def _set_model(obj: dict[str, Any], usage: Usage) -> None:
    model = obj.get("model")
    if isinstance(model, str) and model:
        usage.model = model


class MessagesStream:
    def __init__(self) -> None:
        self._counts = _Counts()
        self._saw_delta = False

    def __call__(self, event: SSEEvent, usage: Usage, notes: Notes) -> bool:
        kind = event.event
        if kind in _SKIP:
            return False
        if event.truncated:
            u = tail_usage_object(event.data)
            if u is not None:
                self._counts.apply(u, usage)
            notes.parse(f"event larger than the parser cap ({len(event.data)} bytes kept)")
            return False
        obj = json.loads(event.data)
        if not isinstance(obj, dict):
            raise ValueError("event data is not a JSON object")
        t = obj.get("type") or kind
        if t == "message_start":
            msg = _dict(obj.get("message"))
            _set_model(msg, usage)
            self._counts.apply(_dict(msg.get("usage")), usage)
        elif t == "message_delta":
            self._saw_delta = True
            self._counts.apply(_dict(obj.get("usage")), usage)
            if _dict(obj.get("delta")).get("stop_reason") is not None:
                usage.complete = True
        elif t == "message_stop":
            if self._saw_delta:
                usage.complete = True
        elif t == "error":
            err = _dict(obj.get("error"))
            notes.upstream(f"{err.get('type') or 'error'}: {err.get('message') or ''}".strip())
        return False


def body_usage(obj: dict[str, Any]) -> Usage:
    """Usage from a non-stream Messages response."""
    usage = Usage()
    _set_model(obj, usage)
    u = obj.get("usage")
    if isinstance(u, dict):
        _Counts().apply(u, usage)
        usage.complete = True
    return usage
