"""CLI through click's CliRunner (STYLE 6): exit codes, output, and what lands on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from visionality.cli import cli
from visionality.config import Config
from visionality.envelope import EnvelopeVerifier
from visionality.home import Home
from visionality.paserk import k4_pid


def run(home: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--home", str(home), *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    run(h, "init", "--upstream", "openai=http://127.0.0.1:9")
    return h


def verifier(home: Path) -> EnvelopeVerifier:
    h = Home(home)
    pk = bytes(h.verify_key())
    return EnvelopeVerifier({k4_pid(pk): pk}, Config.load(h).deployment_id)


def test_init_creates_a_private_deployment(home: Path) -> None:
    assert (home / "visionality.toml").is_file()
    assert (home / "keys" / "signing.paserk").stat().st_mode & 0o777 == 0o600
    assert (home / "ca" / "mitmproxy-ca-cert.pem").is_file() and (home / "ca" / "bundle.pem").is_file()
    assert Config.load(Home(home)).providers["openai"].upstream == "http://127.0.0.1:9"
    again = CliRunner().invoke(cli, ["--home", str(home), "init"])
    assert again.exit_code != 0 and "already a Visionality deployment" in again.output


def test_init_rejects_bad_upstream(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "init", "--upstream", "gemini=http://x"])
    assert r.exit_code == 2 and "PROVIDER=URL" in r.output


def test_key_issue_prints_only_the_key_with_all_claims(home: Path) -> None:
    out = run(
        home,
        "key",
        "issue",
        "--sub",
        "alice",
        "--email",
        "a@corp.example",
        "--task",
        "PROJ-128",
        "--memo",
        "redesign sprint",
        "--url",
        "https://tickets/PROJ-128",
        "--budget",
        "25.50",
        "--period",
        "total",
        "--expires",
        "12h",
        "--gl-code",
        "6150",
    )
    token = out.strip()
    assert out.count("\n") == 1 and token.startswith("v4.public.")
    claims = verifier(home).verify(token)
    assert (claims.sub, claims.email, claims.project, claims.task) == ("alice", "a@corp.example", "PROJ", "PROJ-128")
    assert str(claims.budget.amount) == "25.50" and claims.budget.period == "total"  # type: ignore[union-attr]
    assert claims.exp is not None and (claims.exp - claims.iat).total_seconds() == 12 * 3600
    assert claims.memo == "redesign sprint" and claims.gl_code == "6150"
    assert token not in (home / "keys.jsonl").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "-1"], ">= 0"),
        (["--budget", "abc"], "decimal"),
        (["--budget", "25.1234567"], "6 decimal places"),  # was minted, then refused by every appliance
        (["--budget", "1e16"], "too large"),
        (["--expires", "soon"], "duration"),
    ],
)
def test_key_issue_validates(home: Path, args: list[str], message: str) -> None:
    r = CliRunner().invoke(cli, ["--home", str(home), "key", "issue", "--sub", "a", "--email", "a@x", *args])
    assert r.exit_code == 2 and message in r.output


def test_key_list_and_revoke(home: Path) -> None:
    t1 = run(home, "key", "issue", "--sub", "bob", "--email", "b@x").strip()
    run(home, "key", "issue", "--sub", "carol", "--email", "c@x")
    jti = verifier(home).verify(t1).jti
    rows = [json.loads(line) for line in run(home, "key", "list").splitlines()]
    assert {r["sub"] for r in rows} == {"bob", "carol"} and all(r["revoked"] is None for r in rows)
    assert all("v4.public" not in json.dumps(r) for r in rows)
    run(home, "key", "revoke", "--key-id", jti, "--reason", "left the company")
    rows = {r["sub"]: r for r in (json.loads(line) for line in run(home, "key", "list").splitlines())}
    assert rows["bob"]["revoked"] and "left the company" in rows["bob"]["revoked"] and rows["carol"]["revoked"] is None
    r = CliRunner().invoke(cli, ["--home", str(home), "key", "revoke"])
    assert r.exit_code == 2 and "exactly one" in r.output


def test_ca_prints_env(home: Path) -> None:
    out = run(home, "ca")
    assert "export HTTPS_PROXY=http://127.0.0.1:8080" in out and "bundle.pem" in out


def test_commands_without_a_deployment_say_so(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["--home", str(tmp_path / "none"), "key", "list"])
    assert r.exit_code == 1 and "visionality init" in r.output


def test_events_record_issuance_and_revocation(home: Path) -> None:
    t = run(home, "key", "issue", "--sub", "dan", "--email", "d@x").strip()
    run(home, "key", "revoke", "--sub", "dan")
    out = run(home, "ledger", "query", "--format", "json", "SELECT kind FROM events ORDER BY 1")
    kinds = [r["kind"] for r in json.loads(out)]
    assert {"deployment_initialised", "key_issued", "key_revoked"} <= set(kinds)
    stored = b"".join(p.read_bytes() for p in (home / "ledger").rglob("*") if p.is_file())
    assert stored and t.encode() not in stored and t.split(".")[2][:40].encode() not in stored


def test_home_may_follow_the_subcommand(tmp_path: Path) -> None:
    """`visionality init --home DIR` as the issue and README write it, not only `visionality --home DIR init`."""
    h = tmp_path / "after"
    r = CliRunner().invoke(cli, ["init", "--home", str(h), "--upstream", "openai=http://127.0.0.1:9"])
    assert r.exit_code == 0, r.output
    assert (h / "visionality.toml").exists()
    r = CliRunner().invoke(cli, ["key", "issue", "--sub", "a", "--email", "a@x", "--home", str(h)])
    assert r.exit_code == 0 and r.output.startswith("v4.public."), r.output
    r = CliRunner().invoke(cli, ["ledger", "query", "SELECT count(*) AS n FROM events", "--home", str(h)])
    assert r.exit_code == 0 and r.output.splitlines()[1] != "0", r.output
