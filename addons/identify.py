"""identify: verify the key envelope offline and check revocation, before the body is even read."""

from __future__ import annotations

from mitmproxy import http

from .chain import ChainAddon, fail_closed

__all__ = ["IdentifyAddon"]


class IdentifyAddon(ChainAddon):
    @fail_closed
    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        call = self.active_call(flow)
        if call is not None:
            self.path.identify(call, flow.request.headers)
