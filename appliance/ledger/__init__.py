"""The commit ledger: write-ahead log, write-once Parquet commit files, RFC 6962 checkpoints, verification.

Public API (issue 3): ``Ledger`` (the ``CommitSink`` the wire path writes into), ``EventLog`` (key,
revocation and config events from any process), ``open_views`` (DuckDB views ``commits`` and ``events``),
``verify``. Layout, canonical row encoding and the auditor's recipe: docs/ledger.md.
"""

from __future__ import annotations

from .canonical import COMMIT_SCHEMA, EVENT_SCHEMA, canonical_sql
from .checkpoint import Checkpoint, sign_checkpoint, vkey
from .events import EventLog
from .ledger import Ledger, RecoveryReport
from .verify import StreamReport, VerifyReport, verify
from .views import open_views, run_query

__all__ = [
    "Ledger",
    "RecoveryReport",
    "EventLog",
    "open_views",
    "run_query",
    "verify",
    "VerifyReport",
    "StreamReport",
    "Checkpoint",
    "sign_checkpoint",
    "vkey",
    "canonical_sql",
    "COMMIT_SCHEMA",
    "EVENT_SCHEMA",
]
