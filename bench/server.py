"""``msgflux serve``'s lanes against the floor (a bare aiohttp pass-through proxy) and LiteLLM's
proxy: req/s, latency and *server CPU per request*, one run, one fake upstream process.

    python -m bench.server            # print the figures (about 10 minutes)
    python -m bench.server --write    # ... and replace "## Server" in BENCHMARKS.md

Lanes (the client's API -> the deployment's family), each a gateway with one deployment:

* ``chat native``: ``POST /v1/chat/completions`` to an ``openai_compatible`` deployment;
* ``messages native``: ``POST /v1/messages`` to an ``anthropic`` deployment;
* ``chat -> messages``: ``/v1/chat/completions`` to an ``anthropic`` deployment (translated);
* ``messages -> chat``: ``/v1/messages`` to an ``openai_compatible`` deployment (translated);
* ``responses native``: ``POST /v1/responses`` to an ``openai`` deployment;
* ``responses -> chat``: ``/v1/responses`` to an ``openai_compatible`` deployment (translated).

The pass-through (``bench.server_stacks --serve passthrough``: aiohttp in and out, bytes copied,
nothing parsed) serves the same client path against the same upstream path, so each lane is
compared with copying the same bytes. The fake upstream (``bench.server_stacks``) answers a
chat completion or 10 SSE events + ``[DONE]``, the Messages API's answer or its 13 events, and
the Responses API's answer or its 16 events, each its own write. LiteLLM's proxy
(``litellm --config``, one worker, telemetry off) runs the chat lane when ``--litellm`` points
at its command (install: ``python -m venv /tmp/litellm-venv &&
/tmp/litellm-venv/bin/pip install "litellm[proxy]==1.77.7"``).

wrk (one thread) measures JSON and SSE at c=1 and c=32; in each round of a cell the contenders
run back to back, order alternating. Server CPU per request is the utime+stime of the server's
processes (``/proc``) over the measured run divided by its requests: on this shared 2-core
machine it is the stable figure where req/s is not. Then memory: RSS of ``msgflux serve`` after
10,000 and 100,000 requests (JSON and SSE alternating, c=32).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_section
from bench.server_stacks import (
    CLIENT_MODEL,
    LUA,
    MESSAGES_PATH,
    PATH,
    RESPONSES_PATH,
    UPSTREAM_MODEL,
    Server,
    chat_request,
    free_port,
    messages_request,
    post,
    responses_request,
    wrk,
)

SECTION = "## Server: lanes, CPU per request, LiteLLM (issues 12, 18, 19)"
COMMAND = ".venv/bin/python -m bench.server --write"
LITELLM_VERSION = "1.77.7"
MODES = ("json", "sse")
PASS = "passthrough (aiohttp)"
OURS = "msgflux serve"
LITELLM = f"LiteLLM proxy {LITELLM_VERSION}"

LANES: dict[str, tuple[str, str]] = {
    "chat native": (PATH, CLIENT_MODEL),
    "messages native": (MESSAGES_PATH, "claude"),
    "chat -> messages": (PATH, "claude"),
    "messages -> chat": (MESSAGES_PATH, CLIENT_MODEL),
    "responses native": (RESPONSES_PATH, "gpt"),
    "responses -> chat": (RESPONSES_PATH, CLIENT_MODEL),
}
"""Lane -> (client path, gateway: ``CLIENT_MODEL`` names an OpenAI-compatible deployment,
``claude`` an Anthropic one, ``gpt`` an OpenAI one)."""
NATIVE = ("chat native", "messages native", "responses native")
BASE_LANE = {
    PATH: "chat native",
    MESSAGES_PATH: "messages native",
    RESPONSES_PATH: "responses native",
}
"""The pass-through's lane a lane is compared with: the one of the same client path."""
REQUESTS = {PATH: chat_request, MESSAGES_PATH: messages_request, RESPONSES_PATH: responses_request}
ENDS = (b"data: [DONE]", b'{"type":"message_stop"}', b'"type":"response.completed"')


def msgflux_config(upstream: str) -> str:
    return (
        "gateways:\n"
        f"  {CLIENT_MODEL}:\n"
        "    models:\n"
        "      - model_name: upstream\n"
        f"        model: openai_compatible/{UPSTREAM_MODEL}\n"
        f"        base_url: {upstream}/v1\n"
        "        api_key: sk-bench\n"
        "  claude:\n"
        "    models:\n"
        "      - model_name: upstream\n"
        f"        model: anthropic/{UPSTREAM_MODEL}\n"
        f"        base_url: {upstream}\n"
        "        api_key: sk-bench\n"
        "  gpt:\n"
        "    models:\n"
        "      - model_name: upstream\n"
        f"        model: openai/{UPSTREAM_MODEL}\n"
        f"        base_url: {upstream}/v1\n"
        "        api_key: sk-bench\n"
    )


def litellm_config(upstream: str) -> str:
    return (
        "model_list:\n"
        f"  - model_name: {CLIENT_MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{UPSTREAM_MODEL}\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: sk-bench\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
        "  telemetry: false\n"
    )


def request_body(lane: str, stream: bool) -> dict[str, Any]:
    path, gateway = LANES[lane]
    body = REQUESTS[path](stream)
    body["model"] = gateway
    return body


def root(url: str) -> str:
    return url[: -len(PATH)]


def check(server: Server, lane: str) -> None:
    """A JSON and an SSE call of ``lane``: an answer, the gateway's name, a whole stream."""
    path, gateway = LANES[lane]
    url = root(server.url) + path
    ctype, body = post(url, request_body(lane, False), timeout=30)
    assert ctype.startswith("application/json"), (server.name, lane, ctype, body[:200])
    if server.name == OURS:
        assert json.loads(body)["model"] == gateway, (server.name, lane, body[:300])
    ctype, body = post(url, request_body(lane, True), timeout=30)
    assert ctype.startswith("text/event-stream"), (server.name, lane, ctype)
    last = [e for e in body.split(b"\n\n") if e.strip()][-1]
    assert last.endswith(ENDS) or ENDS[2] in last, (server.name, lane, last)


def start(args: argparse.Namespace, logdir: Path) -> tuple[Server, list[Server]]:
    py = sys.executable
    me = [py, "-m", "bench.server_stacks"]
    port = free_port()
    upstream = Server(
        "upstream", [*me, "--serve", "upstream", "--port", str(port), "--uvloop"], port, logdir, {}
    )
    upstream.wait_ready()
    base = root(upstream.url)
    servers = []
    port = free_port()
    servers.append(
        Server(
            PASS,
            [*me, "--serve", "passthrough", "--port", str(port), "--upstream", upstream.url],
            port,
            logdir,
            {},
        )
    )
    config = logdir / "msgflux.yaml"
    config.write_text(msgflux_config(base))
    port = free_port()
    msgflux = str(Path(py).with_name("msgflux"))
    servers.append(
        Server(
            OURS, [msgflux, "serve", "--config", str(config), "--port", str(port)], port, logdir, {}
        )
    )
    if args.litellm and Path(args.litellm).exists():
        config = logdir / "litellm.yaml"
        config.write_text(litellm_config(base))
        port = free_port()
        env = {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "DISABLE_SCHEMA_UPDATE": "True",
            "LITELLM_MODE": "PRODUCTION",
        }
        argv = [args.litellm, "--config", str(config), "--port", str(port), "--num_workers", "1"]
        servers.append(Server(LITELLM, [*argv, "--telemetry", "False"], port, logdir, env))
    try:
        for server in servers:
            server.wait_ready(timeout=120)
            for lane in lanes_of(server):
                check(server, lane)
    except BaseException:
        for server in [*servers, upstream]:
            server.stop()
        raise
    return upstream, servers


def lanes_of(server: Server) -> list[str]:
    if server.name == OURS:
        return list(LANES)
    if server.name == LITELLM:
        return ["chat native"]
    return list(NATIVE)  # the pass-through copies bytes: it has no translated lanes


def rss_kib(server: Server) -> int:
    """RSS of the server's processes (its session), in KiB."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[3]) != server.proc.pid:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


async def drive(url: str, n: int, concurrency: int) -> int:
    """``n`` requests, JSON and SSE alternating; returns how many failed."""
    import aiohttp

    bodies = [
        json.dumps(request_body("chat native", False)).encode(),
        json.dumps(request_body("chat native", True)).encode(),
    ]
    headers = {"Content-Type": "application/json"}
    failed = 0
    counter = iter(range(n))

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failed
        for i in counter:
            async with session.post(url, data=bodies[i % 2], headers=headers) as resp:
                await resp.read()
                failed += resp.status != 200

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return failed


def memory(server: Server) -> dict[str, Any]:
    asyncio.run(drive(server.url, 10_000, 32))
    after_10k = rss_kib(server)
    failed = asyncio.run(drive(server.url, 90_000, 32))
    after_100k = rss_kib(server)
    return {"10k": after_10k, "100k": after_100k, "failed": failed}


def versions() -> str:
    parts = []
    for name in ("uvloop", "aiohttp", "orjson"):  # ours: msgflux.server.http1; aiohttp: the floor
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} (missing)")
    return f"Python {platform.python_version()}, " + ", ".join(parts)


Cell = tuple[str, str, str, int]
"""(contender, lane, mode, concurrency)."""
Results = dict[Cell, list[dict[str, float]]]


def run(args: argparse.Namespace) -> str:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (apt-get install wrk)")
    logdir = Path(tempfile.mkdtemp(prefix="bench_server_"))
    scripts = {}
    for lane in LANES:
        for mode in MODES:
            body = json.dumps(request_body(lane, mode == "sse"), separators=(",", ":"))
            path = logdir / f"{lane.replace(' ', '_').replace('>', '')}_{mode}.lua"
            path.write_text(LUA.replace("{body}", body))
            scripts[lane, mode] = path
    upstream, servers = start(args, logdir)
    results: Results = {}
    try:
        flip = False
        for lane in args.lanes:
            for mode in MODES:
                for c in args.concurrency:
                    for _ in range(args.rounds):
                        order = [s for s in servers if lane in lanes_of(s)]
                        if flip:
                            order.reverse()
                        flip = not flip
                        for server in order:
                            url = root(server.url) + LANES[lane][0]
                            script = scripts[lane, mode]
                            wrk(url, script, c, args.warmup, 1)
                            cpu0 = server.cpu_seconds()
                            result = wrk(url, script, c, args.duration, 1)
                            used = server.cpu_seconds() - cpu0
                            result["cpu_us"] = used / max(result["requests"], 1) * 1e6
                            results.setdefault((server.name, lane, mode, c), []).append(result)
                            print(server.name, lane, mode, c, result, flush=True)
        ours = next(s for s in servers if s.name == OURS)
        mem = memory(ours) if not args.no_memory else None
    finally:
        for server in servers:
            server.stop()
        upstream.stop()
    return report(args, results, [s.name for s in servers], mem)


def median(results: Results, cell: Cell, key: str) -> float:
    return statistics.median(r[key] for r in results[cell])


def ratio(results: Results, cell: Cell, base: Cell, key: str) -> float:
    """Median over rounds of the per-round ratio of ``key`` to the base cell's."""
    pairs = zip(results[cell], results[base], strict=True)
    return statistics.median(a[key] / b[key] for a, b in pairs)


def report(
    args: argparse.Namespace, results: Results, names: list[str], mem: dict[str, Any] | None
) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}` ({versions()}; 2 CPUs shared by wrk, the fake upstream and the "
        "proxy under test, each its own process; one worker each). Every proxy sits in front of "
        "the same fake upstream (`bench.server_stacks`: a chat completion or 10 SSE events + "
        "`[DONE]`; a Messages API answer or its 13 events; each event its own write). wrk -t1, "
        f"{args.warmup:g} s warm-up + {args.duration:g} s per row, {args.rounds} rounds; in each "
        "round of a cell the contenders run back to back, order alternating. Figures are "
        "medians over the rounds; 'vs pass' = the median of the per-round ratios to the "
        "pass-through proxy serving the same client path (for a translated lane: the same "
        "client path copied to the same upstream path, so what the translation costs shows); "
        "CPU = server CPU time (utime+stime from /proc) per request.",
        "",
        "| server | lane | mode | c | req/s | p50 ms | p99 ms | CPU µs/req | req/s vs pass "
        "| CPU vs pass | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        for lane in args.lanes:
            for mode in MODES:
                for c in args.concurrency:
                    cell = (name, lane, mode, c)
                    if cell not in results:
                        continue
                    base = (PASS, BASE_LANE[LANES[lane][0]], mode, c)
                    errors = sum(r["errors"] for r in results[cell])
                    rel = ""
                    if base in results:
                        rel = (
                            f"| {ratio(results, cell, base, 'rps'):.2f}x "
                            f"| {ratio(results, cell, base, 'cpu_us'):.2f}x "
                        )
                    else:
                        rel = "| | "
                    lines.append(
                        f"| {name} | {lane} | {mode.upper()} | {c} "
                        f"| {median(results, cell, 'rps'):,.0f} "
                        f"| {median(results, cell, 'p50'):.2f} "
                        f"| {median(results, cell, 'p99'):.2f} "
                        f"| {median(results, cell, 'cpu_us'):.0f} {rel}| {errors:.0f} |"
                    )
    lines += ["", "| target | figure | verdict |", "|---|---|---|"]
    for lane in NATIVE:
        if lane not in args.lanes:
            continue
        for mode in MODES:
            cell = (OURS, lane, mode, 32)
            base = (PASS, lane, mode, 32)
            cpu = ratio(results, cell, base, "cpu_us")
            rps = ratio(results, cell, base, "rps")
            rounds = ", ".join(
                f"{a['cpu_us'] / b['cpu_us']:.2f}"
                for a, b in zip(results[cell], results[base], strict=True)
            )
            lines.append(
                f"| {lane}, {mode.upper()}, c=32: server CPU/request <= 1.0x the pass-through's "
                f"(rounds: {rounds}) | {cpu:.2f}x | {'met' if cpu <= 1.0 else 'MISSED'} |"
            )
            lines.append(
                f"| {lane}, {mode.upper()}, c=32: req/s >= 1.0x the pass-through's | {rps:.2f}x "
                f"| {'met' if rps >= 1.0 else 'MISSED'} |"
            )
    if (LITELLM, "chat native", "json", 32) in results:
        for mode in MODES:
            r = ratio(
                results, (OURS, "chat native", mode, 32), (LITELLM, "chat native", mode, 32), "rps"
            )
            lines.append(
                f"| chat {mode.upper()} req/s at c=32 >= 5x LiteLLM's proxy | {r:.1f}x "
                f"| {'met' if r >= 5 else 'MISSED'} |"
            )
    else:
        lines.append("| >= 5x LiteLLM's proxy | not measured (no --litellm command) | |")
    if mem is not None:
        growth = (mem["100k"] - mem["10k"]) / mem["10k"]
        lines.append(
            f"| RSS after 100,000 requests within 10% of after 10,000 (JSON and SSE alternating, "
            f"c=32) | {mem['10k'] / 1024:.1f} MiB -> {mem['100k'] / 1024:.1f} MiB "
            f"({growth:+.1%}; {mem['failed']} failed) "
            f"| {'met' if abs(growth) <= 0.10 else 'MISSED'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help=f"replace {SECTION!r}")
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lanes", nargs="+", default=list(LANES), choices=list(LANES))
    parser.add_argument("--litellm", default="/tmp/litellm-venv/bin/litellm")
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    if 32 not in args.concurrency:
        parser.error("--concurrency must include 32 (the targets' cells)")
    started = time.monotonic()
    text = run(args)
    print(text)
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if args.write:
        write_section(SECTION, text.rstrip("\n"))


if __name__ == "__main__":
    main()
