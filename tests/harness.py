"""End-to-end harness: the real fake provider process and the real `visionality up` process.

Nothing of the appliance is mocked: tests talk to it over sockets with the official SDKs. Only the LLM
provider is fake (tests/fakeprovider.py), and it speaks the providers' wire formats.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
OPENAI_KEY = "sk-fake-openai"
ANTHROPIC_KEY = "sk-ant-fake-anthropic"


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    """Read stdout lines until one contains ``marker``. A thread does the reading: select() on a buffered text
    pipe misses lines already pulled into Python's buffer."""
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: list[str] = []
    found = threading.Event()

    def pump() -> None:
        for line in stdout:
            lines.append(line.rstrip("\n"))
            if marker in line:
                found.set()
                return

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while not found.wait(0.05):
        if proc.poll() is not None and not t.is_alive():
            raise RuntimeError(f"process exited with {proc.returncode} before {marker!r}; stdout: {lines}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {marker!r} within {timeout}s; got {lines}")
    return list(lines)


@dataclass
class FakeProviderProc:
    url: str
    log: Path
    proc: subprocess.Popen[str]

    @classmethod
    def start(cls, log: Path) -> FakeProviderProc:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakeprovider", "--host", "127.0.0.1", "--port", "0", "--log", str(log)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines = _read_until(proc, "listening ", 30)
        url = lines[-1].split("listening ", 1)[1].strip()
        return cls(url, log, proc)

    def requests(self) -> list[dict[str, Any]]:
        """Every request the provider saw (one JSON line each, written as it answered)."""
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def connections(self) -> int:
        """TCP connections the provider accepted since the last ``clear``."""
        path = self.log.with_name(self.log.name + ".connections")
        return len(path.read_text().splitlines()) if path.exists() else 0

    def clear(self) -> None:
        self.log.write_text("")
        self.log.with_name(self.log.name + ".connections").write_text("")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class Appliance:
    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[str] | None = None
    listeners: dict[str, str] = field(default_factory=dict)
    stderr_path: Path | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls, home: Path, provider_url: str, *, config_extra: str = "", appliance_id: str = "node-1"
    ) -> Appliance:
        env = dict(os.environ)
        env.update(
            VISIONALITY_HOME=str(home),
            VISIONALITY_OPENAI_API_KEY=OPENAI_KEY,
            VISIONALITY_ANTHROPIC_API_KEY=ANTHROPIC_KEY,
            PYTHONUNBUFFERED="1",
        )
        env.pop("HTTPS_PROXY", None)
        env.pop("HTTP_PROXY", None)
        app = cls(home, env)
        app.cli(
            "init",
            "--upstream",
            f"openai={provider_url}",
            "--upstream",
            f"anthropic={provider_url}",
            "--appliance-id",
            appliance_id,
        )
        if config_extra:
            cfg = home / "visionality.toml"
            cfg.write_text(cfg.read_text() + "\n" + config_extra + "\n")
        return app

    def start(self, *extra_args: str, timeout: float = 180) -> Appliance:
        self.stderr_path = self.home / f"appliance-{int(time.time() * 1000)}.log"
        stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "visionality"),
                "up",
                # mitmproxy refuses two servers on one address, even on port 0: use three loopback addresses.
                "--base-listen",
                "127.0.0.1:0",
                "--proxy-listen",
                "127.0.0.2:0",
                "--admin-listen",
                "127.0.0.3:0",
                *extra_args,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            lines = _read_until(self.proc, "visionality ready", timeout)
        except Exception as e:
            raise RuntimeError(f"{e}\nappliance stderr:\n{self.stderr()}") from e
        for line in lines:
            if line.startswith("listening "):
                _, name, addr = line.split()
                self.listeners[name] = addr
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path and self.stderr_path.exists() else ""

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        return rc

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    # -- clients ------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.listeners['base_url']}"

    @property
    def proxy_url(self) -> str:
        return f"http://{self.listeners['proxy']}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.listeners['admin']}"

    @property
    def ca_bundle(self) -> str:
        return str(self.home / "ca" / "bundle.pem")

    def cli(self, *args: str, expect_ok: bool = True) -> str:
        from visionality.cli import cli  # imported late: unit-test runs must not depend on the whole app

        result = CliRunner().invoke(cli, ["--home", str(self.home), *args], env=self.env, catch_exceptions=False)
        if expect_ok:
            assert result.exit_code == 0, result.output
        return result.output

    def key(self, *, sub: str = "alice@corp.example", email: str | None = None, **opts: str) -> str:
        args = ["key", "issue", "--sub", sub, "--email", email or sub]
        for k, v in opts.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        return self.cli(*args).strip()

    def openai(self, key: str, **kw: Any) -> Any:
        import openai

        return openai.OpenAI(api_key=key, base_url=self.base_url + "/v1", max_retries=0, **kw)

    def anthropic(self, key: str, **kw: Any) -> Any:
        import anthropic

        return anthropic.Anthropic(api_key=key, base_url=self.base_url + "/anthropic", max_retries=0, **kw)

    def query(self, sql: str) -> list[dict[str, Any]]:
        out = self.cli("ledger", "query", "--format", "json", sql)
        data = json.loads(out) if out.strip() else []
        assert isinstance(data, list)
        return data
