"""Generates the README's command reference from the CLI's own --help, so docs cannot drift from code.

``python -m tests.readme_commands`` rewrites the block between the markers; tests/test_docs.py fails when the
README is out of date (pattern: Datasette's tests/test_docs.py, sigstore's check-readme).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- commands:start -->", "<!-- commands:end -->"


def _walk(cmd: click.Command, path: list[str]) -> list[tuple[str, click.Command]]:
    out = [(" ".join(path), cmd)]
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            out += _walk(cmd.commands[name], [*path, name])
    return out


def render() -> str:
    from visionality.cli import cli

    lines = ["", "| command | what it does |", "| --- | --- |"]
    for name, cmd in _walk(cli, ["visionality"])[1:]:
        if isinstance(cmd, click.Group):
            continue
        ctx = click.Context(cmd, info_name=name)
        opts = []
        for p in cmd.get_params(ctx):
            if isinstance(p, click.Option) and "--help" not in p.opts and "--home" not in p.opts:
                opts.append(p.opts[0])
            elif isinstance(p, click.Argument):
                opts.append(p.human_readable_name)
        summary = (cmd.help or "").strip().splitlines()[0] if cmd.help else ""
        usage = f"`{name}`" + (" " + " ".join(f"`{o}`" for o in opts) if opts else "")
        lines.append(f"| {usage} | {summary} |")
    lines.append("")
    lines.append("Every command takes `--home DIR` (or `$VISIONALITY_HOME`) and `--help`.")
    lines.append("")
    return "\n".join(lines)


def current() -> str:
    text = README.read_text()
    m = re.search(re.escape(START) + r"(.*?)" + re.escape(END), text, re.S)
    return m.group(1) if m else ""


def write() -> None:
    text = README.read_text()
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: START + render() + END, text, flags=re.S)
    README.write_text(new)


if __name__ == "__main__":
    write()
    sys.exit(0)
