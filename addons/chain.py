"""What every Visionality addon shares: the per-flow call, and the fail-closed wrapper.

mitmproxy logs and swallows exceptions raised in hooks and then forwards the flow (notes/mitmproxy.md):
an addon that crashes would let the call out unchecked. Every hook here is wrapped by ``fail_closed``,
which catches anything, answers the client with an error and records the refusal, so a bug refuses
calls instead of leaking them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from mitmproxy import http
from visionality.callpath import Call, CallPath

__all__ = ["META_KEY", "call_of", "fail_closed", "answer", "ChainAddon", "listener_of", "BASE_TARGET", "ADMIN_TARGET"]

log = logging.getLogger("visionality.addons")

META_KEY = "visionality.call"

# The base-URL and admin listeners are mitmproxy reverse-mode servers whose nominal target is a host that
# cannot resolve (RFC 2606 .invalid): the target names the listener, and if a flow ever escaped our hooks
# it would go nowhere rather than to a provider.
BASE_TARGET = "visionality-base.invalid"
ADMIN_TARGET = "visionality-admin.invalid"

type Hook[A] = Callable[[A, http.HTTPFlow], Awaitable[None]]


def call_of(flow: http.HTTPFlow) -> Call | None:
    call = flow.metadata.get(META_KEY)
    return call if isinstance(call, Call) else None


def listener_of(flow: http.HTTPFlow) -> str:
    """ "base", "admin" or "proxy": which of our listeners the client connected to."""
    data = flow.client_conn.proxy_mode.data or ""
    if BASE_TARGET in data:
        return "base"
    if ADMIN_TARGET in data:
        return "admin"
    return "proxy"


async def answer(path: CallPath, flow: http.HTTPFlow, call: Call, exc: BaseException) -> None:
    """Refuse the flow: the error answer to the client and the commit row, in one step."""
    refusal = await path.refuse(call, exc)
    headers = {"content-type": "application/json", "x-visionality-commit": call.record.commit_id}
    headers.update(refusal.headers)
    if call.record.trace_id:
        headers["x-portkey-trace-id"] = call.record.trace_id
    flow.response = http.Response.make(refusal.status, refusal.body(), headers)


class ChainAddon:
    """Base for the chain's addons: holds the shared CallPath."""

    def __init__(self, path: CallPath) -> None:
        self.path = path

    def active_call(self, flow: http.HTTPFlow) -> Call | None:
        """The call if it is still in progress (not refused; admin requests have none)."""
        call = call_of(flow)
        if call is None or call.finished:
            return None
        return call


def fail_closed[A: ChainAddon](hook: Hook[A]) -> Hook[A]:
    @functools.wraps(hook)
    async def wrapper(self: A, flow: http.HTTPFlow) -> None:
        try:
            await hook(self, flow)
        except BaseException as exc:  # noqa: BLE001 - fail closed on anything, including bugs
            try:
                call = call_of(flow)
                if call is None:
                    call = self.path.begin(None)
                    flow.metadata[META_KEY] = call
                if flow.response is None or not call.finished:
                    await answer(self.path, flow, call, exc)
            except BaseException:  # even the refusal failed: kill the flow rather than forward it
                log.exception("refusal failed; killing flow")
                if flow.killable:
                    flow.kill()
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise

    return wrapper
