"""A test file per module (STYLE 9; mitmproxy's test/filename_matching.py does the same).

appliance/X.py -> tests/test_X.py; appliance/PKG/Y.py -> tests/test_PKG_Y.py; addons/Z.py -> tests/test_addons_Z.py;
reports/R.py -> tests/test_reports_R.py.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _expected() -> dict[str, str]:
    want: dict[str, str] = {}
    for src in sorted((ROOT / "appliance").rglob("*.py")):
        if src.name == "__init__.py":
            continue
        rel = src.relative_to(ROOT / "appliance")
        name = "_".join([*rel.parts[:-1], rel.stem])
        want[str(src.relative_to(ROOT))] = f"test_{name}.py"
    for folder in ("addons", "reports"):
        for src in sorted((ROOT / folder).glob("*.py")):
            if src.name != "__init__.py":
                want[str(src.relative_to(ROOT))] = f"test_{folder}_{src.stem}.py"
    return want


def test_every_module_has_a_test_file() -> None:
    tests = {p.name for p in (ROOT / "tests").glob("test_*.py")}
    missing = {src: t for src, t in _expected().items() if t not in tests}
    assert not missing, "modules without a test file:\n" + "\n".join(f"  {s} -> tests/{t}" for s, t in missing.items())
