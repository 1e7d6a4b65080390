#!/usr/bin/env python3
"""Wire-path benchmark: Visionality vs direct, bare mitmdump, Portkey's gateway and LiteLLM's proxy.

All targets run in one invocation against the same fake provider (``tests/fakeprovider.py``): each is
started fresh, probed and warmed up, then all are measured in interleaved rounds (targets take turns
phase slice by phase slice). The proxies are pinned to one core (``taskset -c 1``); the fake provider and
this process (the load generator, ``bench/loadgen.py``) share the other (``-c 0``).

Per target: p50/p99 latency of a small non-stream chat completion at concurrency 1 and 32, requests/s at
c=32, CPU time per request of the proxy's process tree, time to first streamed byte (TTFB) of a streamed
chat completion, and peak RSS. Then ratios against direct and bare mitmdump, and the issue's goals for
Visionality as PASS/FAIL. See bench/README.md.

    .venv/bin/python bench/bench_wire.py                      # everything that is installed, < 5 min
    .venv/bin/python bench/bench_wire.py --targets direct,mitmdump --requests 200 --duration 2
    bash bench/setup_peers.sh                                 # once, for the portkey and litellm targets

Loopback only; every phase is bounded in count and time; every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen import PhaseResult, Target, chat_body, percentile, request_once, run_phase

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
LOOPBACK = "127.0.0.1"
CHAT_PATH = "/v1/chat/completions"
# The fake provider's keys (tests/fakeprovider.py DEFAULT_OPENAI_KEY / DEFAULT_ANTHROPIC_KEY).
FAKE_OPENAI_KEY = "sk-fake-openai"
FAKE_ANTHROPIC_KEY = "sk-ant-fake-anthropic"
ALL_TARGETS = ("direct", "mitmdump", "mitmdump-tls", "visionality-base", "visionality-proxy", "portkey", "litellm")
# Issue 2 goals, "Tests and benchmark": Visionality with its whole chain on adds < 1 ms over bare mitmdump
# at c=1 (p50), keeps >= 80 % of its throughput at c=32, adds < 5 ms to the first streamed byte.
GOAL_ADDED_MS = 1.0
GOAL_RPS_SHARE = 0.80
GOAL_TTFB_MS = 5.0
HIGH_CONCURRENCY = 32
# Stream shape: several content chunks with a gap between them, so a proxy that buffers the stream shows
# up as a TTFB of about chunks x delay instead of ~1 ms (mitmproxy buffers SSE unless told not to).
STREAM_CHUNKS = 8
STREAM_CHUNK_DELAY_MS = 5
STREAM_HEADERS = {"x-fake-chunks": str(STREAM_CHUNKS), "x-fake-chunk-delay-ms": str(STREAM_CHUNK_DELAY_MS)}


class Unavailable(Exception):
    """A target that cannot run here; the message is the reason printed in its row."""


# --------------------------------------------------------------------------------------------------
# processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((LOOPBACK, port)) == 0


class Proc:
    """A child process in its own session, output to a log file, pinned with taskset when asked."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        workdir: Path,
        core: int | None,
        env: dict[str, str | None] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 -- closed in stop()
        if core is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(core), *argv]
        full_env = dict(os.environ)
        for k, v in (env or {}).items():  # None removes a variable
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
        self.popen = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        self.pid = self.popen.pid  # taskset execs the program: same pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 6) -> str:
        lines = [ln for ln in self.log_text().splitlines() if ln.strip()]
        return " | ".join(lines[-n:])[-600:]

    def wait_ready(self, port: int | None, *, timeout: float, line: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise Unavailable(f"{self.name} exited with {self.popen.returncode}: {self.log_tail()}")
            if (line is None or line in self.log_text()) and (port is None or _port_open(port)):
                return
            time.sleep(0.05)
        raise Unavailable(f"{self.name} not ready after {timeout:.0f}s: {self.log_tail()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            # Our child leads its own session: signal its group so helpers it spawned go too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        self._log.close()


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """pid and all its live descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime+stime of the process tree, plus cutime+cstime (children already reaped)."""
    ticks = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17 (proc(5))
        ticks += sum(int(x) for x in fields[11:15])
    return ticks / _CLK_TCK


def core_busy_seconds(core: int | None) -> float:
    """Busy time (user+nice+system+irq+softirq+steal) of one CPU from /proc/stat; 0 when unknown."""
    if core is None:
        return 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{core} "):
                    v = [int(x) for x in line.split()[1:9]]
                    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / _CLK_TCK
    return 0.0


def wait_quiet(cores: list[int], max_wait: float, threshold: float = 0.15) -> str:
    """Wait (at most max_wait s) for a 1 s window in which every core is < threshold busy."""
    t0 = time.monotonic()
    worst = 1.0
    while time.monotonic() - t0 < max_wait:
        before = [core_busy_seconds(c) for c in cores]
        time.sleep(1.0)
        busy = [core_busy_seconds(c) - b for c, b in zip(cores, before, strict=True)]
        worst = max(busy)
        if worst < threshold:
            return f"machine quiet after {time.monotonic() - t0:.0f}s (busiest core {worst:.0%})"
    return f"machine still busy after {max_wait:.0f}s (busiest core {worst:.0%}): measuring anyway"


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) summed over the process tree, in MiB."""
    kb = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        kb += int(line.split()[1])
        except OSError:
            continue
    return kb / 1024


# --------------------------------------------------------------------------------------------------
# targets


@dataclass
class Env:
    """What every target builder needs."""

    workdir: Path
    fake_port: int
    proxy_core: int | None
    python: str
    startup_timeout: float
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], **kw: Any) -> Proc:
        p = Proc(name, argv, workdir=self.workdir, core=self.proxy_core, **kw)
        self.procs.append(p)
        return p


@dataclass
class Running:
    target: Target
    proc: Proc | None = None
    stream_headers: dict[str, str] = field(default_factory=lambda: dict(STREAM_HEADERS))
    note: str = ""


def _openai_auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {FAKE_OPENAI_KEY}"}


def t_direct(env: Env) -> Running:
    return Running(Target(LOOPBACK, env.fake_port, CHAT_PATH, _openai_auth()))


def _mitmdump() -> str:
    exe = Path(sys.executable).parent / "mitmdump"
    if exe.exists():
        return str(exe)
    found = shutil.which("mitmdump")
    if not found:
        raise Unavailable("mitmdump not found next to this Python nor on PATH (run with the project venv)")
    return found


def t_mitmdump(env: Env) -> Running:
    port = _free_port()
    confdir = env.workdir / "mitm-plain"
    argv = [
        _mitmdump(),
        "--mode",
        f"reverse:http://{LOOPBACK}:{env.fake_port}@{port}",
        "-q",
        "--set",
        f"listen_host={LOOPBACK}",
        "--set",
        f"confdir={confdir}",
    ]
    p = env.start("mitmdump", argv)
    p.wait_ready(port, timeout=env.startup_timeout)
    return Running(Target(LOOPBACK, port, CHAT_PATH, _openai_auth()), p)


_REDIRECT_ADDON = """\
# Bare-mitmdump baseline for proxy mode: intercept TLS for api.openai.com and send the request to the
# plain-HTTP fake provider. One hook, nothing else.
def request(flow):
    if flow.request.pretty_host == "api.openai.com":
        flow.request.scheme = "http"
        flow.request.host = "127.0.0.1"
        flow.request.port = {port}
"""


def t_mitmdump_tls(env: Env) -> Running:
    """Bare mitmdump as an explicit HTTPS proxy (CONNECT + TLS on the client hop), the fair baseline for
    Visionality's proxy mode. lazy + no upstream_cert: never reach for the real api.openai.com."""
    port = _free_port()
    confdir = env.workdir / "mitm-tls"
    addon = env.workdir / "redirect_addon.py"
    addon.write_text(_REDIRECT_ADDON.format(port=env.fake_port))
    argv = [
        _mitmdump(),
        "--mode",
        f"regular@{port}",
        "-q",
        "--set",
        f"listen_host={LOOPBACK}",
        "--set",
        f"confdir={confdir}",
        "--set",
        "connection_strategy=lazy",
        "--set",
        "upstream_cert=false",
        "-s",
        str(addon),
    ]
    p = env.start("mitmdump-tls", argv)
    p.wait_ready(port, timeout=env.startup_timeout)
    ca = confdir / "mitmproxy-ca-cert.pem"
    if not ca.exists():
        raise Unavailable(f"mitmdump did not write its CA to {ca}")
    return Running(
        Target(
            LOOPBACK,
            port,
            CHAT_PATH,
            _openai_auth(),
            host_header="api.openai.com",
            connect_to="api.openai.com:443",
            tls_server_name="api.openai.com",
            ca_file=str(ca),
        ),
        p,
    )


def _visionality_cli() -> list[str]:
    exe = Path(sys.executable).parent / "visionality"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("visionality")
    if found:
        return [found]
    raise Unavailable("the `visionality` console script is not installed in this Python's environment")


def _run_cli(argv: list[str], what: str, env: dict[str, str]) -> str:
    try:
        r = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env={**os.environ, **env}, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unavailable(f"`{what}` failed: {e}") from e
    if r.returncode != 0:
        msg = (r.stderr.strip() or r.stdout.strip()).splitlines()
        raise Unavailable(f"`{what}` exited {r.returncode}: {' | '.join(msg[-3:])[:300]}")
    return r.stdout


_VIS_KEYS = {"VISIONALITY_OPENAI_API_KEY": FAKE_OPENAI_KEY, "VISIONALITY_ANTHROPIC_API_KEY": FAKE_ANTHROPIC_KEY}


def _visionality_up(env: Env, name: str) -> tuple[Proc, Path, str, int, int]:
    cli = _visionality_cli()
    home = env.workdir / f"home-{name}"
    up = f"http://{LOOPBACK}:{env.fake_port}"
    _run_cli(
        [*cli, "--home", str(home), "init", "--upstream", f"openai={up}", "--upstream", f"anthropic={up}"],
        "visionality init",
        _VIS_KEYS,
    )
    out = _run_cli(
        [
            *cli,
            "--home",
            str(home),
            "key",
            "issue",
            "--sub",
            "alice@example.com",
            "--email",
            "alice@example.com",
            "--task",
            "BENCH-1",
            "--budget",
            "1000000",
        ],
        "visionality key issue",
        _VIS_KEYS,
    )
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    if not lines:
        raise Unavailable("`visionality key issue` printed no key")
    envelope = lines[-1]
    base, proxy, admin = _free_port(), _free_port(), _free_port()
    argv = [
        *cli,
        "--home",
        str(home),
        "up",
        "--base-listen",
        f"{LOOPBACK}:{base}",
        "--proxy-listen",
        f"{LOOPBACK}:{proxy}",
        "--admin-listen",
        f"{LOOPBACK}:{admin}",
    ]
    p = env.start(name, argv, env=_VIS_KEYS)
    # It loads the PII analyzer (spaCy) at start: allow for that on a busy machine.
    p.wait_ready(base, timeout=max(env.startup_timeout, 120), line="visionality ready")
    if not _port_open(proxy):
        p.wait_ready(proxy, timeout=10)
    return p, home, envelope, base, proxy


def _vis_available() -> None:
    cli = _visionality_cli()
    r = subprocess.run([*cli, "up", "--help"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise Unavailable(
            "`visionality up` does not exist yet: " + (r.stderr.strip() or r.stdout.strip()).splitlines()[-1][:200]
        )


def t_visionality_base(env: Env) -> Running:
    _vis_available()
    p, _, envelope, base, _ = _visionality_up(env, "visionality-base")
    return Running(Target(LOOPBACK, base, CHAT_PATH, {"Authorization": f"Bearer {envelope}"}), p)


def t_visionality_proxy(env: Env) -> Running:
    _vis_available()
    p, home, envelope, _, proxy = _visionality_up(env, "visionality-proxy")
    ca = home / "ca" / "mitmproxy-ca-cert.pem"
    if not ca.exists():
        ca = home / "ca" / "bundle.pem"  # the combined bundle `visionality ca` points SDKs at
    if not ca.exists():
        raise Unavailable(f"no deployment CA in {home / 'ca'}")
    return Running(
        Target(
            LOOPBACK,
            proxy,
            CHAT_PATH,
            {"Authorization": f"Bearer {envelope}"},
            host_header="api.openai.com",
            connect_to="api.openai.com:443",
            tls_server_name="api.openai.com",
            ca_file=str(ca),
        ),
        p,
    )


def t_portkey(env: Env) -> Running:
    server = CACHE / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if not server.exists():
        raise Unavailable("Portkey gateway not installed (bash bench/setup_peers.sh portkey)")
    node = shutil.which("node")
    if not node:
        raise Unavailable("node not found")
    port = _free_port()
    p = env.start("portkey", [node, str(server), "--headless", f"--port={port}"], cwd=CACHE / "portkey")
    p.wait_ready(port, timeout=env.startup_timeout)
    headers = {
        **_openai_auth(),
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"http://{LOOPBACK}:{env.fake_port}/v1",
    }
    # Portkey forwards only the headers it knows; x-portkey-forward-headers names extra ones to pass on.
    stream = {**STREAM_HEADERS, "x-portkey-forward-headers": ",".join(STREAM_HEADERS)}
    return Running(Target(LOOPBACK, port, CHAT_PATH, headers), p, stream_headers=stream)


_LITELLM_CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:{port}/v1
      api_key: {key}
      # LiteLLM does not forward client headers upstream; shape its streams the same way here.
      extra_headers:
        x-fake-chunks: "{chunks}"
        x-fake-chunk-delay-ms: "{delay}"
litellm_settings:
  telemetry: false
"""


def t_litellm(env: Env) -> Running:
    exe = CACHE / "litellm-venv" / "bin" / "litellm"
    if not exe.exists():
        raise Unavailable("LiteLLM not installed (bash bench/setup_peers.sh litellm)")
    port = _free_port()
    cfg = env.workdir / "litellm.yaml"
    cfg.write_text(
        _LITELLM_CONFIG.format(
            port=env.fake_port, key=FAKE_OPENAI_KEY, chunks=STREAM_CHUNKS, delay=STREAM_CHUNK_DELAY_MS
        )
    )
    # No database (no DATABASE_URL): no keys, budgets or spend logs -- less work than Visionality does.
    # The local cost map: no network here, and a remote fetch at start would only add a timeout.
    # A master key (recent LiteLLM refuses to start without one): clients present it, like an envelope.
    master = "sk-bench-" + secrets.token_hex(32)
    lenv: dict[str, str | None] = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "LITELLM_MASTER_KEY": master,
    }
    for k in ("DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        lenv[k] = None
    p = env.start(
        "litellm",
        [str(exe), "--config", str(cfg), "--host", LOOPBACK, "--port", str(port), "--num_workers", "1"],
        env=lenv,
        cwd=env.workdir,
    )
    p.wait_ready(port, timeout=max(env.startup_timeout, 90))
    return Running(Target(LOOPBACK, port, CHAT_PATH, {"Authorization": f"Bearer {master}"}), p, stream_headers={})


BUILDERS: dict[str, Callable[[Env], Running]] = {
    "direct": t_direct,
    "mitmdump": t_mitmdump,
    "mitmdump-tls": t_mitmdump_tls,
    "visionality-base": t_visionality_base,
    "visionality-proxy": t_visionality_proxy,
    "portkey": t_portkey,
    "litellm": t_litellm,
}

DESCRIPTIONS = {
    "direct": "client -> fake provider, no proxy (the floor; its c=32 row is the load generator's ceiling)",
    "mitmdump": "bare mitmdump --mode reverse, plain HTTP, default addons, no checks",
    "mitmdump-tls": "bare mitmdump as HTTPS proxy (CONNECT + TLS client hop) + 1-hook redirect addon",
    "visionality-base": "visionality up, base-URL mode (plain HTTP), whole addon chain",
    "visionality-proxy": "visionality up, proxy mode: CONNECT + TLS client hop, whole addon chain",
    "portkey": "Portkey OSS gateway (node, @hono/node-server) with x-portkey-custom-host",
    "litellm": "LiteLLM proxy, 1 uvicorn worker, master key, no database",
}


# --------------------------------------------------------------------------------------------------
# measuring


@dataclass
class Options:
    requests: int
    duration: float
    stream_requests: int
    warmup: float
    concurrency: int
    rounds: int
    proxy_core: int | None = None


@dataclass
class Result:
    name: str
    status: str = "ok"  # ok | unavailable | failed
    reason: str = ""
    c1: PhaseResult | None = None
    cN: PhaseResult | None = None
    stream: PhaseResult | None = None
    cpu_ms_per_req: float = math.nan
    peak_rss_mb: float = math.nan
    outside_load: float = math.nan  # share of the proxy core used by others while this target was measured
    notes: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        def ms(v: float) -> float | None:
            return None if math.isnan(v) else round(v * 1000, 3)

        d: dict[str, Any] = {
            "target": self.name,
            "status": self.status,
            "reason": self.reason,
            "notes": self.notes,
            "description": DESCRIPTIONS.get(self.name, ""),
        }
        for key, ph, vals in (
            ("c1", self.c1, "latencies"),
            ("cN", self.cN, "latencies"),
            ("stream_ttfb", self.stream, "ttfbs"),
        ):
            if ph is None:
                continue
            xs = getattr(ph, vals)
            d[key] = {
                "p50_ms": ms(percentile(xs, 50)),
                "p99_ms": ms(percentile(xs, 99)),
                "last_byte_p50_ms": ms(percentile(ph.latencies, 50)),
                "ok": ph.ok,
                "errors": ph.errors,
                "concurrency": ph.concurrency,
                "rps": round(ph.rps, 1),
                "elapsed_s": round(ph.elapsed, 3),
                "error_samples": ph.error_samples,
            }
        d["cpu_ms_per_req"] = None if math.isnan(self.cpu_ms_per_req) else round(self.cpu_ms_per_req, 3)
        d["peak_rss_mb"] = None if math.isnan(self.peak_rss_mb) else round(self.peak_rss_mb, 1)
        d["outside_load_on_proxy_core"] = None if math.isnan(self.outside_load) else round(self.outside_load, 3)
        return d


async def _check(run: Running, body: bytes, extra: dict[str, str], expect: bytes, what: str) -> bytes:
    """One probe request that must succeed; returns the response head."""
    try:
        status, prefix, head = await request_once(run.target, body, extra, timeout=20)
    except Exception as e:  # noqa: BLE001 -- any transport failure makes the target unusable; say which
        raise Unavailable(f"{what} probe failed: {type(e).__name__}: {e}") from e
    if status != 200 or expect not in prefix:
        raise Unavailable(f"{what} probe answered HTTP {status}: {prefix[:200]!r}")
    return head


def _merge(into: PhaseResult | None, part: PhaseResult) -> PhaseResult:
    if into is None:
        return part
    into.latencies += part.latencies
    into.ttfbs += part.ttfbs
    into.ok += part.ok
    into.errors += part.errors
    into.error_samples = (into.error_samples + part.error_samples)[:5]
    into.elapsed += part.elapsed
    return into


def _fake_call(fake_port: int, method: str, path: str) -> Any:
    """The fake provider's own control endpoints (never through a proxy)."""
    req = urllib.request.Request(
        f"http://{LOOPBACK}:{fake_port}{path}", method=method, data=b"" if method == "POST" else None
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=10) as r:
        return json.loads(r.read())


def _stream_shape_seen(fake_port: int) -> str | None:
    """None if the last streamed request reached the provider with our x-fake-* shaping headers, else what it saw."""
    try:
        records = _fake_call(fake_port, "GET", "/_fake/requests")
    except (OSError, ValueError) as e:
        return f"could not read the provider's log: {e}"
    streamed = [r for r in records if isinstance(r, dict) and r.get("stream")]
    last = (streamed or records or [{}])[-1]
    headers = last.get("headers") or {}
    got = {k: headers.get(k) for k in STREAM_HEADERS}
    return None if got == STREAM_HEADERS else f"got {got}"


async def measure_all(runs: dict[str, Running], results: dict[str, Result], opts: Options, fake_port: int) -> None:
    """Probe and warm every running target, then measure them in interleaved rounds.

    Every phase is split into ``opts.rounds`` slices and the targets take turns slice by slice (the
    starting target rotates), so a burst of outside load on this shared machine lands on all of them
    instead of on whichever target happened to be running. CPU is counted only over a target's own slices.
    """
    plain, streamed = chat_body(stream=False), chat_body(stream=True)
    expect_plain, expect_stream = b'"chat.completion"', b"chat.completion.chunk"
    active: list[str] = []
    for name, run in runs.items():
        try:
            try:
                _fake_call(fake_port, "POST", "/_fake/clear")
            except (OSError, ValueError) as e:
                raise Unavailable(f"the fake provider does not answer: {e}") from e
            head = await _check(run, plain, {}, expect_plain, "non-stream")
            await _check(run, streamed, run.stream_headers, expect_stream, "stream")
        except Unavailable as e:
            results[name].status, results[name].reason = "failed", str(e)
            continue
        if name.startswith("visionality") and b"\nx-visionality-commit:" not in head.lower():
            # Every call through the whole chain ends in a commit; no commit header means we are not
            # measuring what the goals are about.
            results[name].notes.append("the probe's answer carried no x-visionality-commit header: is the chain on?")
        seen = _stream_shape_seen(fake_port)
        if seen is not None:
            results[name].notes.append(f"stream shape headers did not reach the provider ({seen}): ttfb not comparable")
        active.append(name)
        # Warm-up: connections, caches, JIT (node), imports on first use (LiteLLM).
        if opts.warmup > 0:
            w = opts.warmup / 3
            await run_phase(run.target, plain, concurrency=1, requests=opts.requests, duration=w)
            await run_phase(run.target, plain, concurrency=opts.concurrency, requests=opts.requests, duration=w)
            await run_phase(
                run.target,
                streamed,
                concurrency=1,
                requests=max(3, opts.stream_requests // 10),
                duration=w,
                extra_headers=run.stream_headers,
            )

    cpu = {name: 0.0 for name in active}
    # Time the proxy core spent on anything but the proxy under test (other sessions on this shared
    # machine, the kernel, the hypervisor's steal), over the proxied targets' slices: the noise gauge.
    outside = {name: 0.0 for name in active}
    wall = {name: 0.0 for name in active}
    rounds = max(1, opts.rounds)
    phases = (
        ("c1", plain, 1, opts.requests, expect_plain, False),
        ("cN", plain, opts.concurrency, opts.requests, expect_plain, False),
        ("stream", streamed, 1, opts.stream_requests, expect_stream, True),
    )
    for key, body, conc, count, expect, is_stream in phases:
        for rnd in range(rounds):
            order = active[rnd % len(active) :] + active[: rnd % len(active)] if active else []
            for name in order:
                run, res = runs[name], results[name]
                pid = run.proc.pid if run.proc else None
                cpu0 = cpu_seconds(pid) if pid else 0.0
                busy0 = core_busy_seconds(opts.proxy_core)
                part = await run_phase(
                    run.target,
                    body,
                    concurrency=conc,
                    requests=max(1, math.ceil(count / rounds)),
                    duration=opts.duration / rounds,
                    extra_headers=run.stream_headers if is_stream else None,
                    expect=expect,
                )
                if pid:
                    used = cpu_seconds(pid) - cpu0
                    cpu[name] += used
                    if opts.proxy_core is not None:
                        outside[name] += max(0.0, core_busy_seconds(opts.proxy_core) - busy0 - used)
                        wall[name] += part.elapsed
                setattr(res, key, _merge(getattr(res, key), part))

    for name in active:
        res, run = results[name], runs[name]
        assert res.c1 is not None and res.cN is not None and res.stream is not None
        if run.proc:
            total = res.c1.ok + res.cN.ok + res.stream.ok
            if total:
                res.cpu_ms_per_req = cpu[name] * 1000 / total
            res.peak_rss_mb = peak_rss_mb(run.proc.pid)
            if wall[name] > 0:
                res.outside_load = outside[name] / wall[name]
        errors = res.c1.errors + res.cN.errors + res.stream.errors
        if errors:
            samples = (res.c1.error_samples + res.cN.error_samples + res.stream.error_samples)[:2]
            res.reason = f"{errors} errors, e.g. {samples}"


# --------------------------------------------------------------------------------------------------
# report


def _p(ph: PhaseResult | None, q: float, ttfb: bool = False) -> float:
    if ph is None:
        return math.nan
    return percentile(ph.ttfbs if ttfb else ph.latencies, q) * 1000


def _fmt(v: float, nd: int = 2, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:+.{nd}f}" if signed else f"{v:.{nd}f}"


def _baseline_for(name: str, results: dict[str, Result]) -> str | None:
    """The bare-mitmdump row a Visionality row is held to: same client hop (plain vs CONNECT+TLS)."""
    ok = {n for n, r in results.items() if r.status == "ok"}
    if name == "visionality-proxy" and "mitmdump-tls" in ok:
        return "mitmdump-tls"
    return "mitmdump" if "mitmdump" in ok else None


def goals(results: dict[str, Result]) -> list[dict[str, Any]]:
    rows = []
    direct = results.get("direct")
    for name in ("visionality-base", "visionality-proxy"):
        r = results.get(name)
        if r is None or r.status != "ok":
            continue
        base = _baseline_for(name, results)
        b = results[base] if base else None
        added = _p(r.c1, 50) - _p(b.c1, 50) if b else math.nan
        share = r.cN.rps / b.cN.rps if b and r.cN and b.cN and b.cN.rps else math.nan
        ttfb = _p(r.stream, 50, True) - _p(direct.stream, 50, True) if direct and direct.status == "ok" else math.nan

        def verdict(v: float, ok: bool) -> str:
            return "n/a" if math.isnan(v) else ("PASS" if ok else "FAIL")

        rows.append(
            {
                "target": name,
                "baseline": base,
                "added_over_mitmdump_c1_p50_ms": None if math.isnan(added) else round(added, 3),
                "added_verdict": verdict(added, added < GOAL_ADDED_MS),
                "rps_share_of_mitmdump": None if math.isnan(share) else round(share, 3),
                "rps_verdict": verdict(share, share >= GOAL_RPS_SHARE),
                "ttfb_added_over_direct_p50_ms": None if math.isnan(ttfb) else round(ttfb, 3),
                "ttfb_verdict": verdict(ttfb, ttfb < GOAL_TTFB_MS),
            }
        )
    return rows


def render(results: dict[str, Result], opts: Options) -> str:
    direct = results.get("direct")
    mitm = results.get("mitmdump")
    d_ok = direct is not None and direct.status == "ok"
    m_ok = mitm is not None and mitm.status == "ok"
    n = opts.concurrency
    head = [
        "target",
        "c1 p50",
        "c1 p99",
        f"c{n} p50",
        f"c{n} p99",
        f"rps c{n}",
        "cpu ms/req",
        "ttfb p50",
        "ttfb p99",
        "rss MB",
        "noise %",
        "+lat c1",
        "rps % mitm",
        "+ttfb",
        "goals",
    ]
    g = {row["target"]: row for row in goals(results)}
    rows: list[list[str]] = []
    notes: list[str] = []
    for name, r in results.items():
        if r.status != "ok":
            rows.append([name] + ["-"] * (len(head) - 2) + [""])
            notes.append(f"{name}: {'not available' if r.status == 'unavailable' else 'FAILED'}: {r.reason}")
            continue
        add_lat = _p(r.c1, 50) - _p(direct.c1, 50) if d_ok and direct else math.nan
        share = 100 * r.cN.rps / mitm.cN.rps if m_ok and mitm and mitm.cN and mitm.cN.rps and r.cN else math.nan
        add_ttfb = _p(r.stream, 50, True) - _p(direct.stream, 50, True) if d_ok and direct else math.nan
        verdicts = ""
        if name in g:
            gv = g[name]
            vs = [gv[k] for k in ("added_verdict", "rps_verdict", "ttfb_verdict")]
            verdicts = "FAIL" if "FAIL" in vs else ("PASS" if all(v == "PASS" for v in vs) else "n/a")
        rows.append(
            [
                name,
                _fmt(_p(r.c1, 50)),
                _fmt(_p(r.c1, 99)),
                _fmt(_p(r.cN, 50)),
                _fmt(_p(r.cN, 99)),
                _fmt(r.cN.rps if r.cN else math.nan, 0),
                _fmt(r.cpu_ms_per_req),
                _fmt(_p(r.stream, 50, True)),
                _fmt(_p(r.stream, 99, True)),
                _fmt(r.peak_rss_mb, 0),
                _fmt(100 * r.outside_load, 0),
                _fmt(add_lat, 2, True) if name != "direct" else "",
                _fmt(share, 0),
                _fmt(add_ttfb, 2, True) if name != "direct" else "",
                verdicts,
            ]
        )
        if r.reason:
            notes.append(f"{name}: {r.reason}")
        notes.extend(f"{name}: {n}" for n in r.notes)
    widths = [max(len(head[i]), *(len(row[i]) for row in rows)) for i in range(len(head))]
    out = []

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)).rstrip()

    out.append(line(head))
    out.append(line(["-" * w for w in widths]))
    out.extend(line(row) for row in rows)
    out.append("")
    out.append(
        f"latencies/ttfb in ms (client side); +lat c1 = c1 p50 minus direct's; rps % mitm = rps c{n} as % "
        "of bare mitmdump's; +ttfb = ttfb p50 minus direct's; cpu = proxy process tree user+sys over all "
        "measured requests; rss = peak (VmHWM) of the proxy process tree; noise % = share of the proxy's "
        "core busy with anything else while it was measured (this machine is shared: > 10 % means noisy)."
    )
    held = [
        name
        for name, r in results.items()
        if r.status == "ok" and r.stream and r.stream.latencies and _p(r.stream, 50, True) > 0.8 * _p(r.stream, 50)
    ]
    if held:
        out.append(
            "streams held back (first byte p50 > 80% of last byte p50, i.e. the proxy buffered the stream): "
            + ", ".join(held)
        )
    if g:
        out.append("")
        out.append(
            f"goals (issue 2): adds < {GOAL_ADDED_MS:.0f} ms over bare mitmdump at c=1 p50; "
            f">= {GOAL_RPS_SHARE * 100:.0f}% of its rps at c={n}; "
            f"adds < {GOAL_TTFB_MS:.0f} ms to the first streamed byte over direct"
        )

        def num(v: float | None, scale: float = 1.0) -> float:
            return math.nan if v is None else v * scale

        for row in g.values():
            out.append(
                f"  {row['target']:<18} vs {row['baseline'] or '-':<13} "
                f"+lat {_fmt(num(row['added_over_mitmdump_c1_p50_ms']), 2, True)} ms {row['added_verdict']:<4}  "
                f"rps {_fmt(num(row['rps_share_of_mitmdump'], 100), 0)}% {row['rps_verdict']:<4}  "
                f"+ttfb {_fmt(num(row['ttfb_added_over_direct_p50_ms']), 2, True)} ms {row['ttfb_verdict']}"
            )
    if notes:
        out.append("")
        out.extend(notes)
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# main


def _start_fake_provider(workdir: Path, core: int | None, python: str, timeout: float) -> tuple[Proc, int]:
    if not (ROOT / "tests" / "fakeprovider.py").exists():
        raise SystemExit(
            "bench_wire: tests/fakeprovider.py not found; the benchmark needs the test suite's fake provider"
        )
    p = Proc(
        "fakeprovider",
        [python, "-m", "tests.fakeprovider", "--host", LOOPBACK, "--port", "0"],
        workdir=workdir,
        core=core,
        cwd=ROOT,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        first = p.log_text().split("\n", 1)
        if len(first) > 1 or (first[0] and p.popen.poll() is not None):
            line = first[0].strip()
            if line.startswith("listening http://"):
                return p, int(line.rsplit(":", 1)[1])
            p.stop()
            raise SystemExit(f"bench_wire: fake provider did not start: {p.log_tail()}")
        time.sleep(0.02)
    p.stop()
    raise SystemExit("bench_wire: fake provider printed no 'listening' line in time")


def _pinning(args: argparse.Namespace) -> tuple[int | None, int | None, str]:
    if args.no_pin:
        return None, None, "not pinned (--no-pin)"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or not shutil.which("taskset"):
        taskset = "found" if shutil.which("taskset") else "missing"
        return None, None, f"not pinned ({len(cpus)} usable cores, taskset {taskset})"
    load, proxy = args.load_core, args.proxy_core
    if load not in cpus or proxy not in cpus:
        load, proxy = cpus[0], cpus[1]
    os.sched_setaffinity(0, {load})
    return load, proxy, f"proxy under test on core {proxy}; load generator + fake provider on core {load}"


def _versions(python: str) -> dict[str, str]:
    v: dict[str, str] = {"python": sys.version.split()[0]}
    with contextlib.suppress(Exception):
        import importlib.metadata as md

        v["mitmproxy"] = md.version("mitmproxy")
    with contextlib.suppress(Exception):
        v["visionality_commit"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    with contextlib.suppress(Exception):
        v["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=5).stdout.strip()
    with contextlib.suppress(Exception):
        pk = CACHE / "portkey" / "node_modules"
        v["portkey_gateway"] = json.loads((pk / "@portkey-ai/gateway/package.json").read_text())["version"]
        v["hono_node_server"] = json.loads((pk / "@hono/node-server/package.json").read_text())["version"]
    with contextlib.suppress(Exception):
        lp = next((CACHE / "litellm-venv" / "lib").glob("python*/site-packages/litellm-*.dist-info"))
        v["litellm"] = lp.name.split("-")[1].removesuffix(".dist")
    return v


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench_wire.py",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(f"""\
            targets: {", ".join(ALL_TARGETS)}
            Each phase stops at --requests or --duration, whichever comes first."""),
    )
    ap.add_argument("--targets", default=",".join(ALL_TARGETS), help="comma-separated targets (default: all)")
    ap.add_argument(
        "--requests",
        type=int,
        default=3000,
        help="max requests per measured non-stream phase (c=1, and c=N in total) (default 3000)",
    )
    ap.add_argument("--duration", type=float, default=6.0, help="max seconds per measured phase (default 6)")
    ap.add_argument(
        "--stream-requests", type=int, default=150, help="max streamed requests for the TTFB phase (default 150)"
    )
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per target (default 2)")
    ap.add_argument("--concurrency", type=int, default=HIGH_CONCURRENCY, help="the high concurrency (default 32)")
    ap.add_argument(
        "--rounds", type=int, default=3, help="split each phase into this many slices, targets taking turns (default 3)"
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before measuring, wait up to S seconds for both cores to be < 15%% busy (shared machines)",
    )
    ap.add_argument("--json", dest="json_out", help="write all results and metadata to this JSON file")
    ap.add_argument("--startup-timeout", type=float, default=45.0, help="seconds a target may take to start")
    ap.add_argument("--proxy-core", type=int, default=1)
    ap.add_argument("--load-core", type=int, default=0)
    ap.add_argument("--no-pin", action="store_true", help="don't pin anything to cores")
    ap.add_argument("--keep-logs", action="store_true", help="keep the work dir with every process's log")
    args = ap.parse_args(argv)
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in names if t not in BUILDERS]
    if unknown:
        ap.error(f"unknown target(s) {unknown}; choose from {', '.join(ALL_TARGETS)}")
    args.target_names = names
    if args.requests < 1 or args.duration <= 0 or args.concurrency < 1 or args.stream_requests < 1:
        ap.error("--requests, --stream-requests, --concurrency must be >= 1 and --duration > 0")
    return args


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so every child is stopped on the way out."""

    def raise_kbi(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = {s: signal.signal(s, raise_kbi) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = Options(
        requests=args.requests,
        duration=args.duration,
        stream_requests=args.stream_requests,
        warmup=args.warmup,
        concurrency=args.concurrency,
        rounds=args.rounds,
    )
    python = sys.executable
    load_core, proxy_core, pin_note = _pinning(args)
    opts.proxy_core = proxy_core
    workdir = Path(tempfile.mkdtemp(prefix="bench-wire-"))
    started = _dt.datetime.now(_dt.UTC)
    print(f"bench_wire {started:%Y-%m-%d %H:%M} UTC; {pin_note}", flush=True)
    print(
        f"phases: c=1 and c={opts.concurrency} non-stream, <= {opts.requests} requests or {opts.duration:g}s each; "
        f"stream TTFB c=1 <= {opts.stream_requests} ({STREAM_CHUNKS} chunks, {STREAM_CHUNK_DELAY_MS} ms apart); "
        f"warm-up {opts.warmup:g}s; targets take turns in {opts.rounds} rounds",
        flush=True,
    )
    results: dict[str, Result] = {}
    provider_died = ""
    fake: Proc | None = None
    env: Env | None = None
    try:
        with _terminate_as_exit():
            fake, fake_port = _start_fake_provider(workdir, load_core, python, 30)
            env = Env(
                workdir=workdir,
                fake_port=fake_port,
                proxy_core=proxy_core,
                python=python,
                startup_timeout=args.startup_timeout,
            )
            runs: dict[str, Running] = {}
            # Start everything first (each pinned to the proxy core, idle while the others are measured).
            for name in args.target_names:
                t0 = time.monotonic()
                results[name] = Result(name)
                try:
                    runs[name] = BUILDERS[name](env)
                    print(f"  {name}: started in {time.monotonic() - t0:.1f}s", flush=True)
                except Unavailable as e:
                    results[name] = Result(name, status="unavailable", reason=str(e))
                    print(f"  {name}: not available: {e}", flush=True)
            if args.wait_quiet > 0 and proxy_core is not None and load_core is not None:
                print(f"  {wait_quiet([load_core, proxy_core], args.wait_quiet)}", flush=True)
            # Every slice is bounded by --duration/--rounds; this is the backstop.
            budget = len(runs) * (3 * opts.duration + opts.warmup + 30) + 60
            t0 = time.monotonic()
            try:
                asyncio.run(asyncio.wait_for(measure_all(runs, results, opts, env.fake_port), budget))
            except TimeoutError:
                for name in runs:
                    if results[name].status == "ok" and results[name].stream is None:
                        results[name].status, results[name].reason = "failed", f"timed out after {budget:.0f}s"
            print(f"  measured {len(runs)} target(s) in {time.monotonic() - t0:.1f}s", flush=True)
    except KeyboardInterrupt:
        print("bench_wire: interrupted", file=sys.stderr)
        return 130
    finally:
        for p in env.procs if env else []:
            p.stop()
        if fake:
            rc = fake.popen.poll()
            if rc is not None:
                # Something outside this run ended it (e.g. another session's broad pkill): say so loudly.
                how = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
                provider_died = f"the fake provider died during the run ({how}): the results below are invalid"
            fake.stop()
        if args.keep_logs:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(render(results, opts))
    if provider_died:
        print(f"\nWARNING: {provider_died}")
    if args.json_out:
        doc = {
            "date": started.isoformat(timespec="seconds"),
            "pinning": pin_note,
            "options": vars(opts),
            "stream_shape": {"chunks": STREAM_CHUNKS, "delay_ms": STREAM_CHUNK_DELAY_MS},
            "versions": _versions(python),
            "machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname())},
            "results": [r.metrics() for r in results.values()],
            "goals": goals(results),
            "provider_died": provider_died,
        }
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {args.json_out}")
    return 0 if all(r.status != "failed" for r in results.values()) and not provider_died else 1


if __name__ == "__main__":
    sys.exit(main())
