"""OpenAI usage: chat completions (and legacy completions), the Responses API, embeddings.

Wire facts (OpenAI API reference; openai-python ``types/completion_usage.py``, ``types/responses/response_usage.py``):
- Chat/completions usage: ``prompt_tokens`` (includes ``prompt_tokens_details.cached_tokens``),
  ``completion_tokens`` (includes ``completion_tokens_details.reasoning_tokens``).
- A chat stream carries usage only with ``stream_options.include_usage``: then every chunk has ``"usage": null``
  and one extra chunk before ``data: [DONE]`` has ``"choices": []`` and the usage. That chunk may be lost when a
  stream is interrupted (openai-python ``types/chat/chat_completion_chunk.py`` doc of ``usage``).
- Responses API usage: ``input_tokens`` (includes ``input_tokens_details.cached_tokens``), ``output_tokens``
  (includes ``output_tokens_details.reasoning_tokens``); streamed in the terminal ``response.completed`` /
  ``response.incomplete`` / ``response.failed`` event; there is no ``[DONE]`` sentinel on this API.
- Embeddings usage: ``prompt_tokens`` and ``total_tokens`` only.
- Mid-stream failures arrive as an event whose JSON has an ``error`` object (chat) or ``type: "error"``
  (Responses).
"""

from __future__ import annotations

import json
from typing import Any

from .sse import SSEEvent
from .usage import Notes, Usage, as_count, tail_usage_object

__all__ = [
    "ChatStream",
    "ResponsesStream",
    "apply_chat_usage",
    "apply_responses_usage",
    "body_usage",
    "inject_stream_usage",
]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def apply_chat_usage(u: dict[str, Any], usage: Usage) -> None:
    """Chat completions / completions / embeddings usage object."""
    usage.input_tokens = as_count(u.get("prompt_tokens"))
    usage.output_tokens = as_count(u.get("completion_tokens"))
    ptd = _dict(u.get("prompt_tokens_details"))
    usage.cached_tokens = as_count(ptd.get("cached_tokens"))
    usage.cache_write_tokens = as_count(ptd.get("cache_write_tokens"))
    usage.reasoning_tokens = as_count(_dict(u.get("completion_tokens_details")).get("reasoning_tokens"))
    usage.complete = True


def apply_responses_usage(u: dict[str, Any], usage: Usage) -> None:
    usage.input_tokens = as_count(u.get("input_tokens"))
    usage.output_tokens = as_count(u.get("output_tokens"))
    itd = _dict(u.get("input_tokens_details"))
    usage.cached_tokens = as_count(itd.get("cached_tokens"))
    usage.cache_write_tokens = as_count(itd.get("cache_write_tokens"))
    usage.reasoning_tokens = as_count(_dict(u.get("output_tokens_details")).get("reasoning_tokens"))
    usage.complete = True


def _set_model(obj: dict[str, Any], usage: Usage) -> None:
    model = obj.get("model")
    if isinstance(model, str) and model:
        usage.model = model


def _error_text(err: Any) -> str:
    if isinstance(err, dict):
        return f"{err.get('type') or err.get('code') or 'error'}: {err.get('message') or ''}".strip()
    return str(err)


class ChatStream:
    """``chat.completion.chunk`` (and legacy ``text_completion``) streams."""

    def __call__(self, event: SSEEvent, usage: Usage, notes: Notes) -> bool:
        data = event.data
        if data.startswith("[DONE]"):
            return False
        # Fast path: once the model is known, only chunks with a usage object or an error need parsing. With
        # include_usage every other chunk says "usage":null. Quotes inside content are escaped (\"usage\"), so
        # generated text cannot fake these markers.
        if (
            usage.model is not None
            and '"error"' not in data
            and ('"usage"' not in data or '"usage":null' in data or '"usage": null' in data)
        ):
            return False
        if event.truncated:
            u = tail_usage_object(data)
            if u is not None:
                apply_chat_usage(u, usage)
            notes.parse(f"event larger than the parser cap ({len(data)} bytes kept)")
            return False
        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("event data is not a JSON object")
        if obj.get("error"):
            notes.upstream(_error_text(obj["error"]))
            return False
        _set_model(obj, usage)
        u = obj.get("usage")
        if isinstance(u, dict):
            apply_chat_usage(u, usage)
            # The include_usage chunk: no choices, only usage. Some compatible servers put usage on the last
            # choice chunk instead; that one must reach the client.
            return obj.get("choices") == []
        return False


# Responses stream events that never carry usage or the model: skipped without a JSON parse.
_RESPONSES_SKIP_SUFFIXES = (".delta", ".added", ".done", "_progress", ".searching", ".generating")
_RESPONSES_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


class ResponsesStream:
    """Responses API streams (``response.created`` ... ``response.completed``)."""

    def __call__(self, event: SSEEvent, usage: Usage, notes: Notes) -> bool:
        kind = event.event
        if kind is not None and kind.endswith(_RESPONSES_SKIP_SUFFIXES):
            return False
        if kind is None and usage.model is not None and '"usage"' not in event.data and "error" not in event.data:
            return False
        if event.truncated:
            u = tail_usage_object(event.data)
            if u is not None and (kind is None or kind in _RESPONSES_TERMINAL):
                apply_responses_usage(u, usage)
            notes.parse(f"event larger than the parser cap ({len(event.data)} bytes kept)")
            return False
        obj = json.loads(event.data)
        if not isinstance(obj, dict):
            raise ValueError("event data is not a JSON object")
        t = obj.get("type") or kind
        resp = _dict(obj.get("response"))
        _set_model(resp, usage)
        u = resp.get("usage")
        if isinstance(u, dict) and t in _RESPONSES_TERMINAL:
            apply_responses_usage(u, usage)
        if t == "error":
            notes.upstream(_error_text(obj.get("error") or obj))
        elif t == "response.failed":
            notes.upstream(_error_text(resp.get("error") or "response.failed"))
        return False


def body_usage(endpoint: str, obj: dict[str, Any]) -> Usage:
    """Usage from a non-stream OpenAI response body."""
    usage = Usage()
    _set_model(obj, usage)
    u = obj.get("usage")
    if not isinstance(u, dict):
        return usage
    if endpoint == "responses" or "input_tokens" in u:
        apply_responses_usage(u, usage)
    else:
        apply_chat_usage(u, usage)
    return usage


def inject_stream_usage(body: dict[str, Any]) -> bool:
    """Ask a streamed chat completion for usage when the client did not; True when the body changed.

    Portkey's users hit the same gap (Portkey-AI/gateway #691: include_usage is not on by default). When this
    returns True the meter must strip the usage chunk again (``strip_injected_usage=True``) so client code doing
    ``chunk.choices[0]`` never sees a chunk without choices.
    """
    if body.get("stream") is not True:
        return False
    opts = body.get("stream_options")
    if opts is None:
        body["stream_options"] = {"include_usage": True}
        return True
    if not isinstance(opts, dict):
        return False  # malformed: the upstream answers 400 and nothing is generated
    if opts.get("include_usage") is True:
        return False
    opts["include_usage"] = True
    return True
