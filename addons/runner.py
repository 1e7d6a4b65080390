"""Runs the appliance: an embedded mitmproxy with only the addons it needs, in one explicit chain.

mitmdump loads ~30 default addons that all see every event; the appliance loads the four core ones that
make a proxy (options, servers, protocol detection, TLS) and its own chain as one addon (``Chain``):
route -> identify -> pii -> budget -> meter -> commit (DESIGN.md "Request path").
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from mitmproxy import options
from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master
from visionality.assembly import Appliance

from .admin import AdminAddon
from .budget import BudgetAddon
from .chain import ADMIN_TARGET, BASE_TARGET, Chain
from .commit import CommitAddon
from .identify import IdentifyAddon
from .meter import MeterAddon
from .pii import PiiAddon
from .proxyguard import ProxyGuard, passthrough_patterns
from .route import RouteAddon

__all__ = ["serve", "chain_addons"]

log = logging.getLogger("visionality.runner")


def chain_addons(app: Appliance) -> list[object]:
    """Our addons, in the order mitmproxy must call them."""
    path = app.callpath
    intercept = {h for p in app.config.providers.values() for h in p.intercept_hosts}
    return [
        AdminAddon(app.admin),
        ProxyGuard(intercept, app.config.passthrough_hosts),
        RouteAddon(path),
        IdentifyAddon(path),
        PiiAddon(path),
        BudgetAddon(path),
        MeterAddon(path),
        CommitAddon(path),
    ]


def _modes(app: Appliance) -> list[str]:
    c = app.config
    modes = []
    if c.base_listen is not None:
        modes.append(f"reverse:http://{BASE_TARGET}:9@{c.base_listen}")
    if c.proxy_listen is not None:
        modes.append(f"regular@{c.proxy_listen}")
    if c.admin_listen is not None:
        modes.append(f"reverse:http://{ADMIN_TARGET}:9@{c.admin_listen}")
    return modes


async def serve(app: Appliance, on_ready: Callable[[list[tuple[str, str, int]]], None]) -> None:
    """Run until SIGTERM/SIGINT. ``on_ready`` gets (listener, host, port) once every listener is bound."""
    c = app.config
    modes = _modes(app)
    if not modes:
        raise SystemExit("no listener configured (listen.base_url, listen.proxy, listen.admin are all off)")
    opts = options.Options()
    master = Master(opts)
    ps = proxyserver.Proxyserver()
    master.addons.add(core.Core(), ps, next_layer.NextLayer(), tlsconfig.TlsConfig())
    master.addons.add(Chain(app.callpath, chain_addons(app)))
    opts.update(
        mode=modes,
        confdir=str(c.home.ca_dir),
        # "no LLM call" means no upstream connection either: the default eager strategy connects before
        # our request hooks run (notes/mitmproxy.md).
        connection_strategy="lazy",
        # Only a backstop: mitmproxy answers its own plain-text 413 and ignores ours when a declared size
        # exceeds this, so it sits at twice our limit; the route/body steps answer the JSON 413 below it.
        body_size_limit=str(2 * c.max_body_bytes + 1),
        ignore_hosts=passthrough_patterns(c.passthrough_hosts),
        # Long non-stream completions can be silent for minutes; mitmproxy 12.2.1 made 600 s the default.
        tcp_timeout=int(c.upstream_timeout_s),
        keep_host_header=True,
        # Intercepted TLS gets a leaf certificate for the client's SNI, never one copied from the real host:
        # the appliance must not open a connection to a provider to shape a handshake (and with the lazy
        # strategy there is none to copy from). mitmproxy's default would still look for one per connection.
        upstream_cert=False,
        http2=True,
    )

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, master.shutdown)

    async def announce() -> None:
        for _ in range(200):
            await asyncio.sleep(0.02)
            addrs = ps.listen_addrs()
            if len(addrs) >= len(modes):
                break
        else:
            log.error("not every listener could be bound (%s); shutting down", ", ".join(modes))
            master.shutdown()
            raise SystemExit(2)
        names = []
        for server in ps.servers:
            mode = server.mode
            data = getattr(mode, "data", "") or ""
            name = "base_url" if BASE_TARGET in data else "admin" if ADMIN_TARGET in data else "proxy"
            for addr in server.listen_addrs:
                names.append((name, str(addr[0]), int(addr[1])))
        on_ready(names)

    ready_task = asyncio.create_task(announce())
    try:
        await master.run()
    finally:
        ready_task.cancel()
        await app.close()
