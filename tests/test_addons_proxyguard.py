from __future__ import annotations

from visionality.addons.proxyguard import ProxyGuard, passthrough_patterns

from .inprocess import flow


def test_connect_refused_unless_intercepted_or_passthrough() -> None:
    guard = ProxyGuard({"api.openai.com"}, ("git.corp.example",))
    for host, refused in (("api.openai.com", False), ("git.corp.example", False), ("evil.example", True)):
        f = flow(listener="proxy", method="CONNECT")
        f.request.host = host
        guard.http_connect(f)
        assert (f.response is not None and f.response.status_code == 403) is refused


def test_passthrough_patterns_match_host_exactly() -> None:
    import re

    (pat,) = passthrough_patterns(("git.corp.example",))
    assert re.match(pat, "git.corp.example:443") and not re.match(pat, "git.corp.example.evil.com:443")
