"""What the admin listener answers: the live burn-down and health. Transport-free (the addon serves it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .budget import Cap, Counters
from .config import Config
from .envelope import Claims
from .errors import RevokedError
from .identity import Identity
from .registry import KeyRegistry

__all__ = ["AdminApi", "caps_of_claims"]


def caps_of_claims(claims: Claims) -> list[Cap]:
    if claims.budget is None:
        return []
    return [Cap("key", claims.jti, claims.budget.amount, claims.budget.period)]


class AdminApi:
    def __init__(
        self,
        config: Config,
        identity: Identity,
        counters: Counters,
        registry: KeyRegistry,
        health: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.config = config
        self.identity = identity
        self.counters = counters
        self.registry = registry
        self._health = health

    def authorize(self, headers: Mapping[str, str]) -> Claims:
        """An admin envelope (role admin), verified like any key. An ordinary key is refused (403)."""
        caller = self.identity.identify(headers)
        if caller.claims.role != "admin":
            raise RevokedError("this key has no admin role; admin endpoints need a key issued with --role admin")
        return caller.claims

    def health(self) -> tuple[int, dict[str, Any]]:
        state = dict(self._health())
        ok = all(bool(v) for k, v in state.items() if k.endswith("_ok"))
        return (200 if ok else 503), {"ok": ok, **state}

    async def budget(self, *, project: str | None, key_id: str | None, sub: str | None) -> dict[str, Any]:
        caps: list[Cap] = []
        keys: list[Claims] = []
        if key_id:
            found = self.registry.find(key_id)
            keys = [found] if found else []
        elif sub:
            keys = self.registry.by_sub(sub)
        elif not project:
            keys = list(self.registry.claims())
        for c in keys:
            caps.extend(caps_of_claims(c))
        if project or not (key_id or sub):
            for p in self.config.projects.values():
                if p.cap is not None and (not project or p.name == project):
                    caps.append(Cap("project", p.name, p.cap, p.period))
        now = datetime.now(UTC)
        statuses = await self.counters.status(caps, now) if caps else []
        return {
            "as_of": now.isoformat().replace("+00:00", "Z"),
            "appliance_id": self.config.appliance_id,
            "caps": [
                {
                    "scope": s.cap.scope,
                    "id": s.cap.ident,
                    "period": s.cap.period,
                    "bucket": s.bucket,
                    "cap": s.cap.amount,
                    "spent": s.spent,
                    "reserved": s.reserved,
                    "remaining": s.remaining,
                    "burn_rate_per_hour": s.burn_rate_per_hour,
                }
                for s in statuses
            ],
        }
