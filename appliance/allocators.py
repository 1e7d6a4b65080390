"""Allocator settings that keep a long-running appliance's memory flat.

Measured with tests/test_e2e_refusals.py's 10,000-request run: with the defaults RSS grew ~70 MB over 15,000
calls in steps at every ledger seal; with both settings below it grew ~16 MB (the rows pending a seal).
- glibc creates up to 8 malloc arenas per core for threads (the ledger's group-commit and sealer threads) and
  rarely returns their memory: M_ARENA_MAX=2 (mallopt(3)).
- pyarrow's default mimalloc pool keeps freed pages for reuse across seals: the system allocator returns them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["tune_allocators"]

log = logging.getLogger("visionality.allocators")

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# A fixed mmap threshold turns off glibc's dynamic one (mallopt(3): "setting M_MMAP_THRESHOLD disables the
# dynamic adjustment"), which otherwise rises to the size of the largest freed block (up to 32 MiB): after
# the first seal, every later seal's multi-MiB buffers land in the heap and stay there.
_MMAP_THRESHOLD = 256 * 1024
_TRIM_THRESHOLD = 1024 * 1024


def tune_allocators() -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        for name, param, value in (
            ("M_ARENA_MAX", _M_ARENA_MAX, 2),
            ("M_MMAP_THRESHOLD", _M_MMAP_THRESHOLD, _MMAP_THRESHOLD),
            ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
        ):
            if libc.mallopt(param, value) != 1:
                log.info("mallopt(%s) not applied", name)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        pass
    try:
        import pyarrow

        pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    except Exception:  # pragma: no cover - pyarrow is a dependency; never fail start-up over tuning
        log.warning("could not switch pyarrow to the system allocator", exc_info=True)
