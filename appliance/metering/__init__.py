"""Usage metering for LLM responses: streams metered incrementally and never buffered, bodies in one go.

The addon chain calls ``stream_meter`` in ``responseheaders`` for SSE responses, ``body_usage`` for the rest, and
``inject_stream_usage`` on OpenAI chat stream requests that did not ask for usage.
"""

from __future__ import annotations

from .meter import MAX_HELD, StreamMeter, body_usage, stream_meter, upstream_request_id
from .openai import inject_stream_usage
from .usage import Notes, Usage

__all__ = [
    "MAX_HELD",
    "Notes",
    "StreamMeter",
    "Usage",
    "body_usage",
    "inject_stream_usage",
    "stream_meter",
    "upstream_request_id",
]
