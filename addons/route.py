"""route: which provider and endpoint; non-LLM paths are refused (never forwarded). First in the chain."""

from __future__ import annotations

from mitmproxy import http
from visionality.callpath import CallPath
from visionality.routing import route_base_url, route_proxy

from .chain import META_KEY, ChainAddon, fail_closed, listener_of

__all__ = ["RouteAddon"]


class RouteAddon(ChainAddon):
    def __init__(self, path: CallPath) -> None:
        super().__init__(path)
        self.host_to_provider = {
            host.lower(): name for name, p in self.path.config.providers.items() for host in p.intercept_hosts
        }

    @fail_closed
    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        listener = listener_of(flow)
        if listener == "admin":
            return
        req = flow.request
        call = self.path.begin(req.headers.get("x-portkey-trace-id"))
        flow.metadata[META_KEY] = call
        if listener == "proxy":
            route = route_proxy(self.host_to_provider, req.pretty_host, req.method, req.path)
        else:
            route = route_base_url(req.method, req.path, req.headers.get("x-portkey-provider"))
        length = req.headers.get("content-length")
        self.path.routed(call, route, int(length) if length and length.isdigit() else None)
