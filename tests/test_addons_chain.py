"""fail_closed: an exception in any hook becomes a refusal (500 + commit row), never a forwarded flow."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy.test import taddons
from visionality.addons.chain import Chain, ChainAddon, call_of, fail_closed, listener_of
from visionality.addons.runner import chain_addons

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


class Recording:
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen

    async def request(self, f):  # type: ignore[no-untyped-def]
        self.seen.append(self.name)


class SyncConnect:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def http_connect(self, f):  # type: ignore[no-untyped-def]
        self.seen.append("connect")


class Raising:
    async def request(self, f):  # type: ignore[no-untyped-def]
        raise RuntimeError("unguarded bug")


def test_chain_calls_links_in_order_sync_and_async(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            seen: list[str] = []
            chain = Chain(app.callpath, [Recording("a", seen), SyncConnect(seen), Recording("b", seen)])
            f = flow(body=CHAT)
            await chain.http_connect(f)
            await chain.request(f)
            await chain.response(f)  # no link handles it: nothing happens
            assert seen == ["connect", "a", "b"]
            assert not hasattr(chain, "addons")  # mitmproxy would walk it as child addons, calling each twice

    run(go)


def test_chain_refuses_when_a_link_raises_and_later_links_see_a_finished_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mitmproxy's own dispatch would log the exception and go on (the flow forwarded half-checked)."""
    home = make_home(tmp_path)
    key = issue(home)

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            with taddons.context():
                addons = chain_addons(app)
                chain = Chain(app.callpath, [*addons[:-1], Raising(), addons[-1]])
                f = flow(body=CHAT, key=key)
                await chain.requestheaders(f)
                await chain.request(f)
                assert f.response is not None and f.response.status_code == 500
                call = call_of(f)
                assert call is not None and call.finished and "forwarded" not in call.gates
                assert f.request.host != "127.0.0.1"  # the commit link never rewrote it towards a provider
                (row,) = rows(app)
                assert row["decision"] == "blocked_unavailable"

    run(go)


def test_chain_refuses_a_link_with_a_hook_it_would_not_forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Configuring:
        def configure(self, updated):  # type: ignore[no-untyped-def]
            pass

    home = make_home(tmp_path)

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            with pytest.raises(TypeError, match="Configuring.configure"):
                Chain(app.callpath, [Configuring()])

    run(go)
