"""The deployment CA for explicit-proxy mode: created by mitmproxy's CertStore in the home's ``ca/``.

Clients must trust it. httpx (the OpenAI and Anthropic Python SDKs) *replaces* certifi's roots when
``SSL_CERT_FILE`` is set (notes/mitmproxy.md), so we ship ``bundle.pem`` = public roots + our CA: pointing
SSL_CERT_FILE at it keeps every other HTTPS host working.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

__all__ = ["CA_CERT", "BUNDLE", "ensure_ca", "client_env"]

CA_CERT = "mitmproxy-ca-cert.pem"  # public certificate (mitmproxy's confdir naming)
_CA_SECRET = "mitmproxy-ca.pem"  # private key + certificate: never leaves the home
BUNDLE = "bundle.pem"


def ensure_ca(ca_dir: Path) -> Path:
    """Create the CA if missing (2048-bit RSA, mitmproxy defaults) and (re)write the combined bundle."""
    from mitmproxy.certs import CertStore  # heavy import: only the commands that need it pay for it

    ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        CertStore.from_store(str(ca_dir), "mitmproxy", 2048)
    except Exception as e:  # cryptography / OS errors
        raise ConfigError(f"cannot create the deployment CA in {ca_dir}: {e}") from e
    secret = ca_dir / _CA_SECRET
    if secret.exists():
        os.chmod(secret, 0o600)
    write_bundle(ca_dir)
    return ca_dir / CA_CERT


def write_bundle(ca_dir: Path) -> Path:
    import certifi

    ours = (ca_dir / CA_CERT).read_text()
    roots = Path(certifi.where()).read_text()
    bundle = ca_dir / BUNDLE
    tmp = bundle.with_suffix(".tmp")
    tmp.write_text(roots.rstrip("\n") + "\n\n# Visionality deployment CA\n" + ours)
    tmp.replace(bundle)
    return bundle


def client_env(ca_dir: Path, proxy: str) -> list[tuple[str, str, str]]:
    """(variable, value, why) for a client that should go through the proxy."""
    cert = str(ca_dir / CA_CERT)
    bundle = str(ca_dir / BUNDLE)
    return [
        ("HTTPS_PROXY", f"http://{proxy}", "send HTTPS through the appliance"),
        ("SSL_CERT_FILE", bundle, "httpx/OpenAI/Anthropic SDKs: replaces certifi, so use the combined bundle"),
        ("REQUESTS_CA_BUNDLE", bundle, "requests: replaces its roots, same bundle"),
        ("NODE_EXTRA_CA_CERTS", cert, "Node.js: adds to its roots (read at start-up only)"),
        ("NODE_USE_ENV_PROXY", "1", "Node.js >= 24: honour HTTPS_PROXY"),
    ]
