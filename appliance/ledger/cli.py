"""``visionality ledger …`` commands (owned by the ledger work)."""

from __future__ import annotations

import click

__all__ = ["ledger_group"]


@click.group("ledger")
def ledger_group() -> None:
    """Query, verify and export the commit ledger."""
