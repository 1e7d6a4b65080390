"""A cheap HTTP/1.1 load generator for the wire benchmark: asyncio streams, raw bytes, keep-alive.

One connection per concurrent worker, requests pre-encoded once, responses parsed just enough to find
their end (Content-Length or chunked). A CPython client costs roughly 40-80 µs per request here, a
fraction of what any proxy under test spends, and it runs on the other core (bench_wire.py pins it), so
it does not dominate what is measured -- the "direct" row shows its ceiling.

Proxy mode is reached the way an SDK reaches it behind ``HTTPS_PROXY``: ``CONNECT host:443`` to the
proxy, then TLS inside the tunnel (ALPN http/1.1, trusting the deployment CA), then plain requests.

Only the standard library: it must run from the project's venv and from anywhere else.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Target", "PhaseResult", "run_phase", "request_once", "percentile"]

# A request that has not finished in this long is counted as an error and its connection dropped:
# nothing in this benchmark should take more than a fraction of a second.
REQUEST_TIMEOUT_S = 30.0
_MAX_HEADER = 64 * 1024


@dataclass(frozen=True)
class Target:
    """Where and how to send requests.

    ``host``/``port`` is the TCP peer (the proxy for proxy mode). With ``connect_to`` set, the client
    first sends ``CONNECT connect_to`` and then does TLS with ``tls_server_name`` inside the tunnel.
    """

    host: str
    port: int
    path: str
    headers: Mapping[str, str]
    host_header: str = ""
    connect_to: str | None = None
    tls_server_name: str | None = None
    ca_file: str | None = None

    def encode(self, body: bytes, extra_headers: Mapping[str, str] | None = None) -> bytes:
        host = self.host_header or f"{self.host}:{self.port}"
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {host}",
            "Content-Type: application/json",
            "Accept: */*",
            f"Content-Length: {len(body)}",
        ]
        for k, v in {**self.headers, **(extra_headers or {})}.items():
            lines.append(f"{k}: {v}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class PhaseResult:
    """What one phase measured. Latencies and TTFBs are in seconds, one per successful request."""

    concurrency: int
    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def note_error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


class _HTTPError(Exception):
    pass


class _Conn:
    """One keep-alive connection (plain, or CONNECT + TLS)."""

    def __init__(self, target: Target, ssl_ctx: ssl.SSLContext | None) -> None:
        self.t = target
        self.ssl_ctx = ssl_ctx
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_head = b""

    async def open(self) -> None:
        t = self.t
        reader, writer = await asyncio.open_connection(t.host, t.port, limit=_MAX_HEADER * 4)
        if t.connect_to:
            writer.write(f"CONNECT {t.connect_to} HTTP/1.1\r\nHost: {t.connect_to}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1] if b" " in head else b"?"
            if status != b"200":
                writer.close()
                raise _HTTPError(f"CONNECT answered {head.splitlines()[0].decode('latin-1', 'replace')}")
            await writer.start_tls(self.ssl_ctx, server_hostname=t.tls_server_name)  # type: ignore[arg-type]
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def roundtrip(self, raw: bytes) -> tuple[int, float, float, bytes]:
        """Send one request; return (status, ttfb_s, total_s, body-prefix). Timed from the write."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        r = self.reader
        t0 = time.perf_counter()
        self.writer.write(raw)
        head = await r.readuntil(b"\r\n\r\n")
        t_head = time.perf_counter()
        self.last_head = head
        first_line, _, rest = head.partition(b"\r\n")
        parts = first_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise _HTTPError(f"bad status line {first_line[:80]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        close = parts[0] == b"HTTP/1.0"
        for line in rest.split(b"\r\n"):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection":
                v = value.strip().lower()
                close = v == b"close" or (close and v != b"keep-alive")
        prefix = b""
        t_first: float | None = None
        if chunked:
            while True:
                size_line = await r.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    # trailers (normally none) end with an empty line
                    while (await r.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                data = await r.readexactly(size + 2)
                if t_first is None:
                    t_first = time.perf_counter()
                if len(prefix) < 512:
                    prefix += data[:512]
        elif length is not None:
            if length:
                data = await r.readexactly(length)
                prefix = data[:512]
        else:
            # no framing: body runs to connection close
            data = await r.read()
            prefix = data[:512]
            close = True
        t_end = time.perf_counter()
        if close:
            self.close()
        # A body that arrived with (or right after) its headers has its first byte at the header time.
        ttfb = (t_first if t_first is not None else t_head) - t0
        return status, ttfb, t_end - t0, prefix


def _ssl_context(target: Target) -> ssl.SSLContext | None:
    if not target.connect_to:
        return None
    ctx = ssl.create_default_context(cafile=target.ca_file)
    # What the OpenAI/Anthropic SDKs (httpx without h2) negotiate.
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def _worker(
    target: Target,
    raw: bytes,
    ssl_ctx: ssl.SSLContext | None,
    res: PhaseResult,
    budget: list[int],
    deadline: float,
    expect: bytes | None,
) -> None:
    conn = _Conn(target, ssl_ctx)
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            try:
                status, ttfb, total, prefix = await asyncio.wait_for(conn.roundtrip(raw), REQUEST_TIMEOUT_S)
            except (
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ValueError,
                _HTTPError,
                TimeoutError,
                ssl.SSLError,
            ) as e:
                res.note_error(f"{type(e).__name__}: {e}"[:200])
                conn.close()
                await asyncio.sleep(0.01)  # don't spin against a dead listener
                continue
            if status != 200 or (expect is not None and expect not in prefix):
                res.note_error(f"HTTP {status}: {prefix[:160]!r}")
                continue
            res.ok += 1
            res.latencies.append(total)
            res.ttfbs.append(ttfb)
    finally:
        conn.close()


async def run_phase(
    target: Target,
    body: bytes,
    *,
    concurrency: int,
    requests: int,
    duration: float,
    extra_headers: Mapping[str, str] | None = None,
    expect: bytes | None = None,
) -> PhaseResult:
    """Run ``concurrency`` workers until ``requests`` have been sent or ``duration`` seconds passed."""
    raw = target.encode(body, extra_headers)
    ssl_ctx = _ssl_context(target)
    res = PhaseResult(concurrency=concurrency)
    budget = [requests]
    t0 = time.perf_counter()
    deadline = t0 + duration
    await asyncio.gather(*(_worker(target, raw, ssl_ctx, res, budget, deadline, expect) for _ in range(concurrency)))
    res.elapsed = time.perf_counter() - t0
    return res


async def request_once(
    target: Target, body: bytes, extra_headers: Mapping[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, bytes, bytes]:
    """One request on a fresh connection: (status, body prefix, raw response head). Raises on transport errors."""
    conn = _Conn(target, _ssl_context(target))
    try:
        status, _, _, prefix = await asyncio.wait_for(conn.roundtrip(target.encode(body, extra_headers)), timeout)
        return status, prefix, conn.last_head
    finally:
        conn.close()


def chat_body(*, stream: bool, model: str = "gpt-4o-mini") -> bytes:
    """A small chat completion request, the same bytes for every target."""
    b: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 16,
    }
    if stream:
        b["stream"] = True
        b["stream_options"] = {"include_usage": True}
    return json.dumps(b, separators=(",", ":")).encode()
