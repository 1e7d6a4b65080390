"""PiiPolicy / DetectorPolicy: defaults and the [pii] config table (appliance/pii/policy.py)."""

from __future__ import annotations

from typing import Any

import pytest
from visionality.errors import ConfigError
from visionality.pii import DEFAULT_ALLOW_LIST, ENTITY_TYPES, DetectorPolicy, PiiPolicy


def test_default_blocks_all_twelve_with_allow_list_and_deadline() -> None:
    p = PiiPolicy.default()
    assert set(p.detectors) == set(ENTITY_TYPES)
    assert all(d.action == "block" and d.enabled and d.threshold == 0.5 for d in p.detectors.values())
    assert "4111 1111 1111 1111" in p.allow_list and "AKIAIOSFODNN7EXAMPLE" in p.allow_list
    assert p.deadline_ms == 250.0
    assert p.for_project("any") is p.detectors


def test_from_mapping_merges_detector_keys_and_projects() -> None:
    p = PiiPolicy.from_mapping(
        {
            "deadline_ms": 100,
            "allow_list": ["*@corp.test"],
            "detectors": {"PHONE_NUMBER": {"action": "allow", "threshold": 0.7}, "IP_ADDRESS": {"enabled": False}},
            "projects": {"apollo": {"EMAIL_ADDRESS": {"action": "allow"}}},
        }
    )
    assert p.deadline_ms == 100.0
    assert p.detectors["PHONE_NUMBER"] == DetectorPolicy(action="allow", threshold=0.7)
    assert p.detectors["IP_ADDRESS"].enabled is False
    assert p.allow_list == (*DEFAULT_ALLOW_LIST, "*@corp.test")
    apollo = p.for_project("apollo")
    assert apollo["EMAIL_ADDRESS"].action == "allow"
    assert apollo["PHONE_NUMBER"].action == "allow"  # inherits the global override
    assert p.for_project("other")["EMAIL_ADDRESS"].action == "block"


def test_default_allow_list_can_be_dropped() -> None:
    p = PiiPolicy.from_mapping({"use_default_allow_list": False, "allow_list": ["x"]})
    assert p.allow_list == ("x",)


@pytest.mark.parametrize(
    ("table", "path"),
    [
        ({"detector": {}}, "pii.detector"),
        ({"detectors": {"PASSPORT": {}}}, "pii.detectors.PASSPORT"),
        ({"detectors": {"US_SSN": {"threshold": 2}}}, "pii.detectors.US_SSN.threshold"),
        ({"detectors": {"US_SSN": {"threshold": "high"}}}, "pii.detectors.US_SSN.threshold"),
        ({"detectors": {"US_SSN": {"action": "mask"}}}, "pii.detectors.US_SSN.action"),
        ({"detectors": {"US_SSN": {"enabled": "yes"}}}, "pii.detectors.US_SSN.enabled"),
        ({"detectors": {"US_SSN": {"colour": 1}}}, "pii.detectors.US_SSN.colour"),
        ({"detectors": {"US_SSN": 3}}, "pii.detectors.US_SSN"),
        ({"deadline_ms": 0}, "pii.deadline_ms"),
        ({"deadline_ms": True}, "pii.deadline_ms"),
        ({"allow_list": "4111"}, "pii.allow_list"),
        ({"allow_list": ["ok", ""]}, "pii.allow_list[1]"),
        ({"use_default_allow_list": "no"}, "pii.use_default_allow_list"),
        ({"projects": {"apollo": {"NOPE": {}}}}, "pii.projects.apollo.NOPE"),
        ({"projects": {"apollo": {"UK_NHS": {"threshold": -1}}}}, "pii.projects.apollo.UK_NHS.threshold"),
    ],
)
def test_bad_config_names_the_key_path(table: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as e:
        PiiPolicy.from_mapping(table)
    assert str(e.value).startswith(path + ":"), str(e.value)


def test_policy_rejects_missing_detectors() -> None:
    with pytest.raises(ConfigError, match="missing"):
        PiiPolicy(detectors={"EMAIL_ADDRESS": DetectorPolicy()})
