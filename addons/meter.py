"""meter: stream responses through unbuffered while counting usage; add the attribution headers.

mitmproxy buffers text/event-stream bodies unless the addon streams them (mitmproxy issue 4469), so
every SSE response gets a stream callable here, in ``responseheaders``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mitmproxy import http
from visionality.metering import StreamMeter

from .chain import ChainAddon, call_of, fail_closed

__all__ = ["MeterAddon"]


def _passthrough(meter: StreamMeter) -> Callable[[bytes], Iterable[bytes]]:
    def stream(chunk: bytes) -> Iterable[bytes]:
        # An empty bytes object mid-stream would end an HTTP/1.1 chunked response early (mitmproxy PR
        # #8242): return no chunk instead. At the end mitmproxy calls us with b"" to flush.
        try:
            out = meter.feed(chunk)
        except Exception:  # metering never breaks the client's stream; settle records what was seen
            return [chunk] if chunk else []
        return [out] if out else []

    return stream


class MeterAddon(ChainAddon):
    @fail_closed
    async def request(self, flow: http.HTTPFlow) -> None:
        call = self.active_call(flow)
        if call is not None and call.new_body is not None:
            flow.request.content = call.new_body

    @fail_closed
    async def responseheaders(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        resp = flow.response
        if call is None or resp is None or call.finished:
            return
        resp.headers["x-visionality-commit"] = call.record.commit_id
        if call.remaining is not None:
            resp.headers["x-visionality-budget-remaining"] = str(call.remaining)
        if call.record.trace_id:
            resp.headers["x-portkey-trace-id"] = call.record.trace_id
        ctype = resp.headers.get("content-type", "")
        if ctype.startswith("text/event-stream"):
            meter = self.path.start_stream(call, resp.headers.get("content-encoding"))
            resp.stream = _passthrough(meter)
