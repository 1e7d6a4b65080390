"""commit: the last gate. Durable intent, then the envelope is swapped for the provider key and the call
leaves; when it ends (response, upstream error or client abort) the usage is settled into a commit row."""

from __future__ import annotations

from mitmproxy import http

from .chain import ChainAddon, call_of, fail_closed

__all__ = ["CommitAddon"]


def _reached_upstream(flow: http.HTTPFlow) -> bool:
    """Whether the request could have reached the provider: the connection to it was set up (TCP, and TLS
    when upstream is TLS). mitmproxy stamps these as the connection comes up."""
    conn = flow.server_conn
    if conn.timestamp_tcp_setup is None:
        return False
    return not conn.tls or conn.timestamp_tls_setup is not None


class CommitAddon(ChainAddon):
    @fail_closed
    async def request(self, flow: http.HTTPFlow) -> None:
        call = self.active_call(flow)
        if call is None:
            return
        await self.path.intent(call)
        fwd = self.path.forward(call, flow.request.headers)
        req = flow.request
        for name in fwd.drop_headers:
            del req.headers[name]
        req.scheme, req.host, req.port, req.path = fwd.scheme, fwd.host, fwd.port, fwd.path
        for name, value in fwd.set_headers.items():
            req.headers[name] = value
        call.gates.add("forwarded")

    async def response(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is None or call.finished or "settling" in call.gates:
            return
        if "forwarded" in call.gates and flow.error is None:
            # The answer goes out first; its commit row follows within the same event-loop turn
            # (CallPath.settle_after_answer says why that loses nothing).
            self.path.settle_after_answer(call, self._settle(flow, aborted=False))
        else:
            await self._settle(flow, aborted=False)  # a refusal row is written in the same trip as its answer

    async def error(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is not None and "settling" in call.gates:
            return  # the answer was complete; its settlement is already running
        await self._settle(flow, aborted=True)

    async def _settle(self, flow: http.HTTPFlow, *, aborted: bool) -> None:
        call = call_of(flow)
        if call is None or call.finished:
            return
        if "forwarded" not in call.gates:
            # Ended before it was forwarded (client went away while sending, body too large for mitmproxy):
            # nothing reached upstream; still one row, as a refusal.
            err = flow.error.msg if flow.error else "request ended before it was forwarded"
            from visionality.errors import RequestRejected

            status = 413 if "body_size_limit" in err else 499
            await self.path.refuse(call, RequestRejected(status, "request_incomplete", err))
            return
        resp = flow.response
        try:
            await self.path.settle(
                call,
                status=resp.status_code if resp is not None else 0,
                body=resp.get_content(strict=False) if resp is not None and resp.raw_content else None,
                content_encoding=None,  # get_content() already decoded it
                upstream_request_id=(
                    (resp.headers.get("x-request-id") or resp.headers.get("request-id")) if resp is not None else None
                ),
                aborted=aborted or (flow.error is not None),
                reached=_reached_upstream(flow),
            )
        except Exception:
            # Settling failed (ledger down mid-call): the intent is durable, recovery will charge it.
            import logging

            logging.getLogger("visionality.addons").exception("settle failed for %s", call.record.commit_id)
