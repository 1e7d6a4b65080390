"""One call's trip through the appliance, independent of mitmproxy.

The addons in ``addons/`` translate flows into these steps, in this order (DESIGN.md "Request path"):

    begin (route) -> identify -> read body -> screen (PII) -> reserve (budget) -> intent (ledger)
    -> forward (swap the envelope for the provider key) -> meter -> settle (commit row)

Every step either passes or raises one of our errors; ``refuse`` turns any error into the HTTP answer
*and* the commit row, so the ledger, the counters and the client always agree. A call is forwarded only
when every gate has passed (``Call.gates``); the forward step re-checks them, so a skipped or failed
hook can never let a call out unchecked (mitmproxy swallows hook exceptions and forwards — fail closed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .budget import Cap, Counters, Reservation
from .commit import CommitRecord, CommitSink, Decision, new_commit_id
from .config import Config
from .errors import (
    LedgerUnavailable,
    PiiBlocked,
    PiiScanError,
    PricingError,
    RequestRejected,
    VisionalityError,
)
from .estimate import (
    check_billing_features,
    input_token_bound,
    media_part_token_bound,
    output_token_bound,
    worst_case_cost,
)
from .faults import inject
from .identity import Caller, Identity
from .metering import StreamMeter, Usage, body_usage, inject_stream_usage, stream_meter
from .pii import PiiScanner
from .pricing import PriceCatalog
from .refusal import Refusal, internal_error, refusal_for
from .routing import Route

__all__ = ["Call", "CallPath", "Forward", "GATES"]

log = logging.getLogger("visionality.callpath")

# The gates a call must pass before it may leave the network, in order.
GATES = ("route", "identify", "body", "pii", "budget", "intent")

# Request headers never forwarded upstream: the envelope, Portkey's own control headers, hop-by-hop
# proxy auth. The provider key is added back by ``forward``.
_STRIP_PREFIXES = ("x-portkey-",)
_STRIP_HEADERS = frozenset({"authorization", "x-api-key", "proxy-authorization"})


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


@dataclass(slots=True)
class Call:
    """Per-call state, kept in ``flow.metadata`` from the first hook to the commit row."""

    record: CommitRecord
    started: float  # perf_counter at arrival
    route: Route | None = None
    caller: Caller | None = None
    body: Any = None
    body_size: int = 0
    input_bound: int = 0  # upper bound on input tokens, from the bytes actually sent upstream
    new_body: bytes | None = None  # set when the appliance rewrote the body (usage injection)
    reservation: Reservation | None = None
    remaining: Decimal | None = None
    meter: StreamMeter | None = None
    injected_usage: bool = False
    gates: set[str] = field(default_factory=set)
    finished: bool = False

    @property
    def refused(self) -> bool:
        return self.finished and self.record.decision not in (Decision.ALLOWED,)


@dataclass(frozen=True, slots=True)
class Forward:
    """How to rewrite the request for the provider: where to, and which headers to set/drop."""

    scheme: str
    host: str
    port: int
    path: str
    set_headers: dict[str, str]
    drop_headers: tuple[str, ...]


class CallPath:
    def __init__(
        self,
        config: Config,
        identity: Identity,
        pii: PiiScanner,
        counters: Counters,
        prices: PriceCatalog,
        ledger: CommitSink,
        provider_keys: Mapping[str, str | None],
    ) -> None:
        self.config = config
        self.identity = identity
        self.pii = pii
        self.counters = counters
        self.prices = prices
        self.ledger = ledger
        self._provider_keys = dict(provider_keys)
        self._settling: set[asyncio.Task[None]] = set()

    # -- begin / identify -------------------------------------------------------------------------------

    def begin(self, trace_id: str | None) -> Call:
        record = CommitRecord(
            commit_id=new_commit_id(),
            ts=CommitRecord.now(),
            appliance_id=self.config.appliance_id,
            decision=Decision.ALLOWED,
            http_status=0,
            trace_id=trace_id,
        )
        return Call(record=record, started=time.perf_counter())

    def routed(self, call: Call, route: Route, content_length: int | None) -> None:
        inject("route")
        call.route = route
        call.record.provider = route.provider
        call.record.endpoint = route.endpoint
        if content_length is not None and content_length > self.config.max_body_bytes:
            raise RequestRejected(
                413,
                "request_too_large",
                f"request body is {content_length} bytes; this appliance accepts at most "
                f"{self.config.max_body_bytes} (limits.max_body_bytes)",
            )
        if not self._provider_keys.get(route.provider):
            env = self.config.providers[route.provider].api_key_env
            raise RequestRejected(
                503,
                "provider_key_missing",
                f"the appliance holds no {route.provider} key (set {env})",
                err_type="api_error",
            )
        call.gates.add("route")

    def identify(self, call: Call, headers: Mapping[str, str]) -> None:
        inject("identify")
        caller = self.identity.verify(headers)
        call.caller = caller
        c = caller.claims
        r = call.record
        r.key_id, r.envelope_digest, r.sub, r.email = c.jti, caller.envelope_digest, c.sub, c.email
        r.project, r.task, r.memo, r.url = c.project, c.task, c.memo, c.url
        project = self.config.projects.get(c.project or "")
        r.cost_center = c.cost_center or (project.cost_center if project else None)
        r.gl_code = c.gl_code or (project.gl_code if project else None)
        # Attribution is filled before the revocation check, so a revoked key's refusal row names who tried:
        # the evidence of any use after termination (SOC 2 CC6.3).
        self.identity.check(caller)
        call.gates.add("identify")

    # -- body and PII -------------------------------------------------------------------------------------

    def read_body(self, call: Call, method: str, content_type: str | None, raw: bytes | None) -> None:
        call.body_size = len(raw or b"")
        if call.body_size > self.config.max_body_bytes:
            raise RequestRejected(
                413,
                "request_too_large",
                f"request body is {call.body_size} bytes; at most {self.config.max_body_bytes} accepted",
            )
        if method == "GET" or not raw:
            if method != "GET" and call.route is not None and call.route.metered:
                raise RequestRejected(400, "invalid_body", "request body is empty; expected a JSON object")
            call.body = None
            call.gates.add("body")
            return
        ctype = (content_type or "").split(";")[0].strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            raise RequestRejected(
                415, "unsupported_media_type", f"expected Content-Type application/json, got {ctype or 'none'!r}"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RequestRejected(400, "invalid_body", f"request body is not valid UTF-8 (byte {e.start})") from e
        try:
            # Numbers stay as Decimal-free Python ints/floats here: the body is the provider's business;
            # money never comes from it. NaN/Infinity are not JSON (RFC 8259 section 6): refused, not passed on.
            body = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as e:
            raise RequestRejected(
                400, "invalid_json", f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
            ) from e
        except RecursionError as e:
            raise RequestRejected(400, "invalid_json", "request body is nested too deeply to be a request") from e
        if not isinstance(body, dict):
            raise RequestRejected(400, "invalid_body", f"request body must be a JSON object, got {type(body).__name__}")
        model = body.get("model")
        if call.route is not None and call.route.metered:
            if not isinstance(model, str) or not model:
                raise RequestRejected(400, "missing_model", "request body needs a 'model' string")
        call.record.model = model if isinstance(model, str) else None
        call.record.stream = body.get("stream") is True
        call.body = body
        call.new_body = self._prepare_stream(call)
        if call.route is not None and call.route.metered:
            sent = call.new_body if call.new_body is not None else raw
            media = media_part_token_bound(call.route.provider, call.record.model or "")
            call.input_bound = input_token_bound(sent, media_part_tokens=media)
        call.gates.add("body")

    def screen(self, call: Call) -> None:
        """PII pre-flight on everything that would go upstream. Any failure blocks (fail closed)."""
        assert call.route is not None
        inject("pii")
        if call.body is not None:
            try:
                found = self.pii.scan_request(call.route.provider, call.route.endpoint, call.body, call.record.project)
            except PiiScanError:
                raise
            except Exception as e:  # a detector bug must block, never pass (STYLE 2)
                raise PiiScanError(f"detector failure: {type(e).__name__}") from e
            if found:
                call.record.pii_entities = dict(found)
                raise PiiBlocked(dict(found))
        call.gates.add("pii")

    # -- budget -------------------------------------------------------------------------------------------

    def caps_for(self, call: Call) -> list[Cap]:
        assert call.caller is not None
        claims = call.caller.claims
        caps: list[Cap] = []
        if claims.budget is not None:
            caps.append(Cap("key", claims.jti, claims.budget.amount, claims.budget.period))
        project = self.config.projects.get(claims.project or "")
        if project is not None and project.cap is not None:
            caps.append(Cap("project", project.name, project.cap, project.period))
        return caps

    async def reserve(self, call: Call) -> None:
        assert call.route is not None and call.caller is not None
        inject("budget")
        if not call.route.metered:
            call.gates.add("budget")
            return
        model = call.record.model or ""
        # Features billed at rates the catalog lacks, or after the reply (background runs): refused, not guessed.
        check_billing_features(call.route.provider, call.route.endpoint, call.body)
        # The rates a request of this size can be billed at: long-context tiers (e.g. Sonnet above 200K input
        # doubles) resolved at the input bound, and every input token at the dearest rate (cache writes cost
        # more than plain input), so the reservation stays a true worst case.
        price = self.prices.price(call.route.provider, model).for_input(call.input_bound)
        out_bound = output_token_bound(
            call.route.provider,
            call.route.endpoint,
            call.body,
            model_limit=price.max_output_tokens or None,  # 0 in the catalog = no output (embeddings)
            default_limit=self.config.default_output_limit,
            model=model,
        )
        worst = worst_case_cost(
            call.input_bound,
            out_bound,
            input_per_token=price.worst_input_per_token,
            output_per_token=price.output_per_token,
        )
        caps = self.caps_for(call)
        call.reservation = await self.counters.reserve(call.record.commit_id, caps, worst, call.record.ts)
        call.record.reserved_usd = call.reservation.amount  # what is held: worst case rounded up to nano-USD
        call.remaining = call.reservation.remaining
        call.gates.add("budget")

    async def release(self, call: Call, actual: Decimal) -> None:
        """Settle the reservation (idempotent in the counters) — on every path that ends a call."""
        reservation, call.reservation = call.reservation, None
        if reservation is not None:
            await self.counters.settle(reservation, actual)

    # -- intent and forward -------------------------------------------------------------------------------

    async def intent(self, call: Call) -> None:
        """Durable intent before the call leaves: after kill -9 it is settled or recovered, never lost."""
        inject("intent")
        # Unbilled endpoints too (GET /v1/models, count_tokens carries the prompt): issue 3 asks that
        # *every* call that reached upstream be in the ledger after a crash, not only the priced ones.
        await self.ledger.append_intent(call.record)
        call.gates.add("intent")

    def forward(self, call: Call, request_headers: Mapping[str, str]) -> Forward:
        """The upstream rewrite. Re-checks every gate: nothing leaves that has not passed them all."""
        inject("forward")
        missing = [g for g in GATES if g not in call.gates]
        if missing or call.finished or call.route is None:
            raise RuntimeError(f"call reached forward without passing gates {missing}")
        route = call.route
        provider = self.config.providers[route.provider]
        key = self._provider_keys.get(route.provider)
        if not key:
            raise RuntimeError("provider key vanished")
        drop = tuple(h for h in request_headers if h in _STRIP_HEADERS or any(h.startswith(p) for p in _STRIP_PREFIXES))
        set_headers: dict[str, str] = {}
        if route.provider == "anthropic" and route.endpoint != "chat.completions":
            set_headers["x-api-key"] = key  # the OpenAI-compatible chat endpoint takes the key as Bearer
        else:
            set_headers["authorization"] = f"Bearer {key}"
        host_header = provider.host if provider.port in (80, 443) else f"{provider.host}:{provider.port}"
        set_headers["host"] = host_header
        if call.injected_usage:
            # We must be able to remove the usage chunk we asked for, so the stream must arrive unencoded.
            set_headers["accept-encoding"] = "identity"
        return Forward(
            scheme=provider.scheme,
            host=provider.host,
            port=provider.port,
            path=provider.path_prefix + route.upstream_path,
            set_headers=set_headers,
            drop_headers=drop,
        )

    def _prepare_stream(self, call: Call) -> bytes | None:
        """Ask OpenAI chat streams for usage when the client did not; returns the new body if changed."""
        if (
            call.route is not None
            and call.route.endpoint == "chat.completions"  # OpenAI's, and Anthropic's OpenAI-compatible one
            and call.record.stream
            and isinstance(call.body, dict)
            and inject_stream_usage(call.body)
        ):
            call.injected_usage = True
            return json.dumps(call.body, separators=(",", ":")).encode()
        return None

    def start_stream(self, call: Call, content_encoding: str | None) -> StreamMeter:
        inject("meter")
        assert call.route is not None
        meter = stream_meter(
            call.route.provider,
            call.route.endpoint,
            content_encoding=content_encoding,
            strip_injected_usage=call.injected_usage,
        )
        call.meter = meter
        return meter

    # -- settle -------------------------------------------------------------------------------------------

    async def settle(
        self,
        call: Call,
        *,
        status: int,
        body: bytes | None,
        content_encoding: str | None,
        upstream_request_id: str | None,
        aborted: bool,
        reached: bool = True,
    ) -> None:
        """Finish a forwarded call: usage -> cost, release the reservation, append the commit row."""
        if call.finished:
            return
        call.finished = True
        r = call.record
        r.http_status = status
        r.upstream_request_id = upstream_request_id
        r.latency_ms = round((time.perf_counter() - call.started) * 1000, 3)
        usage = Usage()
        try:
            if call.meter is not None:
                usage = call.meter.finish()
                if call.meter.first_byte_at is not None:
                    r.ttft_ms = round((call.meter.first_byte_at - call.started) * 1000, 3)
            elif body is not None and call.route is not None and call.route.metered:
                usage = body_usage(call.route.provider, call.route.endpoint, body, content_encoding)
        except Exception:  # metering must never lose the row
            log.exception("usage parse failed for commit %s", r.commit_id)
        cost = Decimal(0)
        if call.route is not None and call.route.metered:
            # Every billed call reads at least one input token: a usage object without any is not a report.
            reported = usage.complete and usage.input_tokens > 0
            unreported = False
            if reported:
                pass  # priced below from the provider's own figures
            elif call.meter is not None and aborted:
                # A stream cut off mid-way (client gone or connection lost): the provider stops generating
                # when the stream breaks. Input is bounded by what was sent; output is at least one token
                # for every content event that reached the client (the provider's count never came).
                usage.input_tokens = max(usage.input_tokens, call.input_bound)
                usage.output_tokens = max(usage.output_tokens, call.meter.content_events)
            elif not reached:
                # The connection to the provider never came up (refused, DNS, TLS): nothing was sent, so
                # nothing was billed. An outage must not burn every caller's budget at its worst case.
                pass
            elif status >= 400:
                # The provider answered an error: not billed. If the answer itself was cut off, charge the
                # input bound as before (the error may have come after a partial run).
                if aborted:
                    usage.input_tokens = max(usage.input_tokens, call.input_bound)
            else:
                # Ended without the provider's usage: a 2xx with no usage (a background run is billed later),
                # a non-stream call whose client left (the provider finishes and bills the whole answer), a
                # connection lost before any answer (it may still be running). Charge the worst case, the
                # reservation, never 0 (fail closed), and say so in the row.
                unreported = True
            if unreported:
                cost = r.reserved_usd
                r.error_code = r.error_code or "usage_unreported"
            elif usage.input_tokens or usage.output_tokens:
                try:
                    cost = self.prices.cost(call.route.provider, r.model or usage.model or "", usage)
                except PricingError:
                    cost = r.reserved_usd  # priced at reservation; if that vanished, charge the worst case
        r.input_tokens, r.output_tokens = usage.input_tokens, usage.output_tokens
        r.cached_tokens, r.reasoning_tokens = usage.cached_tokens, usage.reasoning_tokens
        r.cost_usd = cost
        if not reached:
            r.decision = Decision.UPSTREAM_ERROR
            r.error_code = r.error_code or "upstream_unreachable"
        elif aborted:
            r.decision = Decision.CLIENT_ABORT if status == 0 or status < 400 else Decision.UPSTREAM_ERROR
        elif status >= 400 or status == 0:
            r.decision = Decision.UPSTREAM_ERROR
        else:
            r.decision = Decision.ALLOWED
        try:
            await self.release(call, cost)
        finally:
            self._append(r)

    def settle_after_answer(self, call: Call, settling: Coroutine[Any, Any, None]) -> None:
        """Run a forwarded call's settlement as soon as the client's answer is on its way, not before it.

        The usage, cost, counter release and commit row (~0.1 ms) need nothing from the client, and its
        answer needs nothing from them (the commit id and the remaining budget are already in its headers),
        so the client does not wait for them. The row is still appended within one event-loop turn, and the
        durable intent covers the call until then: a crash in between recovers it as ``unsettled``.
        ``drain`` (at shutdown) waits for every settlement still running.
        """
        call.gates.add("settling")  # from here on the call is being settled: an error hook must not settle it
        task = asyncio.get_running_loop().create_task(settling, name=f"settle-{call.record.commit_id}")
        self._settling.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settling.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("settlement task failed", exc_info=exc)

    async def drain(self) -> None:
        """Wait for every settlement started by ``settle_after_answer``."""
        while self._settling:
            await asyncio.gather(*list(self._settling), return_exceptions=True)

    async def refuse(self, call: Call, exc: BaseException) -> Refusal:
        """Turn any error into the client's answer and a commit row; release anything reserved."""
        refusal = refusal_for(exc) if isinstance(exc, VisionalityError) else internal_error(exc)
        if not isinstance(exc, VisionalityError):
            log.error("refusing call %s: internal error", call.record.commit_id, exc_info=exc)
        if call.finished:
            return refusal
        call.finished = True
        r = call.record
        r.decision = refusal.decision
        r.http_status = refusal.status
        r.error_code = refusal.code
        r.latency_ms = round((time.perf_counter() - call.started) * 1000, 3)
        if isinstance(exc, PiiBlocked):
            r.pii_entities = dict(exc.entities)
        charge = Decimal(0)
        if "forwarded" in call.gates:
            # It failed after it reached the provider (e.g. a metering bug on the response): the provider
            # bills it, and we do not know how much, so it is charged its reserved worst case, never 0.
            r.decision = Decision.UNSETTLED
            charge = r.cost_usd = r.reserved_usd
        try:
            await self.release(call, charge)
        except Exception:
            log.exception("releasing reservation of refused call %s failed", r.commit_id)
        try:
            self._append(r)
        except LedgerUnavailable:
            pass  # the answer is already a refusal; nothing was forwarded
        return refusal

    def _append(self, record: CommitRecord) -> None:
        self.ledger.append(record)
