"""Fault injection for the fail-closed proof (issue 2: "a test proves it").

``VISIONALITY_INJECT_FAULTS=identify,pii`` makes those call-path stages raise a plain RuntimeError, the way
a bug would. The e2e suite sets it to show that any exception inside a hook refuses the call (500, a
commit row, no upstream connection) instead of being swallowed by mitmproxy and forwarded.
Read once at import; with the variable unset the check is one frozenset lookup.
"""

from __future__ import annotations

import os

__all__ = ["inject", "InjectedFault", "ACTIVE"]

ACTIVE: frozenset[str] = frozenset(
    s.strip() for s in os.environ.get("VISIONALITY_INJECT_FAULTS", "").split(",") if s.strip()
)


class InjectedFault(RuntimeError):
    """Deliberately not a VisionalityError: it must travel the path an unexpected bug travels."""


def inject(stage: str) -> None:
    if stage in ACTIVE:
        raise InjectedFault(f"injected fault in stage {stage!r}")
