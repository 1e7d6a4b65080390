from __future__ import annotations

from visionality.addons.meter import _passthrough
from visionality.metering import stream_meter


def test_stream_wrapper_never_yields_an_empty_chunk_mid_stream() -> None:
    meter = stream_meter("openai", "chat.completions", content_encoding=None, strip_injected_usage=True)
    wrap = _passthrough(meter)
    first = b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    partial = b'data: {"id":"c","object":"chat.completion.chunk","choi'
    assert list(wrap(first)) == [first]
    assert list(wrap(partial)) == []  # held back until the event completes: no b"" that would end the response
    usage = b'ces":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}\n\ndata: [DONE]\n\n'
    out = b"".join(wrap(usage)) + b"".join(wrap(b""))
    assert b"usage" not in out and out.endswith(b"data: [DONE]\n\n")  # the injected usage chunk is stripped
    assert meter.finish().output_tokens == 2
