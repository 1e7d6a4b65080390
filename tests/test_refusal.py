from __future__ import annotations

import json

from visionality.commit import Decision
from visionality.errors import (
    BudgetExceeded,
    EnvelopeError,
    LedgerUnavailable,
    PiiBlocked,
    RequestRejected,
    RevokedError,
)
from visionality.refusal import internal_error, refusal_for


def _body(r) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(r.body())["error"]


def test_openai_shaped_bodies() -> None:
    r = refusal_for(EnvelopeError("bad signature"))
    assert (r.status, r.decision) == (401, Decision.BLOCKED_AUTH)
    assert _body(r) == {
        "message": "bad signature",
        "type": "authentication_error",
        "code": "invalid_api_key",
        "param": None,
    }
    assert refusal_for(RevokedError("x")).status == 403


def test_budget_refusal_carries_cap_and_remaining() -> None:
    r = refusal_for(BudgetExceeded("over", scope="key", cap="0.05", remaining="0.01", period="month"))
    body = _body(r)
    assert r.status == 402 and body["code"] == "budget_exceeded"
    assert (body["cap"], body["remaining"], body["period"], body["scope"]) == ("0.05", "0.01", "month", "key")


def test_pii_refusal_names_types_never_values() -> None:
    r = refusal_for(PiiBlocked({"EMAIL_ADDRESS": 2, "CREDIT_CARD": 1}))
    body = _body(r)
    assert r.status == 400 and body["code"] == "pii_blocked"
    assert body["entities"] == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 2}
    assert "@" not in r.body().decode()


def test_unavailable_is_503_and_internal_is_500() -> None:
    assert refusal_for(LedgerUnavailable("disk full")).status == 503
    r = internal_error(ZeroDivisionError("secret prompt text"))
    assert r.status == 500 and "secret prompt text" not in r.body().decode()
    assert refusal_for(RequestRejected(413, "request_too_large", "big")).status == 413
