"""pii: parse the body and run the PII pre-flight on everything that would go upstream."""

from __future__ import annotations

from mitmproxy import http
from visionality.errors import RequestRejected

from .chain import ChainAddon, fail_closed

__all__ = ["PiiAddon"]


class PiiAddon(ChainAddon):
    @fail_closed
    async def request(self, flow: http.HTTPFlow) -> None:
        call = self.active_call(flow)
        if call is None:
            return
        req = flow.request
        # raw_content: the bytes as the client sent them; decode Content-Encoding (gzip bodies) ourselves so
        # the scan sees what the provider would see.
        try:
            raw = req.get_content(strict=True) if req.raw_content else b""
        except ValueError as e:  # a Content-Encoding the body does not match (or one we cannot decode)
            encoding = req.headers.get("content-encoding", "")
            raise RequestRejected(
                400, "invalid_body", f"request body does not decode as Content-Encoding {encoding!r}"
            ) from e
        self.path.read_body(call, req.method, req.headers.get("content-type"), raw)
        self.path.screen(call)
