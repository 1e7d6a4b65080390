"""``visionality ledger …`` commands: query, verify, checkpoint export, tail.

Thin commands over the ledger package; our errors become ``click.ClickException`` only here
(STYLE.md 5). ``verify`` exits non-zero with the first file and seq that fails.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from ..errors import VisionalityError  # noqa: TID252
from ..home import Home  # noqa: TID252
from .checkpoint import parse_note, vkey
from .stream import KINDS, StreamPaths, list_stream_ids, read_checkpoint_log
from .verify import verify
from .views import open_views, run_query

__all__ = ["ledger_group"]


def _home(ctx: click.Context) -> Home:
    home = ctx.find_object(Home)
    if home is None:
        raise click.ClickException("no deployment home (run through `visionality`)")
    try:
        home.require()
    except VisionalityError as e:
        raise click.ClickException(e.diagnostics()) from e
    return home


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")  # money stays exact text, never a float
    if isinstance(value, datetime | date):  # date: the Hive partition column
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def _render(columns: Sequence[str], rows: Sequence[tuple[Any, ...]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows], indent=2)
    if fmt == "table":
        cells = [[str(c) for c in columns]] + [["" if v is None else str(_plain(v)) for v in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        lines = [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(lines)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if v is None else _plain(v) for v in row] for row in rows])
    return buf.getvalue().rstrip("\n")


@click.group("ledger")
def ledger_group() -> None:
    """Query, verify and export the commit ledger."""


@ledger_group.command("query")
@click.argument("sql")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "table"]),
    default="csv",
    show_default=True,
    help="Output format.",
)
@click.pass_context
def query_cmd(ctx: click.Context, sql: str, fmt: str) -> None:
    """Run one read-only SQL SELECT over the views `commits` and `events` (all streams, sealed and WAL)."""
    home = _home(ctx)
    try:
        columns, rows = run_query(open_views(home.ledger_dir), sql)
    except VisionalityError as e:
        raise click.ClickException(e.diagnostics()) from e
    click.echo(_render(columns, rows, fmt))


@ledger_group.command("verify")
@click.option(
    "--checkpoint",
    "checkpoint_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint held outside this machine (e.g. by a witness); the ledger must be consistent with it. "
    "Repeat it for several streams (one per node).",
)
@click.pass_context
def verify_cmd(ctx: click.Context, checkpoint_files: tuple[Path, ...]) -> None:
    """Recompute every row hash, Merkle root, signature and file hash; exit 1 at the first failure."""
    home = _home(ctx)
    try:
        external = [f.read_text(encoding="utf-8") for f in checkpoint_files]
        report = verify(home.ledger_dir, public_keys={"*": home.verify_key()}, external_checkpoint=external)
    except (VisionalityError, OSError) as e:
        message = e.diagnostics() if isinstance(e, VisionalityError) else str(e)
        raise click.ClickException(f"ledger verification FAILED: {message}") from e
    for s in report.streams:
        click.echo(
            f"ok {s.kind}/{s.stream_id}: {s.sealed_rows} sealed rows in {s.files} files, "
            f"{s.checkpoints} checkpoints, root {s.root}, {s.wal_rows} rows in the WAL"
        )
    for ext in report.external:
        click.echo(f"ok consistent with external checkpoint {ext}")
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"verified {report.rows} rows in {len(report.streams)} streams")


def _latest_note(root: Path, kind: str, stream_id: str) -> str | None:
    entries = read_checkpoint_log(StreamPaths(root, kind, stream_id).checkpoints)
    if not entries:
        return None
    note = entries[-1][1].get("note")
    return note if isinstance(note, str) else None


@ledger_group.command("checkpoint")
@click.option("--export", "export", is_flag=True, help="Print the latest signed checkpoint note, for a witness.")
@click.option("--stream", "stream_id", default=None, help="Appliance (or event writer) id; needed with several.")
@click.option("--kind", type=click.Choice(KINDS), default="commits", show_default=True)
@click.pass_context
def checkpoint_cmd(ctx: click.Context, export: bool, stream_id: str | None, kind: str) -> None:
    """Show the latest checkpoint of each stream, or export one as a C2SP signed note."""
    home = _home(ctx)
    root = home.ledger_dir
    try:
        streams = list_stream_ids(root, kind)
        if not export:
            for sid in streams:
                note = _latest_note(root, kind, sid)
                if note is None:
                    click.echo(f"{kind}/{sid}: no checkpoint yet")
                    continue
                cp = parse_note(note).checkpoint()
                click.echo(f"{kind}/{sid}: origin {cp.origin} tree size {cp.tree_size}")
                click.echo(f"  verifier key: {vkey(cp.origin, home.verify_key())}")
            return
        if stream_id is None:
            if len(streams) != 1:
                raise click.ClickException(
                    f"expected one {kind} stream or --stream, got {len(streams)}: {', '.join(streams) or 'none'}"
                )
            stream_id = streams[0]
        note = _latest_note(root, kind, stream_id)
    except VisionalityError as e:
        raise click.ClickException(e.diagnostics()) from e
    if note is None:
        raise click.ClickException(f"{kind}/{stream_id}: no checkpoint yet (nothing sealed)")
    click.echo(note, nl=False)


@ledger_group.command("tail")
@click.option("--follow/--no-follow", default=True, show_default=True, help="Keep printing new commits.")
@click.option("--since-seq", type=int, default=-1, help="Only commits with seq greater than this (per stream).")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between polls.")
@click.pass_context
def tail_cmd(ctx: click.Context, follow: bool, since_seq: int, interval: float) -> None:
    """Print commits as JSON lines, oldest first; with --follow, keep printing new ones."""
    home = _home(ctx)
    last: dict[str, int] = {}
    while True:
        floor = min([since_seq, *last.values()]) if last else since_seq
        try:
            columns, rows = run_query(
                open_views(home.ledger_dir),
                f"SELECT * EXCLUDE (date) FROM commits WHERE seq > {int(floor)} ORDER BY recorded_at, origin, seq",
            )
        except VisionalityError as e:
            raise click.ClickException(e.diagnostics()) from e
        for row in rows:
            item = dict(zip(columns, row, strict=True))
            origin, seq = str(item["origin"]), int(item["seq"])
            if seq <= last.get(origin, since_seq):
                continue
            last[origin] = seq
            click.echo(json.dumps({k: _plain(v) for k, v in item.items()}, sort_keys=True))
        if not follow:
            return
        time.sleep(interval)
