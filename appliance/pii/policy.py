"""PII policy: which detectors run, what they do on a hit, at which score, and which known values pass.

Read from the ``[pii]`` table of the appliance config::

    [pii]
    deadline_ms = 250
    use_default_allow_list = true          # keep the documented test values allowed
    allow_list = ["*@corp-test.invalid"]   # added to (or, with the flag off, replacing) the defaults

    [pii.detectors.PHONE_NUMBER]
    action = "allow"                       # detect but let through
    threshold = 0.6

    [pii.projects.apollo.IP_ADDRESS]       # per-project override of single keys
    enabled = false

Every bad key raises ``ConfigError`` naming its full path (``pii.detectors.PHONE_NUMBER.threshold``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, Literal

from ..errors import ConfigError
from .findings import ENTITY_TYPES

__all__ = ["DEFAULT_ALLOW_LIST", "DEFAULT_ALLOW_SCOPES", "DEFAULT_THRESHOLD", "DetectorPolicy", "PiiPolicy"]

Action = Literal["block", "allow"]

# Scores are calibrated per detector (see docs/pii.md, "Scores"): a checksum- or prefix-validated hit scores
# 1.0, a well-formed hit without a checksum 0.5-0.9, a weak shape that needs a context word 0.3-0.4.
# 0.5 therefore means "validated or strongly shaped".
DEFAULT_THRESHOLD: Final = 0.5

# Values published as test or documentation examples. They are not anybody's data, and prompts about
# payment, AWS or e-mail code quote them constantly; blocking them would teach users to route around us.
# Each is allowed only for the detector(s) it is an example of: 555-01xx is a fiction *NANP phone* number range
# and must not also let through a Luhn-valid card or a UK number that happens to contain 55501xx (the entry
# used to be "*55501??" for every type: 4539148815550123 and +44 20 7555 0123 passed).
_DEFAULT_ALLOW: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    # Card-network / PSP test numbers (Visa, Stripe, Mastercard, Amex, Discover test PANs).
    ("4111 1111 1111 1111", ("CREDIT_CARD",)),
    ("4242 4242 4242 4242", ("CREDIT_CARD",)),
    ("4012 8888 8888 1881", ("CREDIT_CARD",)),
    ("5555 5555 5555 4444", ("CREDIT_CARD",)),
    ("5105 1051 0510 5100", ("CREDIT_CARD",)),
    ("3782 822463 10005", ("CREDIT_CARD",)),
    ("3714 496353 98431", ("CREDIT_CARD",)),
    ("6011 1111 1111 1117", ("CREDIT_CARD",)),
    # AWS documentation access key id and secret key (docs.aws.amazon.com, "Understanding access keys").
    ("AKIAIOSFODNN7EXAMPLE", ("AWS_ACCESS_KEY",)),
    ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ("AWS_ACCESS_KEY",)),
    # RFC 2606 reserved example domains (sub-domains too).
    ("*@example.com", ("EMAIL_ADDRESS",)),
    ("*@*.example.com", ("EMAIL_ADDRESS",)),
    ("*@example.org", ("EMAIL_ADDRESS",)),
    ("*@*.example.org", ("EMAIL_ADDRESS",)),
    ("*@example.net", ("EMAIL_ADDRESS",)),
    ("*@*.example.net", ("EMAIL_ADDRESS",)),
    # NANP fictional numbers 555-0100..555-0199 (ATIS/NANPA "555 line numbers" for fiction), any area code,
    # with or without the country code 1: NANP numbers only, so "+44 20 7555 0123" is still a London number.
    # (No "-" ranges inside the brackets: the allow-list drops "-" from entries like from values.)
    ("[23456789]??55501??", ("PHONE_NUMBER",)),
    ("1[23456789]??55501??", ("PHONE_NUMBER",)),
    ("+1[23456789]??55501??", ("PHONE_NUMBER",)),
    # The NHS Digital documentation example number (ten digits, so also a phone number's shape) and the IBAN
    # registry's example IBANs.
    ("943 476 5919", ("UK_NHS", "PHONE_NUMBER")),
    ("GB82 WEST 1234 5698 7654 32", ("IBAN_CODE",)),
    ("DE89 3704 0044 0532 0130 00", ("IBAN_CODE",)),
)
DEFAULT_ALLOW_LIST: Final[tuple[str, ...]] = tuple(value for value, _ in _DEFAULT_ALLOW)
# The detectors each default entry applies to; the allow-list applies the same scope when a user lists one of
# these values again. Other entries are scoped with a "TYPE:" prefix (allow_list.py).
DEFAULT_ALLOW_SCOPES: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {value: frozenset(types) for value, types in _DEFAULT_ALLOW}
)


def _check_threshold(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{path}: expected a number between 0 and 1, got {type(value).__name__}")
    number = float(value)
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise ConfigError(f"{path}: expected a number between 0 and 1, got {number!r}")
    return number


@dataclass(frozen=True)
class DetectorPolicy:
    """One detector's switch, action on a hit, and minimum score (inclusive) for a hit to count."""

    action: Action = "block"
    threshold: float = DEFAULT_THRESHOLD
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.action not in ("block", "allow"):
            raise ConfigError(f"action: expected 'block' or 'allow', got {self.action!r}")
        _check_threshold(self.threshold, "threshold")
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"enabled: expected true or false, got {type(self.enabled).__name__}")

    def merged(self, m: Mapping[str, Any], path: str) -> DetectorPolicy:
        """This policy with the keys present in ``m`` replaced; errors name ``path``."""
        if not isinstance(m, Mapping):
            raise ConfigError(f"{path}: expected a table, got {type(m).__name__}")
        changes: dict[str, Any] = {}
        for key, value in m.items():
            if key == "action":
                if value not in ("block", "allow"):
                    raise ConfigError(f"{path}.action: expected 'block' or 'allow', got {value!r}")
                changes["action"] = value
            elif key == "threshold":
                changes["threshold"] = _check_threshold(value, f"{path}.threshold")
            elif key == "enabled":
                if not isinstance(value, bool):
                    raise ConfigError(f"{path}.enabled: expected true or false, got {value!r}")
                changes["enabled"] = value
            else:
                raise ConfigError(f"{path}.{key}: unknown key (expected action, threshold, enabled)")
        return replace(self, **changes)


def _default_detectors() -> Mapping[str, DetectorPolicy]:
    return MappingProxyType({name: DetectorPolicy() for name in ENTITY_TYPES})


@dataclass(frozen=True)
class PiiPolicy:
    """The whole PII pre-flight policy; immutable so one instance can be shared across threads."""

    detectors: Mapping[str, DetectorPolicy] = field(default_factory=_default_detectors)
    allow_list: tuple[str, ...] = DEFAULT_ALLOW_LIST
    # Per request. The wire path budgets ~1 s of added latency in total; 250 ms leaves room for the rest and
    # is 5x the measured p50 of a 100 KB body (docs/pii.md, "Speed").
    deadline_ms: float = 250.0
    projects: Mapping[str, Mapping[str, DetectorPolicy]] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.detectors) - set(ENTITY_TYPES))
        if unknown:
            raise ConfigError(f"pii.detectors: unknown detector(s) {', '.join(unknown)}")
        missing = sorted(set(ENTITY_TYPES) - set(self.detectors))
        if missing:
            raise ConfigError(f"pii.detectors: missing detector(s) {', '.join(missing)}")
        for project, overrides in self.projects.items():
            bad = sorted(set(overrides) - set(ENTITY_TYPES))
            if bad:
                raise ConfigError(f"pii.projects.{project}: unknown detector(s) {', '.join(bad)}")
        if not self.deadline_ms > 0 or math.isinf(self.deadline_ms):
            raise ConfigError(f"pii.deadline_ms: expected a positive number, got {self.deadline_ms!r}")

    @classmethod
    def default(cls) -> PiiPolicy:
        """All twelve detectors on, blocking at the default threshold, with the documented allow-list."""
        return cls()

    def for_project(self, project: str | None) -> Mapping[str, DetectorPolicy]:
        """The detector policies in force for ``project`` (global ones with the project's overrides)."""
        if project is None or project not in self.projects:
            return self.detectors
        return {**self.detectors, **self.projects[project]}

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> PiiPolicy:
        """Build from the config's ``[pii]`` table; raise ``ConfigError`` naming the bad key path."""
        if not isinstance(m, Mapping):
            raise ConfigError(f"pii: expected a table, got {type(m).__name__}")
        known = {"detectors", "allow_list", "use_default_allow_list", "deadline_ms", "projects"}
        for key in m:
            if key not in known:
                raise ConfigError(f"pii.{key}: unknown key (expected one of {', '.join(sorted(known))})")

        detectors = dict(_default_detectors())
        raw_detectors = m.get("detectors", {})
        if not isinstance(raw_detectors, Mapping):
            raise ConfigError(f"pii.detectors: expected a table, got {type(raw_detectors).__name__}")
        for name, table in raw_detectors.items():
            if name not in detectors:
                raise ConfigError(f"pii.detectors.{name}: unknown detector (expected one of {', '.join(ENTITY_TYPES)})")
            detectors[name] = detectors[name].merged(table, f"pii.detectors.{name}")

        use_default = m.get("use_default_allow_list", True)
        if not isinstance(use_default, bool):
            raise ConfigError(f"pii.use_default_allow_list: expected true or false, got {use_default!r}")
        raw_allow = m.get("allow_list", [])
        if isinstance(raw_allow, str) or not isinstance(raw_allow, list | tuple):
            raise ConfigError(f"pii.allow_list: expected a list of strings, got {type(raw_allow).__name__}")
        for i, entry in enumerate(raw_allow):
            if not isinstance(entry, str) or not entry.strip():
                raise ConfigError(f"pii.allow_list[{i}]: expected a non-empty string, got {entry!r}")
        allow_list = (DEFAULT_ALLOW_LIST if use_default else ()) + tuple(raw_allow)

        deadline = m.get("deadline_ms", 250.0)
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) or not 0 < deadline < math.inf:
            raise ConfigError(f"pii.deadline_ms: expected a positive number of milliseconds, got {deadline!r}")

        projects: dict[str, Mapping[str, DetectorPolicy]] = {}
        raw_projects = m.get("projects", {})
        if not isinstance(raw_projects, Mapping):
            raise ConfigError(f"pii.projects: expected a table, got {type(raw_projects).__name__}")
        for project, table in raw_projects.items():
            path = f"pii.projects.{project}"
            if not isinstance(table, Mapping):
                raise ConfigError(f"{path}: expected a table, got {type(table).__name__}")
            overrides: dict[str, DetectorPolicy] = {}
            for name, sub in table.items():
                if name not in detectors:
                    raise ConfigError(f"{path}.{name}: unknown detector (expected one of {', '.join(ENTITY_TYPES)})")
                overrides[name] = detectors[name].merged(sub, f"{path}.{name}")
            projects[str(project)] = MappingProxyType(overrides)

        return cls(
            detectors=MappingProxyType(detectors),
            allow_list=allow_list,
            deadline_ms=float(deadline),
            projects=MappingProxyType(projects),
        )
