#!/usr/bin/env bash
# Creates .venv with a Python >= 3.12 and installs Visionality into it (editable).
# mitmproxy 12 needs Python >= 3.12; on 3.11 pip silently falls back to mitmproxy 11 (issue 2), so we
# look for a suitable interpreter explicitly instead of trusting `python3`.
# Usage: scripts/bootstrap.sh [extras]   e.g. scripts/bootstrap.sh test
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local candidates=()
  [ -n "${VISIONALITY_PYTHON:-}" ] && candidates+=("$VISIONALITY_PYTHON")
  candidates+=(python3.13 python3.12)
  for d in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13* "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*; do
    [ -x "$d/bin/python" ] && candidates+=("$d/bin/python")
  done
  candidates+=(python3 python)
  for c in "${candidates[@]}"; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

extras="${1:-}"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
  py=$(find_python) || { echo "error: Visionality needs Python >= 3.12 (mitmproxy 12); none found. Set VISIONALITY_PYTHON=/path/to/python3.12" >&2; exit 2; }
  echo "bootstrap: creating .venv with $py ($("$py" --version 2>&1))" >&2
  rm -rf .venv
  "$py" -m venv .venv
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
stamp=".venv/.installed-$(echo "$extras" | tr -c 'a-z0-9' '_')"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing $spec into .venv (log: .venv/install.log)" >&2
  if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip &&
         .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"; } > .venv/install.log 2>&1; then
    grep -v "^WARNING: Location" .venv/install.log >&2 || true
    echo "error: install failed (full log: .venv/install.log)" >&2; exit 2
  fi
  .venv/bin/python -c 'import visionality.cli, mitmproxy' || { echo "error: install incomplete" >&2; exit 2; }
  touch "$stamp"
fi
