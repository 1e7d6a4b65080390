from __future__ import annotations

import pytest
from visionality import errors


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_is_one_of_ours(name: str) -> None:
    assert issubclass(getattr(errors, name), errors.VisionalityError)


def test_pii_blocked_names_types_and_counts_only() -> None:
    e = errors.PiiBlocked({"EMAIL_ADDRESS": 2, "CREDIT_CARD": 1})
    assert e.diagnostics() == "request blocked: personal data or secrets detected (CREDIT_CARD x1, EMAIL_ADDRESS x2)"


def test_budget_exceeded_carries_its_numbers() -> None:
    e = errors.BudgetExceeded("no", scope="project", cap="10", remaining="0.5", period="month")
    assert (e.scope, e.cap, e.remaining, e.period) == ("project", "10", "0.5", "month")
