"""admin: the admin listener (loopback by default). ``GET /_visionality/budget`` serves the live burn-down
as JSON; ``GET /_visionality/health`` says whether the appliance can take calls. An admin credential is
required: an envelope with ``role: admin``. An ordinary key gets 403.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

from mitmproxy import http
from visionality.admin import AdminApi
from visionality.errors import (
    BudgetUnavailable,
    EnvelopeError,
    LedgerUnavailable,
    RevokedError,
    VisionalityError,
)
from visionality.revocation import RevocationUnavailable

from .chain import listener_of

__all__ = ["AdminAddon"]

log = logging.getLogger("visionality.admin")


def _json(status: int, payload: Any) -> http.Response:
    def default(o: object) -> str:
        if isinstance(o, Decimal):
            return str(o)
        raise TypeError(type(o).__name__)

    return http.Response.make(
        status, json.dumps(payload, default=default, indent=1), {"content-type": "application/json"}
    )


def _error(status: int, code: str, message: str) -> http.Response:
    return _json(status, {"error": {"message": message, "type": "admin_error", "code": code, "param": None}})


class AdminAddon:
    def __init__(self, api: AdminApi) -> None:
        self.api = api

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if listener_of(flow) != "admin":
            return
        try:
            flow.response = await self._serve(flow)
        except (BudgetUnavailable, LedgerUnavailable, RevocationUnavailable) as e:
            # A backend that is down is the appliance's failure, not the caller's: 503, retry later (as on the
            # wire path, refusal.py). A 400 would tell a monitoring script its request was wrong.
            flow.response = _error(503, "appliance_unavailable", e.diagnostics())
            flow.response.headers["retry-after"] = "5"
        except VisionalityError as e:
            flow.response = _error(400, "bad_request", e.diagnostics())
        except Exception:  # fail closed: an admin bug answers 500, never forwards
            log.exception("admin request failed")
            flow.response = _error(500, "admin_error", "internal error")

    async def _serve(self, flow: http.HTTPFlow) -> http.Response:
        req = flow.request
        path = req.path.split("?")[0]
        if req.method != "GET":
            return _error(405, "method_not_allowed", "admin endpoints are GET only")
        if path == "/_visionality/health":
            status, body = self.api.health()
            return _json(status, body)
        try:
            self.api.authorize(req.headers)
        except EnvelopeError as e:
            return _error(401, "invalid_api_key", str(e))
        except RevokedError as e:
            return _error(403, "forbidden", str(e))
        if path == "/_visionality/budget":
            q = req.query
            return _json(200, await self.api.budget(project=q.get("project"), key_id=q.get("key_id"), sub=q.get("sub")))
        return _error(
            404, "unknown_path", f"{path} is not an admin endpoint (/_visionality/budget, /_visionality/health)"
        )
