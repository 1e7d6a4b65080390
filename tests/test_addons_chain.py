"""fail_closed: an exception in any hook becomes a refusal (500 + commit row), never a forwarded flow."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy.test import taddons
from visionality.addons.chain import ChainAddon, call_of, fail_closed, listener_of

from .inprocess import CHAT, appliance, flow, issue, make_home, rows, run


class Exploding(ChainAddon):
    @fail_closed
    async def request(self, f):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("bug")


def test_hook_exception_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)
    key = issue(home)

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            with taddons.context():
                f = flow(body=CHAT, key=key)
                await Exploding(app.callpath).request(f)
                assert f.response is not None and f.response.status_code == 500
                assert f.response.json()["error"]["code"] == "appliance_error"
                assert "bug" not in f.response.text
                call = call_of(f)
                assert call is not None and call.finished
                (row,) = rows(app)
                assert row["decision"] == "blocked_unavailable" and row["http_status"] == 500

    run(go)


def test_listener_of() -> None:
    assert listener_of(flow(listener="base")) == "base"
    assert listener_of(flow(listener="admin")) == "admin"
    assert listener_of(flow(listener="proxy")) == "proxy"
