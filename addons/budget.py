"""budget: reserve the worst-case cost on every cap that applies; 402 and no upstream call if it does not fit."""

from __future__ import annotations

from mitmproxy import http

from .chain import ChainAddon, fail_closed

__all__ = ["BudgetAddon"]


class BudgetAddon(ChainAddon):
    @fail_closed
    async def request(self, flow: http.HTTPFlow) -> None:
        call = self.active_call(flow)
        if call is not None:
            await self.path.reserve(call)
