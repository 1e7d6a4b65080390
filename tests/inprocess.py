"""An appliance assembled in-process from a real home (real ledger, counters, scanner, keys) for unit tests of
the call path and the addons. Only the network is absent: flows are mitmproxy test flows (tflow)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow
from visionality.addons.chain import ADMIN_TARGET, BASE_TARGET
from visionality.assembly import Appliance, assemble
from visionality.cli import cli
from visionality.config import Config
from visionality.home import Home

ENV = {"VISIONALITY_OPENAI_API_KEY": "sk-up-openai", "VISIONALITY_ANTHROPIC_API_KEY": "sk-up-anthropic"}


def run[T](coro: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(coro())  # type: ignore[arg-type]


def make_home(tmp_path: Path, extra: str = "") -> Home:
    home = tmp_path / "home"
    r = CliRunner().invoke(
        cli,
        [
            "--home",
            str(home),
            "init",
            "--upstream",
            "openai=http://127.0.0.1:9",
            "--upstream",
            "anthropic=http://127.0.0.1:9",
        ],
    )
    assert r.exit_code == 0, r.output
    if extra:
        cfg = home / "visionality.toml"
        cfg.write_text(cfg.read_text() + "\n" + extra + "\n")
    return Home(home)


def issue(home: Home, *args: str) -> str:
    r = CliRunner().invoke(cli, ["--home", str(home.root), "key", "issue", "--sub", "alice", "--email", "a@x", *args])
    assert r.exit_code == 0, r.output
    return r.output.strip()


@asynccontextmanager
async def appliance(home: Home, monkeypatch: Any) -> AsyncIterator[Appliance]:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    app = await assemble(Config.load(home))
    try:
        yield app
    finally:
        await app.close()


def flow(
    method: str = "POST",
    path: str = "/v1/chat/completions",
    *,
    body: Any = None,
    key: str | None = None,
    listener: str = "base",
    headers: dict[str, str] | None = None,
) -> http.HTTPFlow:
    f = tflow.tflow()
    target = {"base": BASE_TARGET, "admin": ADMIN_TARGET}.get(listener)
    f.client_conn.proxy_mode = (
        ProxyMode.parse(f"reverse:http://{target}:9@4000") if target else ProxyMode.parse("regular@8080")
    )
    req = f.request
    req.method, req.path = method, path
    req.host, req.port, req.scheme = (target or "api.openai.com"), 9 if target else 443, "http" if target else "https"
    req.headers.clear()
    req.headers["host"] = req.host
    if key:
        req.headers["authorization"] = f"Bearer {key}"
    for k, v in (headers or {}).items():
        req.headers[k] = v
    if body is not None:
        req.headers["content-type"] = "application/json"
        req.content = json.dumps(body).encode()
    else:
        req.content = b""
    f.response = None
    return f


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}


def rows(app: Appliance) -> list[dict[str, Any]]:
    from visionality.ledger.views import open_views

    con = open_views(app.config.home.ledger_dir)
    try:
        cur = con.execute("SELECT * FROM commits ORDER BY seq")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()
