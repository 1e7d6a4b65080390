"""proxyguard: explicit-proxy mode is not an open proxy.

A CONNECT (or absolute-form request) to an intercepted LLM host is decrypted and goes through the chain;
a host an operator listed in ``proxy.passthrough_hosts`` is tunnelled untouched (mitmproxy
``ignore_hosts``); every other host is refused with 403 before any upstream connection is made.
"""

from __future__ import annotations

import json
import re

from mitmproxy import http

__all__ = ["ProxyGuard", "passthrough_patterns"]


def passthrough_patterns(hosts: tuple[str, ...]) -> list[str]:
    """mitmproxy ignore_hosts regexes matching exactly these host names (any port)."""
    return [rf"^{re.escape(h.lower())}(:\d+)?$" for h in hosts]


class ProxyGuard:
    def __init__(self, intercept_hosts: set[str], passthrough_hosts: tuple[str, ...]) -> None:
        self.intercept = {h.lower() for h in intercept_hosts}
        self.passthrough = {h.lower() for h in passthrough_hosts}

    def http_connect(self, flow: http.HTTPFlow) -> None:
        try:
            host = flow.request.host.lower()
            if host in self.intercept or host in self.passthrough:
                return
            self._refuse(flow, host)
        except Exception:  # fail closed: a guard that crashes refuses
            self._refuse(flow, "?")

    @staticmethod
    def _refuse(flow: http.HTTPFlow, host: str) -> None:
        body = {
            "error": {
                "message": f"{host} is not an LLM provider this appliance intercepts, and not on the "
                "pass-through list (proxy.passthrough_hosts)",
                "type": "permission_error",
                "code": "host_not_allowed",
                "param": None,
            }
        }
        flow.response = http.Response.make(403, json.dumps(body), {"content-type": "application/json"})
