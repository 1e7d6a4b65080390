"""The call path inside the appliance, without the network: what our checks cost per call.

Measures, in one process on a real deployment home (real envelope, revocation set, PII scanner, price catalog,
counters and ledger):
  - the 402 path: route -> identify -> body -> PII -> reserve (refused) -> refusal row      (issue 4 goal: p50 < 1 ms)
  - the admission of an allowed call up to the durable intent (the fsync is group-committed, shown apart)
  - settle: usage -> cost -> release -> commit row
Run: .venv/bin/python bench/bench_callpath.py [--calls 5000] [--backend memory|redis://127.0.0.1:6379/0]
Compare ratios, not absolute times: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402
from visionality.allocators import tune_allocators  # noqa: E402
from visionality.assembly import assemble  # noqa: E402
from visionality.cli import cli  # noqa: E402
from visionality.config import Config  # noqa: E402
from visionality.errors import VisionalityError  # noqa: E402
from visionality.home import Home  # noqa: E402
from visionality.routing import route_base_url  # noqa: E402

PROMPT = (
    "You are reviewing a pull request. Summarise the change, list risks, and suggest tests. The diff touches the "
    "billing reconciliation job, the nightly export and two SQL migrations. " * 8
)
BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 256}
).encode()
RESPONSE = b'{"usage": {"prompt_tokens": 300, "completion_tokens": 120, "total_tokens": 420}, "choices": []}'


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def line(name: str, xs: list[float]) -> str:
    us = [x * 1e6 for x in xs]
    return f"{name:<44} p50 {pct(us, 0.5):8.1f} µs   p99 {pct(us, 0.99):8.1f} µs   mean {statistics.fmean(us):8.1f} µs"


async def main(calls: int, backend: str) -> None:
    tune_allocators()
    sys.setswitchinterval(0.0005)
    tmp = Path(tempfile.mkdtemp(prefix="vbench-"))
    home = tmp / "home"
    r = CliRunner().invoke(cli, ["--home", str(home), "init"])
    assert r.exit_code == 0, r.output
    cfg = home / "visionality.toml"
    cfg.write_text(cfg.read_text().replace('backend = "memory"', f'backend = "{backend}"'))

    def issue(*args: str) -> str:
        out = CliRunner().invoke(cli, ["--home", str(home), "key", "issue", "--sub", "bench", "--email", "b@x", *args])
        assert out.exit_code == 0, out.output
        return out.output.strip()

    rich, broke = issue("--budget", "1000000", "--task", "BENCH-1"), issue("--budget", "0", "--task", "BENCH-2")
    os.environ.setdefault("VISIONALITY_OPENAI_API_KEY", "sk-bench")
    app = await assemble(Config.load(Home(home)))
    p = app.callpath
    route = route_base_url("POST", "/v1/chat/completions", None)
    refused: list[float] = []
    admit: list[float] = []
    admit_no_intent: list[float] = []
    settle: list[float] = []
    try:
        for i in range(calls + 200):
            # 402 path
            t0 = time.perf_counter()
            call = p.begin(None)
            try:
                p.routed(call, route, len(BODY))
                p.identify(call, {"authorization": f"Bearer {broke}"})
                p.read_body(call, "POST", "application/json", BODY)
                p.screen(call)
                await p.reserve(call)
                raise AssertionError("a zero cap must refuse")
            except VisionalityError as e:
                await p.refuse(call, e)
            t1 = time.perf_counter()
            # allowed call, admission up to the durable intent
            call = p.begin(None)
            p.routed(call, route, len(BODY))
            p.identify(call, {"authorization": f"Bearer {rich}"})
            p.read_body(call, "POST", "application/json", BODY)
            p.screen(call)
            await p.reserve(call)
            t2 = time.perf_counter()
            await p.intent(call)
            p.forward(call, {"authorization": "x"})
            t3 = time.perf_counter()
            await p.settle(
                call, status=200, body=RESPONSE, content_encoding=None, upstream_request_id="r", aborted=False
            )
            t4 = time.perf_counter()
            if i >= 200:  # warm-up done
                refused.append(t1 - t0)
                admit_no_intent.append(t2 - t1)
                admit.append(t3 - t1)
                settle.append(t4 - t3)
    finally:
        await app.close()
    print(f"call path inside the appliance, {calls} calls each, counters: {backend}, body {len(BODY)} bytes")
    print(line("402 path (refused, row written)", refused))
    print(line("allowed: checks before the intent", admit_no_intent))
    print(line("allowed: checks + durable intent (fsync)", admit))
    print(line("settle (usage, cost, release, row)", settle))
    goal = pct(refused, 0.5) * 1e3
    print(f"402 path p50 = {goal:.3f} ms  (goal < 1 ms in-process: {'PASS' if goal < 1 else 'FAIL'})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--backend", default="memory")
    a = ap.parse_args()
    asyncio.run(main(a.calls, a.backend))
