"""The key registry: an append-only list of the keys this deployment issued (claims only, never the token).

``visionality key list`` reads it; the admin listener uses it to find a subject's keys and their caps.
The token itself is printed once, to the issuer, and is never stored: a leaked registry grants nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .envelope import Claims
from .errors import ConfigError

__all__ = ["KeyRegistry"]


class KeyRegistry:
    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, claims: Claims, *, kid: str) -> None:
        entry = {"kid": kid, **claims.to_payload()}
        line = (json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self) -> Iterator[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                for n, raw in enumerate(f, 1):
                    if not raw.endswith(b"\n"):
                        break  # a torn last line: being written right now
                    try:
                        entry = json.loads(raw)
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"{self.path}:{n}: not a JSON line: {e.msg}") from e
                    if isinstance(entry, dict):
                        yield entry
        except FileNotFoundError:
            return

    def claims(self) -> Iterator[Claims]:
        for entry in self.entries():
            payload = {k: v for k, v in entry.items() if k != "kid"}
            yield Claims.from_payload(payload)

    def find(self, key_id: str) -> Claims | None:
        for c in self.claims():
            if c.jti == key_id:
                return c
        return None

    def by_sub(self, sub: str) -> list[Claims]:
        return [c for c in self.claims() if c.sub == sub]
