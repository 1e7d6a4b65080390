#!/usr/bin/env bash
# Install the benchmark's peer gateways into bench/.cache (git-ignored). Idempotent: a peer that is
# already installed is left alone; run with FORCE=1 to reinstall. A peer that cannot be installed is
# reported and skipped -- bench_wire.py then prints "not available: <reason>" for it and goes on.
#
#   bash bench/setup_peers.sh            # both peers
#   bash bench/setup_peers.sh portkey    # just one
#
# Only the npm registry and PyPI are used, through npm and pip.
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="$HERE/.cache"
mkdir -p "$CACHE"

# Portkey's open-source gateway, the version the peer notes studied (shared/notes/portkey.md).
PORTKEY_VERSION="${PORTKEY_VERSION:-1.15.2}"
# The gateway's package.json says "@hono/node-server": "^1.3.3", which today resolves to a much newer
# node-server than the one the gateway was built and tested with. Its package-lock resolved 1.13.5
# (Portkey-AI/gateway PR #1605 quotes "^1.3.3 (resolved 1.13.5)"), so pin that: we benchmark the
# gateway as shipped, not a newer HTTP adapter.
HONO_NODE_SERVER_VERSION="${HONO_NODE_SERVER_VERSION:-1.13.5}"
# LiteLLM: latest unless pinned from outside (LITELLM_SPEC='litellm[proxy]==1.xx').
LITELLM_SPEC="${LITELLM_SPEC:-litellm[proxy]}"

want() { [ $# -eq 0 ] || [[ " $* " == *" $PEER "* ]]; }

status=0

install_portkey() {
    local dir="$CACHE/portkey"
    if [ -z "${FORCE:-}" ] && [ -f "$dir/node_modules/@portkey-ai/gateway/build/start-server.js" ] \
        && [ -f "$dir/node_modules/@hono/node-server/package.json" ]; then
        echo "portkey: already installed in $dir"
        return 0
    fi
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "portkey: SKIPPED: node/npm not found (apt-get install nodejs npm)"
        return 1
    fi
    mkdir -p "$dir"
    cat >"$dir/package.json" <<EOF
{
  "name": "visionality-bench-portkey",
  "private": true,
  "dependencies": {
    "@portkey-ai/gateway": "$PORTKEY_VERSION",
    "@hono/node-server": "$HONO_NODE_SERVER_VERSION"
  },
  "overrides": {
    "@hono/node-server": "$HONO_NODE_SERVER_VERSION"
  }
}
EOF
    # --ignore-scripts: the gateway's postinstall runs patch-package against patches/ that the npm
    # tarball does not ship; nothing needs building.
    if (cd "$dir" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error); then
        echo "portkey: installed @portkey-ai/gateway@$PORTKEY_VERSION with @hono/node-server@$HONO_NODE_SERVER_VERSION"
    else
        echo "portkey: SKIPPED: npm install failed"
        return 1
    fi
}

pick_python() {
    # LiteLLM wants Python >= 3.9 < 3.14; prefer 3.12 (what the project itself uses).
    local c
    for c in "${LITELLM_PYTHON:-}" python3.12 "$HOME/.pyenv/versions/3.12.1/bin/python3" python3.13 python3.11 python3; do
        [ -n "$c" ] || continue
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys, venv; sys.exit(not ((3,9) <= sys.version_info[:2] < (3,14)))' 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

install_litellm() {
    local venv="$CACHE/litellm-venv"
    if [ -z "${FORCE:-}" ] && [ -x "$venv/bin/litellm" ] && "$venv/bin/python" -c 'import litellm.proxy.proxy_server' 2>/dev/null; then
        echo "litellm: already installed in $venv"
        return 0
    fi
    local py
    if ! py="$(pick_python)"; then
        echo "litellm: SKIPPED: no Python 3.9-3.13 interpreter found"
        return 1
    fi
    rm -rf "$venv"
    "$py" -m venv "$venv" || { echo "litellm: SKIPPED: venv creation failed"; return 1; }
    "$venv/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
    # (grep drops this machine's pip-config noise about missing local index folders)
    if "$venv/bin/pip" install -q "$LITELLM_SPEC" 2> >(grep -v 'is ignored: it is neither' >&2); then
        echo "litellm: installed $("$venv/bin/python" -c 'import importlib.metadata as m; print("litellm", m.version("litellm"))') in $venv"
    else
        echo "litellm: SKIPPED: pip install '$LITELLM_SPEC' failed"
        return 1
    fi
}

for PEER in portkey litellm; do
    want "$@" || continue
    "install_$PEER" || status=1
done
exit $status
