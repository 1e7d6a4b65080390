from __future__ import annotations

import subprocess
import sys


def test_pyarrow_uses_the_system_pool_after_tuning() -> None:
    code = (
        "from visionality.allocators import tune_allocators; tune_allocators(); import pyarrow as pa; "
        "print(pa.default_memory_pool().backend_name)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "system"
