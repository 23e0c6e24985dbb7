"""What the response cache costs and saves (issue 22): server CPU per request of a hit against
a native-lane call with no cache, and what a miss adds in the library.

    .venv/bin/python -m bench.cache            # print the figures (about 7 minutes)
    .venv/bin/python -m bench.cache --write    # ... and update BENCHMARKS.md

**Server** (``msgflux serve``, one worker, in front of ``bench.server_stacks``' fake upstream
in its own process), twice: with the defaults (metrics and the access log on) and ``bare``
(both off, so the server's own per-request work is smaller). Two gateways over the same
``openai_compatible`` deployment, driven by wrk (one thread, c=32) with the chat request of
``bench.server`` at ``temperature: 0``:

* ``no cache``: the native lane (the baseline);
* ``cache hit``: ``cache: true``, the same body every time (all hits but the first);
* ``cache miss``: ``cache: true``, every body different (its last message tagged with the
  wrk run and numbered by the wrk script): look up, go upstream, keep the answer.

Server CPU per request is the utime+stime of the server's processes (``/proc``) over a run
divided by its requests; the lanes run back to back within a round, order alternating.
Target: a hit <= 0.5x the CPU of the native lane.

**The ASGI app alone**: the same three lanes (``defaults`` config) through the server's ASGI
app in this process, without the HTTP/1.1 layer and the client's socket (which every lane pays
alike): where a request's CPU goes once the transport is taken out.

**Library**: ``gateway.acomplete(body)`` of a gateway with and without ``cache=True``, every
body different (each call a miss that keeps its answer), against ``tests/upstream.py`` in its
own process: this process's CPU time per call (``time.process_time`` around each call, the
two gateways' calls interleaved), the figure the difference of the means per round (median
and best round). Also an in-process
model that answers at once (``bench.common.Instant``) to see the wrapper's cost alone.
Target: a miss adds <= 20 us.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Instant, start_upstream, write_section
from bench.server_ops import wait_live
from bench.server_stacks import LUA, UPSTREAM_MODEL, Server, chat_request, free_port, wrk

SECTION = "## Response cache (issue 22)"
COMMAND = ".venv/bin/python -m bench.cache --write"
LANES = ("no cache", "cache hit", "cache miss")
GATEWAY = {"no cache": "plain", "cache hit": "cached", "cache miss": "cached"}
MODES = ("json", "sse")
SERVERS = ("defaults", "bare")

UNIQUE_LUA = """\
counter = 0
request = function()
  counter = counter + 1
  local body = string.gsub([==[{body}]==], "Rosenblatt%?", "Rosenblatt? #{tag}-" .. counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %.1f %.1f\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def body(lane: str, mode: str) -> dict[str, Any]:
    out = chat_request(mode == "sse")
    out["model"] = GATEWAY[lane]
    out["temperature"] = 0
    return out


def config(upstream: str, bare: bool = False) -> str:
    dep = {
        "model_name": "upstream",
        "model": f"openai_compatible/{UPSTREAM_MODEL}",
        "base_url": upstream,
        "api_key": "sk-bench",
    }
    gateways = {"plain": {"models": [dep]}, "cached": {"cache": True, "models": [dep]}}
    server = {"metrics": False, "access_log": False} if bare else {}
    return json.dumps({"server": server, "gateways": gateways})


# -- server --------------------------------------------------------------------------------------
def server_figures(args: argparse.Namespace) -> dict[tuple[str, str, str], list[float]]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (apt-get install wrk)")
    logdir = Path(tempfile.mkdtemp(prefix="bench_cache_"))
    py = sys.executable
    port = free_port()
    upstream = Server(
        "upstream",
        [py, "-m", "bench.server_stacks", "--serve", "upstream", "--port", str(port), "--uvloop"],
        port,
        logdir,
        {},
    )
    servers: dict[str, Server] = {}
    try:
        upstream.wait_ready()
        for name in SERVERS:
            path = logdir / f"{name}.json"
            path.write_text(config(upstream.url[: -len("/chat/completions")], name == "bare"))
            port = free_port()
            msgflux = str(Path(py).with_name("msgflux"))
            argv = [msgflux, "serve", "--config", str(path), "--port", str(port)]
            servers[name] = Server(f"msgflux serve {name}", argv, port, logdir, {})
        for server in servers.values():
            wait_live(server)
        scripts = {}
        for lane in LANES:
            for mode in MODES:
                text = json.dumps(body(lane, mode), separators=(",", ":"))
                template = UNIQUE_LUA if lane == "cache miss" else LUA
                script = logdir / f"{lane.replace(' ', '_')}_{mode}.lua"
                script.write_text(template.replace("{body}", text))
                scripts[lane, mode] = script
        runs = iter(range(10**9))

        def unique(script: Path, run: int) -> Path:
            """The miss lane's script for one wrk run: its bodies tagged with the run (wrk
            restarts its counter each run, and a body seen before would hit)."""
            tagged = script.with_name(f"{script.stem}_{run}.lua")
            tagged.write_text(script.read_text().replace("{tag}", str(run)))
            return tagged

        results: dict[tuple[str, str, str], list[float]] = {}
        for round_ in range(args.rounds):
            for name, server in servers.items():
                for mode in MODES:
                    order = LANES if round_ % 2 == 0 else tuple(reversed(LANES))
                    for lane in order:
                        warm = script = scripts[lane, mode]
                        if lane == "cache miss":  # every wrk run its own bodies: all misses
                            warm = unique(script, next(runs))
                            script = unique(script, next(runs))
                        wrk(server.url, warm, 32, args.warmup, 1)
                        cpu0 = server.cpu_seconds()
                        result = wrk(server.url, script, 32, args.duration, 1)
                        if result["errors"]:
                            raise RuntimeError(f"{name} {lane} {mode}: {result}")
                        cpu = (server.cpu_seconds() - cpu0) / max(result["requests"], 1) * 1e6
                        results.setdefault((name, lane, mode), []).append(cpu)
                        print(f"  round {round_} {name} {mode} {lane}: {cpu:.1f} us/request")
        return results
    finally:
        for server in servers.values():
            server.stop()
        upstream.stop()


# -- the app alone ------------------------------------------------------------------------------
async def app_figures(args: argparse.Namespace) -> dict[tuple[str, str], list[float]]:
    """The same lanes inside the server's ASGI app alone, in this process (``defaults``
    config, GC tuned as a worker does): what a request costs without the HTTP/1.1 layer and
    the client's socket, which both lanes pay alike. CPU per request (``process_time``; the
    native lane's includes its aiohttp call to the upstream, in its own process)."""
    import orjson

    from msgflux.server.app import App
    from msgflux.server.config import parse_config
    from msgflux.server.lifecycle import tune_gc
    from msgflux.server.operations import Operations
    from msgflux.server.runtime import build_runtime

    logdir = Path(tempfile.mkdtemp(prefix="bench_cache_app_"))
    port = free_port()
    argv = [sys.executable, "-m", "bench.server_stacks", "--serve", "upstream"]
    upstream = Server("upstream", [*argv, "--port", str(port), "--uvloop"], port, logdir, {})
    serial = iter(range(10**9))

    def payloads(lane: str, mode: str, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            asked = body(lane, mode)
            if lane == "cache miss":
                asked["messages"][-1]["content"] += f" #{next(serial)}"
            out.append(orjson.dumps(asked))
        return out

    try:
        upstream.wait_ready()
        settings = parse_config(config(upstream.url[: -len("/chat/completions")]), {})
        ops = Operations(settings)
        runtime = build_runtime(settings, hooks=ops.hooks, directory=ops.directory)
        app = App(runtime, ops)
        ops.started()
        tune_gc()

        async def one(data: bytes) -> None:
            sent = False
            closed = asyncio.Event()

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": data, "more_body": False}
                await closed.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start" and message["status"] != 200:
                    raise RuntimeError(f"app answered {message['status']}")

            scope = {
                "type": "http",
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": "/v1/chat/completions",
                "raw_path": b"/v1/chat/completions",
                "root_path": "",
                "query_string": b"",
                "headers": [(b"host", b"bench"), (b"content-type", b"application/json")],
                "client": ("127.0.0.1", 1),
                "server": ("127.0.0.1", 2),
            }
            await app(scope, receive, send)
            closed.set()

        results: dict[tuple[str, str], list[float]] = {}
        for lane in LANES:
            for mode in MODES:
                for data in payloads(lane, mode, 200):  # warm (and fill the hit's entry)
                    await one(data)
        for round_ in range(args.rounds):
            for mode in MODES:
                order = LANES if round_ % 2 == 0 else tuple(reversed(LANES))
                for lane in order:
                    batch = payloads(lane, mode, args.app_requests)
                    started = time.process_time()
                    for data in batch:
                        await one(data)
                    cpu = (time.process_time() - started) / len(batch) * 1e6
                    results.setdefault((lane, mode), []).append(cpu)
                    print(f"  round {round_} app {mode} {lane}: {cpu:.1f} us/request", flush=True)
        await app.aclose()
        return results
    finally:
        upstream.stop()


# -- library -------------------------------------------------------------------------------------
ASK = "Who was Frank Rosenblatt?"


async def library_figures(args: argparse.Namespace) -> dict[str, list[float]]:
    from msgflux import Model, ModelGateway

    proc, base_url = start_upstream()
    counter = iter(range(10**9))

    def fresh() -> dict[str, Any]:
        text = f"{ASK} #{next(counter)}"
        return {"model": "m", "temperature": 0, "messages": [{"role": "user", "content": text}]}

    def gateway(model: Any, cache: bool) -> Any:
        return ModelGateway([{"model_name": "d", "model": model}], cache=cache)

    try:
        http = Model.chat_completion("openai_compatible/m", base_url=base_url)
        pairs = {
            "http": (gateway(http, False), gateway(http, True)),
            "instant": (gateway(Instant("i"), False), gateway(Instant("i"), True)),
        }
        out: dict[str, list[float]] = {}
        for name, (plain, cached) in pairs.items():
            calls = args.calls if name == "http" else args.calls * 5
            for gw in (plain, cached):  # warm both (connections, first-call imports)
                for _ in range(200):
                    await gw.acomplete(fresh())
            for round_ in range(args.rounds):
                spent = {plain: 0.0, cached: 0.0}
                for i in range(2 * calls):  # interleaved, so drift hits both alike
                    gw = (plain, cached)[(i + round_) % 2]
                    asked = fresh()
                    started = time.process_time()
                    answer = await gw.acomplete(asked)
                    spent[gw] += time.process_time() - started
                    assert answer.cache == ("miss" if gw is cached else None), answer.cache
                base, with_cache = (spent[g] / calls * 1e6 for g in (plain, cached))
                out.setdefault(name, []).append(with_cache - base)
                out.setdefault(f"{name} base", []).append(base)
                print(
                    f"  round {round_} {name}: no cache {base:.1f} us, "
                    f"cache (miss) {with_cache:.1f} us of CPU per call",
                    flush=True,
                )
        return out
    finally:
        proc.kill()


# -- report --------------------------------------------------------------------------------------
def report(
    server: dict[tuple[str, str, str], list[float]],
    app: dict[tuple[str, str], list[float]],
    library: dict[str, list[float]],
) -> str:
    lines = [
        SECTION,
        "",
        f"`{COMMAND}` (server: wrk c=32, one worker; app: the server's ASGI app in-process, "
        "no HTTP layer; library: process CPU per call). Median of "
        "rounds (best round in brackets); a ratio is the median of the per-round ratios to the "
        "same server's `no cache` lane.",
        "",
        "| server CPU per request | JSON | SSE (10 events) |",
        "| --- | --- | --- |",
    ]
    for name in SERVERS:
        for lane in LANES:
            cells = []
            for mode in MODES:
                values = server[name, lane, mode]
                base = server[name, "no cache", mode]
                ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
                cells.append(
                    f"{statistics.median(values):.0f} us ({min(values):.0f}), {ratio:.2f}x"
                )
            lines.append(f"| {name}: {lane} | {' | '.join(cells)} |")
    lines += [
        "",
        "| the ASGI app alone (no HTTP layer), CPU per request | JSON | SSE (10 events) |",
        "| --- | --- | --- |",
    ]
    for lane in LANES:
        cells = []
        for mode in MODES:
            values = app[lane, mode]
            base = app["no cache", mode]
            ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
            cells.append(f"{statistics.median(values):.0f} us ({min(values):.0f}), {ratio:.2f}x")
        lines.append(f"| {lane} | {' | '.join(cells)} |")
    lines += [
        "",
        "| library, what a miss adds per call | median | best round | no cache, per call |",
        "| --- | --- | --- | --- |",
    ]
    for name in ("http", "instant"):
        values = library[name]
        base = statistics.median(library[f"{name} base"])
        what = "native lane, real HTTP" if name == "http" else "instant in-process model"
        lines.append(
            f"| {what} | {statistics.median(values):.1f} us | {min(values):.1f} us "
            f"| {base:.0f} us |"
        )
    return "\n".join(lines) + "\n"


def _run(main: Any) -> Any:
    """``main`` on uvloop, as ``msgflux serve`` runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--calls", type=int, default=2000, help="library calls per round")
    parser.add_argument("--app-requests", type=int, default=2000, help="app requests per lane")
    parser.add_argument("--only", choices=("server", "app", "library"))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    only = args.only
    server = server_figures(args) if only in (None, "server") else {}
    app = _run(app_figures(args)) if only in (None, "app") else {}
    library = asyncio.run(library_figures(args)) if only in (None, "library") else {}
    if server and app and library:
        text = report(server, app, library)
        print(text)
        if args.write:
            write_section(SECTION, text)


if __name__ == "__main__":
    main()
