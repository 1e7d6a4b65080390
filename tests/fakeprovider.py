"""A fast fake OpenAI + Anthropic upstream that speaks the real wire formats.

Test infrastructure and the benchmark's upstream: one asyncio loop, a minimal hand-rolled HTTP/1.1 server
with keep-alive (no framework, so one core serves thousands of requests per second).

Run it as a process::

    python -m tests.fakeprovider --host 127.0.0.1 --port 0 [--log requests.jsonl]

The first stdout line is exactly ``listening http://127.0.0.1:<port>``; it runs until SIGTERM/SIGINT.
Or in-process: ``fp = FakeProvider(); fp.start(); ... fp.url ... fp.requests ... fp.stop()``.

Wire formats, checked against the official SDKs installed here (they are the parsers that must accept them):
- OpenAI chat completions, non-stream and SSE ``chat.completion.chunk``; with ``stream_options.include_usage``
  every chunk carries ``"usage": null`` and one extra final chunk has ``"choices": []`` plus the usage, then
  ``data: [DONE]`` (openai-python ``types/chat/chat_completion_chunk.py``: "an additional chunk will be streamed
  before the data: [DONE] message ... the choices field will always be an empty array").
- OpenAI Responses API: response.created, response.in_progress, response.output_item.added,
  response.content_part.added, response.output_text.delta..., response.output_text.done, response.content_part.done,
  response.output_item.done, response.completed (usage with input_tokens_details.cached_tokens and
  output_tokens_details.reasoning_tokens); no ``[DONE]`` sentinel on this API.
- OpenAI embeddings, honouring ``encoding_format: base64`` (the SDK asks for base64 by default and decodes
  little-endian float32).
- Anthropic Messages: message_start (usage with input/cache tokens), content_block_start, ping,
  content_block_delta..., content_block_stop, message_delta (usage is CUMULATIVE — anthropic-sdk-python
  ``lib/streaming/_messages.py`` overwrites rather than adds), message_stop; ``event: error`` for mid-stream errors.
- Request ids: OpenAI ``x-request-id``, Anthropic ``request-id``.

Deterministic usage: input_tokens = ceil(UTF-8 bytes of the request's text fields / 4) (always <= the body's byte
count, so a byte-count reservation is an upper bound); output_tokens = min(max tokens requested,
``x-fake-output-tokens`` or max(16, ``x-fake-chunks``)); embeddings have no output tokens. Stream text is one
word per token, spread over ``x-fake-chunks`` content events (default: one per token).

Each request leaves one summary (``FakeProvider.requests``, ``GET /_fake/requests``, a JSON line with ``--log``):
ts, method, path, provider, endpoint, auth (the Authorization / x-api-key value received), auth_ok,
anthropic_version, model, stream, include_usage, max_tokens, status, usage (what it answered), usage_sent,
request_id, client_disconnected, died (x-fake-die-after), headers (x-fake-*/x-portkey-* values), header_names,
body_bytes. A summary is recorded before the last byte of its answer is sent.

Fault injection via request headers: x-fake-status, x-fake-chunks, x-fake-chunk-delay-ms,
x-fake-first-byte-delay-ms, x-fake-die-after, x-fake-gzip (with Accept-Encoding: gzip), x-fake-output-tokens,
x-fake-cached-tokens, x-fake-cache-write-tokens, x-fake-reasoning-tokens, x-fake-message-deltas (Anthropic:
emit N cumulative message_delta events).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import json
import math
import os
import secrets
import signal
import struct
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FakeProvider",
    "DEFAULT_OPENAI_KEY",
    "DEFAULT_ANTHROPIC_KEY",
    "input_tokens_for",
    "make_plan",
    "render_body",
    "main",
]

DEFAULT_OPENAI_KEY = "sk-fake-openai"
DEFAULT_ANTHROPIC_KEY = "sk-ant-fake-anthropic"
DEFAULT_OUTPUT_TOKENS = 16
# Records kept in memory (about 1-2 KB each); older ones are dropped so a long benchmark stays flat in memory.
# --log keeps them all on disk.
MAX_RECORDS = 20_000
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024

# The real APIs answer with the dated snapshot a floating alias resolved to; reproducing that exercises the
# price catalog's handling of dated names (OpenAI "model" in the response, Anthropic "model" in the message).
_RESOLVED_MODEL = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
}

# Text fields whose content counts toward input tokens (chat messages, Responses input/instructions,
# Anthropic system/messages, legacy completions prompt, tool schemas).
_TEXT_KEYS = ("messages", "input", "instructions", "system", "prompt", "tools")

_WORDS = ("lorem ", "ipsum ", "dolor ", "sit ", "amet ", "consectetur ", "adipiscing ", "elit ")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}

# Anthropic error types by status (https://docs.anthropic.com/en/api/errors).
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# OpenAI error (type, code) by status (https://platform.openai.com/docs/guides/error-codes).
_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class _BadRequest(Exception):
    pass


def _openai_request_id() -> str:
    return "req_" + secrets.token_hex(16)


def _anthropic_request_id() -> str:
    return "req_011C" + "".join(secrets.choice(_B58) for _ in range(20))


def _collect_text(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _collect_text(v, out)
    elif isinstance(value, list):
        for v in value:
            _collect_text(v, out)


def input_tokens_for(body: dict[str, Any]) -> int:
    """ceil(UTF-8 bytes of every string under the request's text fields / 4), at least 1."""
    parts: list[str] = []
    for key in _TEXT_KEYS:
        if key in body:
            _collect_text(body[key], parts)
    nbytes = sum(len(p.encode("utf-8", "surrogatepass")) for p in parts)
    return max(1, math.ceil(nbytes / 4))


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _split_tokens(n_tokens: int, n_chunks: int) -> list[str]:
    """n_tokens words spread over n_chunks text pieces (one word = one token)."""
    words = [_WORDS[i % len(_WORDS)] for i in range(n_tokens)]
    if n_chunks <= 0:
        return []
    base, extra = divmod(n_tokens, n_chunks)
    pieces: list[str] = []
    pos = 0
    for i in range(n_chunks):
        take = base + (1 if i < extra else 0)
        pieces.append("".join(words[pos : pos + take]))
        pos += take
    return pieces


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


@dataclass(slots=True)
class _Plan:
    """What one request asked for and what we answer: the usage is decided before any byte is sent."""

    provider: str
    endpoint: str
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    chunks: int
    chunk_delay: float
    die_after: int | None
    gzip: bool
    message_deltas: int
    request_id: str
    record: dict[str, Any] = field(default_factory=dict)


class _Conn:
    """One client connection: parse requests, answer them, keep the connection alive."""

    def __init__(self, server: FakeProvider, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        # The summary of the request being answered. It is recorded just BEFORE the last byte of the answer
        # goes out, so a test that has its response in hand always finds the record.
        self.pending: dict[str, Any] | None = None

    def flush_record(self) -> None:
        if self.pending is not None:
            rec, self.pending = self.pending, None
            self.server._record(rec)

    async def run(self) -> None:
        try:
            while True:
                req = await self._read_request()
                if req is None:
                    return
                await self.server._handle(self, req)
                if not req.keep_alive or self.writer.is_closing():
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        except _BadRequest as e:
            with contextlib.suppress(ConnectionError):
                await self.send(400, {"content-type": "text/plain"}, str(e).encode(), keep_alive=False)
        except Exception:  # a bug in the fake must show up, not hang the client
            traceback.print_exc(file=sys.stderr)
            if not self.writer.is_closing():
                with contextlib.suppress(Exception):
                    await self.send(500, {"content-type": "text/plain"}, b"fake provider bug", keep_alive=False)
        finally:
            with contextlib.suppress(Exception):
                self.writer.close()

    async def _read_request(self) -> _Request | None:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial.strip():
                raise _BadRequest("incomplete request head") from e
            return None
        except asyncio.LimitOverrunError as e:
            raise _BadRequest("request head too large") from e
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError as e:
            raise _BadRequest("bad request line") from e
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest("bad header line")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        body = b""
        if headers.get("expect", "").lower() == "100-continue":
            # curl sends this for bodies over 1 KiB and waits a second without it (RFC 9110 section 10.1.1).
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Skip trailers up to the blank line.
                    while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(parts)
        else:
            length = int(headers.get("content-length", "0") or "0")
            if length > MAX_BODY_BYTES:
                raise _BadRequest("body too large")
            if length:
                body = await self.reader.readexactly(length)
        conn_hdr = headers.get("connection", "").lower()
        keep_alive = ("close" not in conn_hdr) if version == "HTTP/1.1" else ("keep-alive" in conn_hdr)
        return _Request(method.upper(), target.split("?", 1)[0], version, headers, body, keep_alive)

    def client_gone(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()

    async def send(self, status: int, headers: dict[str, str], body: bytes, *, keep_alive: bool) -> None:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        headers = {**headers, "content-length": str(len(body))}
        if not keep_alive:
            headers["connection"] = "close"
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.flush_record()
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await self.writer.drain()

    def chunked_head(self, status: int, headers: dict[str, str], *, keep_alive: bool) -> bytes:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        headers = {**headers, "transfer-encoding": "chunked"}
        if not keep_alive:
            headers["connection"] = "close"
        head += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")

    async def write(self, data: bytes) -> None:
        if data:
            self.writer.write(data)
            await self.writer.drain()


def _frame(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (RFC 9112 section 7.1)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


class FakeProvider:
    """The fake upstream. ``start()`` runs it in a background thread with its own loop."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        openai_key: str = DEFAULT_OPENAI_KEY,
        anthropic_key: str = DEFAULT_ANTHROPIC_KEY,
        log_path: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.openai_key = openai_key
        self.anthropic_key = anthropic_key
        self.log_path = log_path
        self._records: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_RECORDS)
        self._log_file: Any = None
        self._log_lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._conns: set[asyncio.Task[None]] = set()

    # -- public API -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return list(self._records)

    def clear(self) -> None:
        self._records.clear()

    async def serve(self) -> None:
        """Bind and serve until ``shutdown()`` (used by the CLI and by ``start()``)."""
        if self.log_path:
            self._log_file = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in finally
        self._stopped = asyncio.Event()
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self.port, limit=MAX_HEADER_BYTES, backlog=1024
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        try:
            await self._stopped.wait()
        finally:
            self._server.close()
            # Server.close() leaves accepted keep-alive connections open (Python < 3.13): cancel them.
            for task in list(self._conns):
                task.cancel()
            if self._conns:
                await asyncio.gather(*self._conns, return_exceptions=True)
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def shutdown(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    def start(self) -> FakeProvider:
        ready = threading.Event()

        def _run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def _main() -> None:
                task = asyncio.ensure_future(self.serve())
                while self._server is None and not task.done():
                    await asyncio.sleep(0.001)
                ready.set()
                await task

            try:
                loop.run_until_complete(_main())
            finally:
                ready.set()
                loop.close()

        self._thread = threading.Thread(target=_run, name="fakeprovider", daemon=True)
        self._thread.start()
        ready.wait(10)
        if self._server is None:
            raise RuntimeError("fake provider failed to start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.shutdown)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- plumbing --------------------------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        if self.log_path:
            # One line per accepted TCP connection, before any byte is read: "no upstream connection was
            # opened" is then something a test can count, not only "no request arrived".
            with self._log_lock, open(self.log_path + ".connections", "a", encoding="utf-8") as f:
                f.write(f"{writer.get_extra_info('peername')}\n")
        try:
            await _Conn(self, reader, writer).run()
        except asyncio.CancelledError:
            # Shutdown cancels idle connections; end quietly (asyncio's stream callback on 3.12.1 would
            # otherwise log the cancellation as an error).
            writer.close()
        finally:
            self._conns.discard(task)

    def _record(self, rec: dict[str, Any]) -> None:
        self._records.append(rec)
        if self._log_file is not None:
            with self._log_lock:
                self._log_file.write(_dumps(rec) + "\n")
                self._log_file.flush()

    async def _handle(self, conn: _Conn, req: _Request) -> None:
        path = req.path.rstrip("/")
        ka = req.keep_alive
        if path == "/_fake/requests" and req.method == "GET":
            body = _dumps(self.requests).encode()
            await conn.send(200, {"content-type": "application/json"}, body, keep_alive=ka)
            return
        if path == "/_fake/clear" and req.method == "POST":
            self.clear()
            await conn.send(200, {"content-type": "application/json"}, b'{"cleared":true}', keep_alive=ka)
            return
        if path == "/_fake/health":
            await conn.send(200, {"content-type": "application/json"}, b'{"ok":true}', keep_alive=ka)
            return

        endpoint = _endpoint_for(path)
        if endpoint is None:
            provider = "anthropic" if "anthropic-version" in req.headers else "openai"
            await self._error(conn, req, provider, 404, f"Unknown request URL: {req.method} {req.path}", None)
            return
        if endpoint == "models":
            # Anthropic clients always send anthropic-version; OpenAI clients never do.
            provider = "anthropic" if "anthropic-version" in req.headers or "x-api-key" in req.headers else "openai"
        elif endpoint == "chat.completions" and req.headers.get("authorization") == f"Bearer {self.anthropic_key}":
            # Anthropic's OpenAI SDK compatibility layer: OpenAI's wire format, Anthropic's key as Bearer.
            provider = "anthropic"
        else:
            provider = "anthropic" if endpoint == "messages" else "openai"
        expected_method = "GET" if endpoint == "models" else "POST"
        auth_value, auth_ok = self._check_auth(provider, req.headers)
        rec: dict[str, Any] = {
            "ts": time.time(),
            "method": req.method,
            "path": req.path,
            "provider": provider,
            "endpoint": endpoint,
            "auth": auth_value,
            "auth_ok": auth_ok,
            "anthropic_version": req.headers.get("anthropic-version"),
            "model": None,
            "stream": False,
            "include_usage": False,
            "max_tokens": None,
            "status": None,
            "usage": None,
            "usage_sent": False,
            "request_id": None,
            "client_disconnected": False,
            "died": False,
            "headers": {k: v for k, v in req.headers.items() if k.startswith(("x-fake-", "x-portkey-"))},
            # Names only (values may be secrets): lets a test prove what the appliance stripped or added.
            "header_names": sorted(req.headers),
            "body_bytes": len(req.body),
        }
        conn.pending = rec
        try:
            if req.method != expected_method:
                await self._error(conn, req, provider, 405, f"Method {req.method} not allowed", rec)
                return
            if not auth_ok:
                if provider == "anthropic":
                    msg = "invalid x-api-key"
                else:
                    shown = auth_value[7:] if auth_value and auth_value.lower().startswith("bearer ") else ""
                    msg = (
                        f"Incorrect API key provided: {shown[:3]}***{shown[-4:]}. You can find your API key at "
                        "https://platform.openai.com/account/api-keys."
                        if shown
                        else "You didn't provide an API key. You need to provide your API key in an "
                        "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                    )
                await self._error(conn, req, provider, 401, msg, rec)
                return
            if endpoint == "models":
                await self._models(conn, req, provider, rec)
                return
            try:
                body = json.loads(req.body)
                if not isinstance(body, dict):
                    raise ValueError("body is not an object")
            except (ValueError, UnicodeDecodeError) as e:
                await self._error(conn, req, provider, 400, f"We could not parse the JSON body: {e}", rec)
                return
            plan = make_plan(provider, endpoint, body, req.headers)
            rec.update(
                model=plan.model,
                stream=plan.stream,
                include_usage=plan.include_usage,
                max_tokens=plan.max_tokens,
                request_id=plan.request_id,
            )
            plan.record = rec
            forced = _int_header(req.headers, "x-fake-status")
            if forced is not None and forced >= 400:
                await self._error(conn, req, provider, forced, f"fake error {forced} (x-fake-status)", rec)
                return
            delay = _int_header(req.headers, "x-fake-first-byte-delay-ms")
            if delay:
                await asyncio.sleep(delay / 1000)
            rec["usage"] = _usage_record(plan)
            if plan.stream:
                await self._stream(conn, req, plan)
            else:
                payload = _dumps(_nonstream_body(plan)).encode()
                rec["status"] = 200
                rec["usage_sent"] = True
                await self._send_json(conn, req, plan.provider, plan.request_id, 200, payload, gzip_ok=plan.gzip)
        finally:
            conn.flush_record()

    def _check_auth(self, provider: str, headers: dict[str, str]) -> tuple[str | None, bool]:
        if provider == "anthropic":
            # anthropic-sdk-python 2.x sends api_key as "Authorization: Bearer <key>" (anthropic/_client.py
            # _api_key_auth); older SDKs and curl examples send "x-api-key". The real API takes both.
            value = headers.get("x-api-key")
            if value is not None:
                return value, value == self.anthropic_key
            value = headers.get("authorization")
            return value, value == f"Bearer {self.anthropic_key}"
        value = headers.get("authorization")
        return value, value == f"Bearer {self.openai_key}"

    async def _send_json(
        self,
        conn: _Conn,
        req: _Request,
        provider: str,
        request_id: str,
        status: int,
        payload: bytes,
        *,
        gzip_ok: bool = False,
    ) -> None:
        headers = {"content-type": "application/json", _rid_header(provider): request_id}
        if gzip_ok:
            payload = _gzip_all(payload)
            headers["content-encoding"] = "gzip"
        await conn.send(status, headers, payload, keep_alive=req.keep_alive)

    async def _error(
        self, conn: _Conn, req: _Request, provider: str, status: int, message: str, rec: dict[str, Any] | None
    ) -> None:
        rid = _anthropic_request_id() if provider == "anthropic" else _openai_request_id()
        if rec is not None:
            rec["status"] = status
            rec["request_id"] = rid
        await self._send_json(
            conn, req, provider, rid, status, _dumps(_error_body(provider, status, message, rid)).encode()
        )

    async def _models(self, conn: _Conn, req: _Request, provider: str, rec: dict[str, Any]) -> None:
        rid = _anthropic_request_id() if provider == "anthropic" else _openai_request_id()
        rec.update(status=200, request_id=rid)
        if provider == "anthropic":
            ids = ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805"]
            data: dict[str, Any] = {
                "data": [
                    {"type": "model", "id": i, "display_name": i, "created_at": "2025-09-29T00:00:00Z"} for i in ids
                ],
                "has_more": False,
                "first_id": ids[0],
                "last_id": ids[-1],
            }
        else:
            ids = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small"]
            data = {
                "object": "list",
                "data": [{"id": i, "object": "model", "created": 1721172741, "owned_by": "system"} for i in ids],
            }
        await self._send_json(conn, req, provider, rid, 200, _dumps(data).encode())

    async def _stream(self, conn: _Conn, req: _Request, plan: _Plan) -> None:
        rec = plan.record
        headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            _rid_header(plan.provider): plan.request_id,
        }
        compressor = None
        if plan.gzip:
            headers["content-encoding"] = "gzip"
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
        # Keep-alive only if we will end the body properly.
        keep_alive = req.keep_alive and plan.die_after is None
        head = conn.chunked_head(200, headers, keep_alive=keep_alive)
        rec["status"] = 200
        # Without delays or faults the whole answer goes out in one write: one syscall instead of one per
        # event keeps the fake far cheaper than anything it is used to measure. Each event is still its own
        # HTTP chunk (and its own gzip sync-flush block).
        coalesce = not plan.chunk_delay and plan.die_after is None
        out = bytearray(head)
        sent = 0
        try:
            if not coalesce:
                await conn.write(head)
                out.clear()
            events = list(_events(plan))
            for i, (event, is_content, carries_usage) in enumerate(events):
                if plan.die_after is not None and sent >= plan.die_after:
                    # A clean FIN without the terminating zero-size chunk: the client sees a truncated body.
                    rec["died"] = True
                    conn.flush_record()
                    conn.writer.close()
                    return
                if i > 0 and plan.chunk_delay and is_content:
                    await asyncio.sleep(plan.chunk_delay)
                if not coalesce and conn.client_gone():
                    rec["client_disconnected"] = True
                    return
                data = event.encode("utf-8")
                if compressor is not None:
                    data = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
                if carries_usage:
                    rec["usage_sent"] = True
                if coalesce:
                    out += _frame(data)
                else:
                    if i == len(events) - 1:
                        conn.flush_record()
                    await conn.write(_frame(data))
                sent += 1
            if compressor is not None:
                out += _frame(compressor.flush(zlib.Z_FINISH))
            out += b"0\r\n\r\n"
            conn.flush_record()
            await conn.write(bytes(out))
        except (ConnectionError, RuntimeError):
            rec["client_disconnected"] = True
            raise ConnectionResetError("client went away") from None


def make_plan(provider: str, endpoint: str, body: dict[str, Any], headers: Mapping[str, str]) -> _Plan:
    """Decide everything about the answer (usage, chunking, faults) from the request alone."""
    model = str(body.get("model") or "unknown-model")
    stream = bool(body.get("stream")) and endpoint != "embeddings"
    so = body.get("stream_options")
    include_usage = bool(stream and isinstance(so, dict) and so.get("include_usage"))
    max_tokens: int | None = None
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        v = body.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            max_tokens = v
            break
    if endpoint == "embeddings":
        inp = body.get("input")
        if isinstance(inp, list) and inp and all(isinstance(x, int) for x in inp):
            in_tok = len(inp)
        elif isinstance(inp, list) and inp and all(isinstance(x, list) for x in inp):
            in_tok = sum(len(x) for x in inp)
        else:
            in_tok = input_tokens_for({"input": inp})
        out_tok = 0
    else:
        in_tok = input_tokens_for(body)
        want = _int_header(headers, "x-fake-output-tokens")
        asked_chunks = _int_header(headers, "x-fake-chunks") or 0
        # x-fake-chunks alone also raises the default output so every content event carries a word.
        out_tok = max(DEFAULT_OUTPUT_TOKENS, asked_chunks) if want is None else max(0, want)
        if max_tokens is not None:
            out_tok = min(out_tok, max(0, max_tokens))
    cached = min(in_tok, max(0, _int_header(headers, "x-fake-cached-tokens") or 0))
    cache_write = min(in_tok - cached, max(0, _int_header(headers, "x-fake-cache-write-tokens") or 0))
    reasoning = min(out_tok, max(0, _int_header(headers, "x-fake-reasoning-tokens") or 0))
    visible = out_tok - reasoning
    chunks_hdr = _int_header(headers, "x-fake-chunks")
    # x-fake-chunks is the exact number of content events; with fewer tokens than events the rest carry "".
    chunks = max(1, chunks_hdr) if chunks_hdr is not None else max(1, visible)
    accept = headers.get("accept-encoding", "").lower()
    gzip = headers.get("x-fake-gzip") == "1" and "gzip" in accept
    delay = _int_header(headers, "x-fake-chunk-delay-ms") or 0
    return _Plan(
        provider=provider,
        endpoint=endpoint,
        body=body,
        model=_RESOLVED_MODEL.get(model, model),
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        input_tokens=in_tok,
        output_tokens=out_tok,
        cached_tokens=cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        chunks=chunks,
        chunk_delay=delay / 1000,
        die_after=_int_header(headers, "x-fake-die-after"),
        gzip=gzip,
        message_deltas=max(1, _int_header(headers, "x-fake-message-deltas") or 1),
        request_id=_anthropic_request_id() if provider == "anthropic" else _openai_request_id(),
    )


def _endpoint_for(path: str) -> str | None:
    for suffix, name in (
        ("/chat/completions", "chat.completions"),
        ("/responses", "responses"),
        ("/embeddings", "embeddings"),
        ("/messages", "messages"),
        ("/completions", "completions"),
        ("/models", "models"),
    ):
        if path.endswith(suffix):
            return name
    return None


def _rid_header(provider: str) -> str:
    return "request-id" if provider == "anthropic" else "x-request-id"


def _gzip_all(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def _error_body(provider: str, status: int, message: str, request_id: str) -> dict[str, Any]:
    if provider == "anthropic":
        # https://docs.anthropic.com/en/api/errors: {"type":"error","error":{"type":..,"message":..},"request_id":..}
        etype = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": etype, "message": message}, "request_id": request_id}
    etype, code = _OPENAI_ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def _usage_record(plan: _Plan) -> dict[str, int]:
    return {
        "input_tokens": plan.input_tokens,
        "output_tokens": plan.output_tokens,
        "cached_tokens": plan.cached_tokens,
        "cache_write_tokens": plan.cache_write_tokens,
        "reasoning_tokens": plan.reasoning_tokens,
    }


def _openai_chat_usage(plan: _Plan) -> dict[str, Any]:
    return {
        "prompt_tokens": plan.input_tokens,
        "completion_tokens": plan.output_tokens,
        "total_tokens": plan.input_tokens + plan.output_tokens,
        "prompt_tokens_details": {"cached_tokens": plan.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": plan.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _responses_usage(plan: _Plan) -> dict[str, Any]:
    return {
        "input_tokens": plan.input_tokens,
        "input_tokens_details": {"cached_tokens": plan.cached_tokens},
        "output_tokens": plan.output_tokens,
        "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
        "total_tokens": plan.input_tokens + plan.output_tokens,
    }


def _anthropic_usage(plan: _Plan, output_tokens: int) -> dict[str, Any]:
    # Anthropic's input_tokens EXCLUDES cache reads and cache writes; they are reported beside it
    # (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching#tracking-cache-performance).
    return {
        "input_tokens": plan.input_tokens - plan.cached_tokens - plan.cache_write_tokens,
        "cache_creation_input_tokens": plan.cache_write_tokens,
        "cache_read_input_tokens": plan.cached_tokens,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _finish_reason(plan: _Plan) -> str:
    return "length" if plan.max_tokens is not None and plan.output_tokens >= plan.max_tokens else "stop"


def _text(plan: _Plan) -> str:
    return "".join(_split_tokens(plan.output_tokens - plan.reasoning_tokens, 1))


def _response_object(plan: _Plan, rid: str, msg_id: str, status: str, created: int, text: str | None) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if text is not None:
        output.append(
            {
                "id": msg_id,
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
            }
        )
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": plan.body.get("instructions"),
        "max_output_tokens": plan.max_tokens,
        "model": plan.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _responses_usage(plan) if status == "completed" else None,
        "user": None,
        "metadata": {},
    }


def _embedding_vector(index: int, dims: int) -> list[float]:
    return [((index + 1) * (j + 1) % 97) / 97.0 for j in range(dims)]


def _nonstream_body(plan: _Plan) -> dict[str, Any]:
    created = int(time.time())
    if plan.endpoint == "chat.completions":
        return {
            "id": "chatcmpl-" + secrets.token_urlsafe(21).replace("-", "x").replace("_", "y")[:29],
            "object": "chat.completion",
            "created": created,
            "model": plan.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": _text(plan), "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": _finish_reason(plan),
                }
            ],
            "usage": _openai_chat_usage(plan),
            "service_tier": "default",
            "system_fingerprint": "fp_fake0000",
        }
    if plan.endpoint == "completions":
        return {
            "id": "cmpl-" + secrets.token_hex(12),
            "object": "text_completion",
            "created": created,
            "model": plan.model,
            "choices": [{"text": _text(plan), "index": 0, "logprobs": None, "finish_reason": _finish_reason(plan)}],
            "usage": _openai_chat_usage(plan),
        }
    if plan.endpoint == "responses":
        return _response_object(
            plan, "resp_" + secrets.token_hex(24), "msg_" + secrets.token_hex(24), "completed", created, _text(plan)
        )
    if plan.endpoint == "embeddings":
        inp = plan.body.get("input")
        n = len(inp) if isinstance(inp, list) and inp and not isinstance(inp[0], int) else 1
        dims = plan.body.get("dimensions")
        dims = dims if isinstance(dims, int) and 0 < dims <= 4096 else 8
        b64 = plan.body.get("encoding_format") == "base64"
        data = []
        for i in range(n):
            vec = _embedding_vector(i, dims)
            emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {
            "object": "list",
            "data": data,
            "model": plan.model,
            "usage": {"prompt_tokens": plan.input_tokens, "total_tokens": plan.input_tokens},
        }
    # Anthropic messages.
    return {
        "id": "msg_01" + "".join(secrets.choice(_B58) for _ in range(22)),
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": [{"type": "text", "text": _text(plan)}],
        "stop_reason": "max_tokens" if _finish_reason(plan) == "length" else "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(plan, plan.output_tokens),
    }


def _sse(data: str, event: str | None = None) -> str:
    return (f"event: {event}\n" if event else "") + f"data: {data}\n\n"


def _events(plan: _Plan) -> Iterator[tuple[str, bool, bool]]:
    """(SSE event text, is a content event, carries the final usage)."""
    pieces = _split_tokens(plan.output_tokens - plan.reasoning_tokens, plan.chunks)
    created = int(time.time())
    if plan.endpoint in ("chat.completions", "completions"):
        cid = "chatcmpl-" + secrets.token_hex(14)
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": plan.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake0000",
        }
        if plan.include_usage:
            # With include_usage every chunk carries "usage": null until the last one.
            base["usage"] = None
        first = {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "", "refusal": None},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        }
        yield _sse(_dumps(first)), True, False
        for piece in pieces:
            c = {
                **base,
                "choices": [{"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}],
            }
            yield _sse(_dumps(c)), True, False
        last = {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": _finish_reason(plan)}]}
        yield _sse(_dumps(last)), False, False
        if plan.include_usage:
            yield _sse(_dumps({**base, "choices": [], "usage": _openai_chat_usage(plan)})), False, True
        yield _sse("[DONE]"), False, False
        return
    if plan.endpoint == "responses":
        rid = "resp_" + secrets.token_hex(24)
        mid = "msg_" + secrets.token_hex(24)
        seq = 0

        def ev(kind: str, payload: dict[str, Any]) -> str:
            nonlocal seq
            s = _sse(_dumps({"type": kind, "sequence_number": seq, **payload}), kind)
            seq += 1
            return s

        yield (
            ev("response.created", {"response": _response_object(plan, rid, mid, "in_progress", created, None)}),
            True,
            False,
        )
        yield (
            ev("response.in_progress", {"response": _response_object(plan, rid, mid, "in_progress", created, None)}),
            False,
            False,
        )
        item = {"id": mid, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
        yield ev("response.output_item.added", {"output_index": 0, "item": item}), False, False
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        yield (
            ev("response.content_part.added", {"item_id": mid, "output_index": 0, "content_index": 0, "part": part}),
            False,
            False,
        )
        for piece in pieces:
            yield (
                ev(
                    "response.output_text.delta",
                    {"item_id": mid, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []},
                ),
                True,
                False,
            )
        text = "".join(pieces)
        yield (
            ev(
                "response.output_text.done",
                {"item_id": mid, "output_index": 0, "content_index": 0, "text": text, "logprobs": []},
            ),
            False,
            False,
        )
        yield (
            ev(
                "response.content_part.done",
                {"item_id": mid, "output_index": 0, "content_index": 0, "part": {**part, "text": text}},
            ),
            False,
            False,
        )
        done_item = {**item, "status": "completed", "content": [{**part, "text": text}]}
        yield ev("response.output_item.done", {"output_index": 0, "item": done_item}), False, False
        yield (
            ev("response.completed", {"response": _response_object(plan, rid, mid, "completed", created, text)}),
            False,
            True,
        )
        return
    # Anthropic messages (https://docs.anthropic.com/en/docs/build-with-claude/streaming#event-types).
    msg_id = "msg_01" + "".join(secrets.choice(_B58) for _ in range(22))
    start = {
        "type": "message_start",
        "message": {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": plan.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _anthropic_usage(plan, 1 if plan.output_tokens else 0),
        },
    }
    yield _sse(_dumps(start), "message_start"), True, False
    yield (
        _sse(
            _dumps({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            "content_block_start",
        ),
        False,
        False,
    )
    yield _sse(_dumps({"type": "ping"}), "ping"), False, False
    n_deltas = plan.message_deltas
    for piece in pieces:
        d = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        yield _sse(_dumps(d), "content_block_delta"), True, False
    yield _sse(_dumps({"type": "content_block_stop", "index": 0}), "content_block_stop"), False, False
    stop_reason = "max_tokens" if _finish_reason(plan) == "length" else "end_turn"
    for k in range(1, n_deltas + 1):
        # Cumulative: each message_delta repeats the running total, the last one is final.
        out_so_far = plan.output_tokens * k // n_deltas
        usage = _anthropic_usage(plan, out_so_far)
        usage.pop("service_tier")
        md = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason if k == n_deltas else None, "stop_sequence": None},
            "usage": usage,
        }
        yield _sse(_dumps(md), "message_delta"), False, k == n_deltas
    yield _sse(_dumps({"type": "message_stop"}), "message_stop"), False, False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fakeprovider", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", default=None, help="append each request summary as a JSON line to this file")
    ap.add_argument("--openai-key", default=os.environ.get("FAKE_OPENAI_KEY", DEFAULT_OPENAI_KEY))
    ap.add_argument("--anthropic-key", default=os.environ.get("FAKE_ANTHROPIC_KEY", DEFAULT_ANTHROPIC_KEY))
    args = ap.parse_args(argv)
    fp = FakeProvider(
        args.host, args.port, openai_key=args.openai_key, anthropic_key=args.anthropic_key, log_path=args.log
    )

    async def _run() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(fp.serve())
        while fp._server is None and not task.done():
            await asyncio.sleep(0.001)
        if task.done():
            await task
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, fp.shutdown)
        sys.stdout.write(f"listening http://{fp.host}:{fp.port}\n")
        sys.stdout.flush()
        await task

    asyncio.run(_run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def render_body(
    endpoint: str, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> tuple[bytes, dict[str, int]]:
    """The exact body the fake would answer for a successful request (SSE bytes when ``body["stream"]``), and the
    usage it reports; for tests that need a provider's wire bytes without running a server. ``x-fake-*``
    headers apply as they would on the wire (except delays and faults)."""
    provider = "anthropic" if endpoint == "messages" else "openai"
    plan = make_plan(provider, endpoint, body, {k.lower(): v for k, v in (headers or {}).items()})
    if plan.stream:
        data = "".join(ev for ev, _, _ in _events(plan)).encode()
    else:
        data = _dumps(_nonstream_body(plan)).encode()
    if plan.gzip:
        data = _gzip_all(data)
    return data, _usage_record(plan)
