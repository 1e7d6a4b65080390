from __future__ import annotations

from pathlib import Path

from visionality.ca import BUNDLE, CA_CERT, client_env, ensure_ca


def test_ca_created_once_with_private_key_protected(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    cert = ensure_ca(ca)
    first = cert.read_bytes()
    assert b"BEGIN CERTIFICATE" in first
    assert (ca / "mitmproxy-ca.pem").stat().st_mode & 0o777 == 0o600
    assert ensure_ca(ca).read_bytes() == first  # idempotent: never replaces a CA clients already trust
    bundle = (ca / BUNDLE).read_text()
    assert first.decode().strip() in bundle and bundle.count("BEGIN CERTIFICATE") > 50  # public roots kept


def test_client_env_names_the_bundle_for_httpx(tmp_path: Path) -> None:
    env = {name: value for name, value, _ in client_env(tmp_path, "127.0.0.1:8080")}
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:8080"
    assert env["SSL_CERT_FILE"].endswith(BUNDLE) and env["NODE_EXTRA_CA_CERTS"].endswith(CA_CERT)
