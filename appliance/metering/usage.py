"""What one LLM call consumed, in the provider-neutral shape the ledger and the price catalog use.

Conventions (so cost = f(usage) is the same formula for every provider):
- ``input_tokens`` counts ALL input tokens, including cache reads and cache writes. OpenAI already reports it
  that way (``prompt_tokens`` / ``input_tokens`` include ``cached_tokens``); Anthropic reports the three
  separately, so its parser adds them up.
- ``output_tokens`` includes reasoning tokens (OpenAI's ``completion_tokens`` already do; they are billed as output).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from .sse import SSEEvent

__all__ = ["Usage", "Notes", "EventHandler", "as_count", "tail_usage_object"]


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    model: str | None = None
    complete: bool = False
    cache_write_1h_tokens: int = 0
    """The part of ``cache_write_tokens`` written with Anthropic's 1-hour TTL, billed at a higher rate
    (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching#pricing)."""

    def copy(self) -> Usage:
        return Usage(
            self.input_tokens,
            self.output_tokens,
            self.cached_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
            self.model,
            self.complete,
            self.cache_write_1h_tokens,
        )


@dataclass(slots=True)
class Notes:
    """What went wrong while metering one response; the stream itself is never interrupted for it."""

    parse_error: str | None = None
    upstream_error: str | None = None

    def parse(self, message: str) -> None:
        if self.parse_error is None:  # the first problem is the informative one
            self.parse_error = message[:300]

    def upstream(self, message: str) -> None:
        self.upstream_error = message[:300]


class EventHandler(Protocol):
    """Reads one SSE event into ``usage``; returns True when the event is the injected usage chunk."""

    def __call__(self, event: SSEEvent, usage: Usage, notes: Notes) -> bool: ...


def as_count(value: Any) -> int:
    """A token count from provider JSON: a non-negative int, anything else (null, bool, str, float) is 0.

    Providers send ``null`` for counts they do not report (e.g. Anthropic's cache fields on older models).
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return 0


def tail_usage_object(text: str) -> dict[str, Any] | None:
    """The last ``"usage": {...}`` object in a (possibly truncated) JSON text, or None.

    Used when an event overflowed the parser's line cap and only its tail survived.
    """
    decoder = json.JSONDecoder()
    pos = len(text)
    while True:
        pos = text.rfind('"usage"', 0, pos)
        if pos < 0:
            return None
        brace = text.find("{", pos)
        colon = text.find(":", pos)
        if colon >= 0 and brace >= 0 and text[colon + 1 : brace].strip() == "":
            try:
                obj, _ = decoder.raw_decode(text, brace)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                return obj
