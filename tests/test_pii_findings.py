"""Finding and the twelve entity names (appliance/pii/findings.py)."""

from __future__ import annotations

import dataclasses

import pytest
from visionality.pii import ENTITY_TYPES, Finding


def test_twelve_distinct_entity_types_as_named_in_issue_5() -> None:
    assert len(ENTITY_TYPES) == 12
    assert len(set(ENTITY_TYPES)) == 12
    assert {"CREDIT_CARD", "UK_NHS", "API_KEY", "AWS_ACCESS_KEY", "PRIVATE_KEY"} <= set(ENTITY_TYPES)


def test_finding_carries_no_value_and_is_immutable() -> None:
    f = Finding("EMAIL_ADDRESS", 3, 20, 1.0)
    assert [x.name for x in dataclasses.fields(f)] == ["entity_type", "start", "end", "score"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.score = 0.1  # type: ignore[misc]
