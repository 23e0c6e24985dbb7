"""Which HTTP server stack for the gateway server: the same handler on three stacks, one run.

    python -m bench.server_stacks            # print the table (a few minutes)
    python -m bench.server_stacks --write    # ... and replace "## Server stack" in BENCHMARKS.md

Needs, in the running interpreter's environment: aiohttp, orjson, granian, uvicorn with
httptools and uvloop (``pip install aiohttp orjson granian "uvicorn[standard]"``), and the
``wrk`` load generator on PATH. Imports nothing from msgflux.

Every server is its own one-worker process on 127.0.0.1, started from this file:

* ``upstream``: a fake OpenAI-compatible upstream (aiohttp.web) that answers at once, either a
  chat completion (JSON) or, for ``"stream": true``, 10 ``data: {...}`` SSE events (each its
  own write) and ``data: [DONE]``.
* ``direct``: wrk straight at the upstream (the latency floor).
* ``passthrough``: aiohttp.web in, aiohttp client out, request and response bytes copied
  without parsing, SSE chunks copied as they arrive (the req/s floor the project's server
  is compared against).
* the gateway handler (parse the request with orjson, set the upstream model, POST it with a
  keep-alive ``aiohttp.ClientSession`` created at startup, parse the answer -- each SSE event
  -- put the client's model back, re-encode with orjson) on: aiohttp.web (``access_log=None``;
  asyncio loop and uvloop), a framework-free ASGI app under granian (``--loop asyncio`` and
  ``--loop uvloop``) and the same ASGI app under uvicorn (httptools + uvloop).

All servers run at once (idle ones cost nothing) so that, for every mode x concurrency, the
stacks are measured back to back (order alternating between cells): each ratio compares
figures taken minutes apart at most on this shared machine. wrk: one thread, ``-c N``,
2 s warm-up then 10 s measured, POST bodies from a Lua script; latency percentiles from wrk.
Server CPU per request is read from /proc (utime + stime of the server's processes).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Server stack (issue 12)"
COMMAND = "python -m bench.server_stacks"
PATH = "/v1/chat/completions"
CLIENT_MODEL = "gpt-4o-mini"
UPSTREAM_MODEL = "upstream-model-v1"
UPSTREAM_HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
ENV_UPSTREAM = "STACKBENCH_UPSTREAM"
SSE_EVENTS = 10
# mode -> query string; "sse-batch" asks the gateway handler to write the events of one upstream
# read at once (the pass-through and the upstream ignore it).
MODES = {"json": "", "sse": "", "sse-batch": "?sse=batch"}


def chat_request(stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": CLIENT_MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Who was Frank Rosenblatt?"},
        ],
        "max_tokens": 128,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
    return body


# -- fake upstream -------------------------------------------------------------------------------
def upstream_payloads() -> tuple[bytes, list[bytes]]:
    import orjson

    completion = {
        "id": "chatcmpl-bench0001",
        "object": "chat.completion",
        "created": 1700000000,
        "model": UPSTREAM_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Frank Rosenblatt was an American psychologist who built the "
                    "perceptron, an early artificial neural network, in 1958.",
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 24, "completion_tokens": 22, "total_tokens": 46},
    }
    words = ["Frank", " Rosenblatt", " was", " an", " American", " psychologist", " who", " built"]
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": w} for w in words[: SSE_EVENTS - 2]]
    deltas.append({})
    events = []
    for i, delta in enumerate(deltas):
        chunk = {
            "id": "chatcmpl-bench0001",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": UPSTREAM_MODEL,
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": "stop" if i == len(deltas) - 1 else None,
                }
            ],
        }
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return orjson.dumps(completion), events


MESSAGES_PATH = "/v1/messages"


def messages_payloads() -> tuple[bytes, list[bytes]]:
    """Anthropic's Messages API answer and stream for the same text (10 text deltas)."""
    import orjson

    text = (
        "Frank Rosenblatt was an American psychologist who built the perceptron, an early "
        "artificial neural network, in 1958."
    )
    usage = {"input_tokens": 24, "output_tokens": 22}
    message = {
        "id": "msg_bench0001",
        "type": "message",
        "role": "assistant",
        "model": UPSTREAM_MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }

    def event(name: str, data: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    words = ["Frank", " Rosenblatt", " was", " an", " American", " psychologist", " who", " built"]
    events = [
        event("message_start", {"type": "message_start", "message": start}),
        event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    for word in words:
        delta = {"type": "text_delta", "text": word}
        events.append(
            event(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            )
        )
    events.append(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 22},
            },
        )
    )
    events.append(event("message_stop", {"type": "message_stop"}))
    return orjson.dumps(message), events


def messages_request(stream: bool) -> dict[str, Any]:
    """The Messages API form of :func:`chat_request`."""
    body: dict[str, Any] = {
        "model": CLIENT_MODEL,
        "system": "You are a helpful assistant.",
        "messages": [{"role": "user", "content": "Who was Frank Rosenblatt?"}],
        "max_tokens": 128,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
    return body


RESPONSES_PATH = "/v1/responses"


def responses_payloads() -> tuple[bytes, list[bytes]]:
    """OpenAI's Responses API answer and stream for the same text (8 text deltas), written by
    hand from the API reference."""
    import orjson

    text = (
        "Frank Rosenblatt was an American psychologist who built the perceptron, an early "
        "artificial neural network, in 1958."
    )
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {
        "id": "msg_bench0001",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    usage = {"input_tokens": 24, "output_tokens": 22, "total_tokens": 46}
    whole = {
        "id": "resp_bench0001",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": "completed",
        "model": UPSTREAM_MODEL,
        "output": [item],
        "usage": usage,
    }
    seq = iter(range(100))

    def event(name: str, **data: Any) -> bytes:
        payload = {"type": name, "sequence_number": next(seq), **data}
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    started = {**whole, "status": "in_progress", "output": [], "usage": None}
    at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    events = [
        event("response.created", response=started),
        event("response.in_progress", response=started),
        event(
            "response.output_item.added",
            output_index=0,
            item={**item, "status": "in_progress", "content": []},
        ),
        event("response.content_part.added", **at, part={**part, "text": ""}),
    ]
    words = ["Frank", " Rosenblatt", " was", " an", " American", " psychologist", " who", " built"]
    events += [event("response.output_text.delta", **at, delta=word) for word in words]
    events += [
        event("response.output_text.done", **at, text=text),
        event("response.content_part.done", **at, part=part),
        event("response.output_item.done", output_index=0, item=item),
        event("response.completed", response=whole),
    ]
    return orjson.dumps(whole), events


def responses_request(stream: bool) -> dict[str, Any]:
    """The Responses API form of :func:`chat_request`."""
    body: dict[str, Any] = {
        "model": CLIENT_MODEL,
        "instructions": "You are a helpful assistant.",
        "input": "Who was Frank Rosenblatt?",
        "max_output_tokens": 128,
        "temperature": 0.2,
        "store": False,
    }
    if stream:
        body["stream"] = True
    return body


def serve_upstream(port: int, use_uvloop: bool) -> None:
    import orjson
    from aiohttp import web

    answers = {
        PATH: upstream_payloads(),
        MESSAGES_PATH: messages_payloads(),
        RESPONSES_PATH: responses_payloads(),
    }

    async def answer(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        whole, events = answers[request.path]
        if body.get("stream"):
            resp = web.StreamResponse(headers=SSE_HEADERS)
            await resp.prepare(request)
            for event in events:
                await resp.write(event)
            await resp.write_eof()
            return resp
        return web.Response(body=whole, content_type="application/json")

    app = web.Application()
    app.router.add_post(PATH, answer)
    app.router.add_post(MESSAGES_PATH, answer)
    app.router.add_post(RESPONSES_PATH, answer)
    run_aiohttp(app, port, use_uvloop)


# -- the gateway handler logic, shared by every stack --------------------------------------------
def new_session() -> Any:
    import aiohttp

    # limit=0: no cap on upstream connections, so c=256 is not queued inside the client pool.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def gateway_json(session: Any, url: str, req: dict[str, Any]) -> bytes:
    import orjson

    model = req.get("model")
    req["model"] = UPSTREAM_MODEL
    async with session.post(url, data=orjson.dumps(req), headers=UPSTREAM_HEADERS) as resp:
        data = orjson.loads(await resp.read())
    data["model"] = model
    return orjson.dumps(data)


async def gateway_sse(session: Any, url: str, req: dict[str, Any]) -> AsyncIterator[bytes]:
    """Each SSE event of the upstream, parsed, model replaced, re-encoded, as it arrives."""
    import orjson

    model = req.get("model")
    req["model"] = UPSTREAM_MODEL
    async with session.post(url, data=orjson.dumps(req), headers=UPSTREAM_HEADERS) as resp:
        # Read to EOF (no break after [DONE]) so the connection goes back to the pool.
        async for line in resp.content:
            if not line.startswith(b"data: "):
                continue
            payload = line[6:].rstrip()
            if payload == b"[DONE]":
                yield b"data: [DONE]\n\n"
                continue
            event = orjson.loads(payload)
            event["model"] = model
            yield b"data: " + orjson.dumps(event) + b"\n\n"


async def gateway_sse_batched(session: Any, url: str, req: dict[str, Any]) -> AsyncIterator[bytes]:
    """Same transformation, but the events of one upstream read go out as one write."""
    import orjson

    model = req.get("model")
    req["model"] = UPSTREAM_MODEL
    async with session.post(url, data=orjson.dumps(req), headers=UPSTREAM_HEADERS) as resp:
        pending = b""
        async for chunk in resp.content.iter_any():
            *events, pending = (pending + chunk).split(b"\n\n")
            out = []
            for raw in events:
                if not raw.startswith(b"data: "):
                    continue
                payload = raw[6:].strip()
                if payload == b"[DONE]":
                    out.append(b"data: [DONE]\n\n")
                    continue
                event = orjson.loads(payload)
                event["model"] = model
                out.append(b"data: " + orjson.dumps(event) + b"\n\n")
            if out:
                yield b"".join(out)


def sse_source(batched: bool) -> Any:
    return gateway_sse_batched if batched else gateway_sse


# -- aiohttp.web stacks --------------------------------------------------------------------------
def run_aiohttp(app: Any, port: int, use_uvloop: bool) -> None:
    from aiohttp import web

    loop = None
    if use_uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        backlog=1024,
        shutdown_timeout=1.0,
        loop=loop,
    )


def aiohttp_app(upstream: str, handler_kind: str) -> Any:
    import orjson
    from aiohttp import web

    session_key = web.AppKey("session", object)

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[session_key] = new_session()
        yield
        await app[session_key].close()  # type: ignore[attr-defined]

    async def gateway(request: web.Request) -> web.StreamResponse:
        req = orjson.loads(await request.read())
        session = request.app[session_key]
        if req.get("stream"):
            resp = web.StreamResponse(headers=SSE_HEADERS)
            await resp.prepare(request)
            events = sse_source("batch" in request.query_string)
            async for chunk in events(session, upstream, req):
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        body = await gateway_json(session, upstream, req)
        return web.Response(body=body, content_type="application/json")

    base = upstream[: -len(PATH)]

    async def passthrough(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        session: Any = request.app[session_key]
        url = base + request.path
        async with session.post(url, data=body, headers=UPSTREAM_HEADERS) as up:
            ctype = up.headers.get("Content-Type", "application/json")
            if ctype.startswith("text/event-stream"):
                resp = web.StreamResponse(status=up.status, headers=SSE_HEADERS)
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
            return web.Response(
                body=await up.read(), status=up.status, headers={"Content-Type": ctype}
            )

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post(PATH, gateway if handler_kind == "gateway" else passthrough)
    if handler_kind != "gateway":
        app.router.add_post(MESSAGES_PATH, passthrough)
        app.router.add_post(RESPONSES_PATH, passthrough)
    return app


# -- framework-free ASGI app (granian, uvicorn) --------------------------------------------------
_asgi: dict[str, Any] = {}


async def _read_body(receive: Any) -> bytes:
    msg = await receive()
    body: bytes = msg.get("body", b"")
    if not msg.get("more_body"):
        return body
    parts = [body]
    while msg.get("more_body"):
        msg = await receive()
        parts.append(msg.get("body", b""))
    return b"".join(parts)


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    import orjson

    kind = scope["type"]
    if kind == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                _asgi["session"] = new_session()
                _asgi["upstream"] = os.environ[ENV_UPSTREAM]
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await _asgi["session"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind != "http":
        return
    if scope["path"] != PATH or scope["method"] != "POST":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    req = orjson.loads(await _read_body(receive))
    session, upstream = _asgi["session"], _asgi["upstream"]
    if req.get("stream"):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        events = sse_source(b"batch" in scope["query_string"])
        async for chunk in events(session, upstream, req):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    body = await gateway_json(session, upstream, req)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- process management --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One server process (its own session, so it and its workers stop as one group)."""

    def __init__(self, name: str, argv: list[str], port: int, logdir: Path, env: dict[str, str]):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}{PATH}"
        self.log = logdir / f"{re.sub(r'[^a-z0-9]+', '_', name.lower())}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                post(self.url, chat_request(False), timeout=2.0)
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    log = self.log.read_text()[-2000:]
                    raise RuntimeError(f"{self.name} not ready: {log}") from exc
                time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """utime + stime of every live process in this server's session."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) == self.proc.pid:  # session id
                total += int(fields[11]) + int(fields[12])
        return total / ticks

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # Workers (granian) may outlive their parent for a moment: the group goes as a whole.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def post(url: str, body: dict[str, Any], timeout: float = 5.0) -> tuple[str, bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return resp.headers.get("Content-Type", ""), resp.read()


def check(server: Server, expect_model: str) -> None:
    """A JSON and an SSE call (both SSE forms): right model, 10 events + [DONE]."""
    ctype, body = post(server.url, chat_request(False))
    data = json.loads(body)
    assert ctype.startswith("application/json"), (server.name, ctype)
    assert data["model"] == expect_model and data["choices"][0]["message"]["content"], server.name
    for query in (MODES["sse"], MODES["sse-batch"]):
        ctype, body = post(server.url + query, chat_request(True))
        assert ctype.startswith("text/event-stream"), (server.name, ctype)
        events = [e for e in body.split(b"\n\n") if e.strip()]
        assert len(events) == SSE_EVENTS + 1, (server.name, events)
        assert events[-1] == b"data: [DONE]", (server.name, events)
        for event in events[:-1]:
            assert json.loads(event[6:])["model"] == expect_model, (server.name, event)


def selected(name: str, only: list[str] | None) -> bool:
    return not only or any(word.lower() in name.lower() for word in only)


def start_servers(args: argparse.Namespace, logdir: Path) -> tuple[Server, list[Server]]:
    py = sys.executable
    me = [py, "-m", "bench.server_stacks"]
    up_port = free_port()
    upstream = Server(
        "upstream",
        [*me, "--serve", "upstream", "--port", str(up_port), "--uvloop"],
        up_port,
        logdir,
        {},
    )
    upstream.wait_ready()
    env = {ENV_UPSTREAM: upstream.url}
    app = "bench.server_stacks:asgi_app"
    specs: list[tuple[str, list[str]]] = [
        ("passthrough (aiohttp.web, bytes copied)", [*me, "--serve", "passthrough"]),
        ("aiohttp.web", [*me, "--serve", "aiohttp"]),
        ("aiohttp.web + uvloop", [*me, "--serve", "aiohttp", "--uvloop"]),
    ]
    for loop in ("asyncio", "uvloop"):
        granian = f"-m granian --interface asgi --workers 1 --loop {loop} --log-level warning"
        specs.append((f"granian asgi, {loop} loop", [py, *granian.split(), app, "--port"]))
    uvicorn = (
        "--http httptools --loop uvloop --no-access-log --workers 1 --log-level warning"
        " --backlog 1024"
    )
    specs.append(
        ("uvicorn httptools + uvloop", [py, "-m", "uvicorn", app, *uvicorn.split(), "--port"])
    )
    servers = []
    for name, argv in specs:
        needed = name.startswith("passthrough") or (args.noise and name == "aiohttp.web")
        if args.only and not needed and not selected(name, args.only):
            continue
        port = free_port()
        full = [*argv, str(port)]
        if full[:3] == me:
            full = [*argv, "--port", str(port), "--upstream", upstream.url]
        servers.append(Server(name, full, port, logdir, env))
    return upstream, servers


# -- load ----------------------------------------------------------------------------------------
LUA = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %.1f %.1f\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(url: str, script: Path, conns: int, seconds: int, threads: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            f"-t{min(threads, conns)}",
            f"-c{conns}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    match = re.search(r"^RESULT (.*)$", out, re.M)
    if not match:
        raise RuntimeError(f"wrk failed: {out}")
    n, dur_us, e_conn, e_read, e_write, e_status, e_timeout, p50, p99 = (
        float(x) for x in match.group(1).split()
    )
    return {
        "requests": n,
        "rps": n / (dur_us / 1e6),
        "p50": p50 / 1000,
        "p99": p99 / 1000,
        "errors": e_conn + e_read + e_write + e_status + e_timeout,
    }


def measure(
    server: Server, mode: str, script: Path, conns: int, args: argparse.Namespace
) -> dict[str, float]:
    url = server.url + MODES[mode]
    wrk(url, script, conns, args.warmup, args.threads)
    cpu0 = server.cpu_seconds()
    result = wrk(url, script, conns, args.duration, args.threads)
    result["cpu_us"] = (server.cpu_seconds() - cpu0) / max(result["requests"], 1) * 1e6
    return result


# -- report --------------------------------------------------------------------------------------
def versions() -> str:
    names = ["aiohttp", "orjson", "granian", "uvicorn", "uvloop", "httptools"]
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} (missing)")
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    wrk_v = (wrk_v.split() or ["wrk", "?"])[1]
    return f"Python {platform.python_version()}, " + ", ".join(parts) + f", wrk {wrk_v}"


def report(
    args: argparse.Namespace,
    results: dict[tuple[str, str, int], dict[str, float]],
    names: list[str],
    noise: list[float],
) -> str:
    base = next(n for n in names if n.startswith("passthrough"))
    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}`{' --only ' + ' '.join(args.only) if args.only else ''} "
        f"({versions()}; {os.cpu_count()} CPUs shared by wrk, the server and the fake upstream, "
        "each its own process).",
        "",
        "Same handler on every stack: orjson-parse the request, POST it to the fake upstream "
        "with a keep-alive aiohttp.ClientSession made at startup, parse the answer (each SSE "
        "event), replace `model`, re-encode with orjson. The upstream answers at once (SSE: "
        f"{SSE_EVENTS} events + `[DONE]`, each its own write), so these are the stacks' own "
        "costs. SSE: one write (ASGI `send`) per event; SSE-BATCH: the events of one upstream "
        "read transformed one by one but sent as one write (what the pass-through does, since "
        "it copies chunks). wrk -t"
        f"{args.threads}, {args.warmup:g} s warm-up + {args.duration:g} s per row; for each "
        "mode x concurrency the stacks run back to back, order alternating. "
        "'vs pass' = req/s / the bare aiohttp pass-through's at the same mode and concurrency; "
        "'+p50' = p50 minus calling the upstream directly; CPU = server process CPU time per "
        "request.",
        "",
        "| stack | mode | c | req/s | p50 ms | p99 ms | vs pass | +p50 ms | CPU µs/req | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        for mode in MODES:
            for c in args.concurrency:
                r = results[(name, mode, c)]
                ratio = r["rps"] / results[(base, mode, c)]["rps"]
                added = r["p50"] - results[("direct", mode, c)]["p50"]
                lines.append(
                    f"| {name} | {mode.upper()} | {c} | {r['rps']:,.0f} | {r['p50']:.2f} "
                    f"| {r['p99']:.2f} | {ratio:.2f}x | {added:+.2f} | {r['cpu_us']:.0f} "
                    f"| {r['errors']:.0f} |"
                )
    if 32 in args.concurrency and 1 in args.concurrency:
        lines += [
            "",
            "Target: req/s at c=32 >= 0.7x the pass-through's (JSON and SSE), and added p50 over "
            "calling the upstream directly <= 1 ms (taken at c=1, where p50 is not queueing). "
            "'met' needs JSON and at least one SSE form.",
            "",
            "| stack | c=32 JSON | c=32 SSE | c=32 SSE-BATCH | +p50 c=1 JSON | +p50 c=1 SSE "
            "| +p50 c=1 SSE-BATCH | target |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name in names:
            if name in ("direct", base):
                continue
            ratio = {
                m: results[(name, m, 32)]["rps"] / results[(base, m, 32)]["rps"] for m in MODES
            }
            added = {
                m: results[(name, m, 1)]["p50"] - results[("direct", m, 1)]["p50"] for m in MODES
            }
            ok_json = ratio["json"] >= 0.7 and added["json"] <= 1.0
            ok_sse = {m: ratio[m] >= 0.7 and added[m] <= 1.0 for m in ("sse", "sse-batch")}
            verdict = "MISSED"
            if ok_json and ok_sse["sse"]:
                verdict = "met"
            elif ok_json and ok_sse["sse-batch"]:
                verdict = "met with batched SSE writes"
            lines.append(
                f"| {name} | "
                + " | ".join(f"{ratio[m]:.2f}x" for m in MODES)
                + " | "
                + " | ".join(f"{added[m]:+.2f} ms" for m in MODES)
                + f" | {verdict} |"
            )
    if noise:
        med = statistics.median(noise)
        lines += [
            "",
            f"Noise: aiohttp.web JSON c=32 run {len(noise)} more times at the end of the run: "
            + ", ".join(f"{v:,.0f}" for v in noise)
            + f" req/s (median {med:,.0f}, spread max-min {(max(noise) - min(noise)) / med:.0%} "
            "of the median). Differences between stacks smaller than that are not significant.",
        ]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text + "\n", current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    path.write_text(updated.rstrip("\n") + "\n")


# -- main ----------------------------------------------------------------------------------------
def bench(args: argparse.Namespace) -> str:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (apt-get install wrk)")
    logdir = Path(tempfile.mkdtemp(prefix="server_stacks_"))
    scripts = {}
    for mode in MODES:
        scripts[mode] = logdir / f"{mode}.lua"
        body = json.dumps(chat_request(mode != "json"), separators=(",", ":"))
        scripts[mode].write_text(LUA.replace("{body}", body))
    upstream: Server | None = None
    servers: list[Server] = []
    try:
        upstream, servers = start_servers(args, logdir)
        for server in servers:
            server.wait_ready()
            kind = UPSTREAM_MODEL if server.name.startswith("passthrough") else CLIENT_MODEL
            check(server, kind)
        check(upstream, UPSTREAM_MODEL)
        # "direct": wrk at the upstream; its CPU column is the upstream's own.
        targets = [("direct", upstream), *((s.name, s) for s in servers)]
        targets = [
            (name, server)
            for name, server in targets
            if name in ("direct", servers[0].name) or selected(name, args.only)
        ]
        names = [t[0] for t in targets]
        results: dict[tuple[str, str, int], dict[str, float]] = {}
        cell = 0
        for mode in MODES:
            for c in args.concurrency:
                order = targets if cell % 2 == 0 else targets[::-1]
                cell += 1
                for name, server in order:
                    r = measure(server, mode, scripts[mode], c, args)
                    results[(name, mode, c)] = r
                    print(
                        f"  {name:40s} {mode:9s} c={c:<3d} {r['rps']:8,.0f} req/s "
                        f"p50 {r['p50']:6.2f} ms p99 {r['p99']:7.2f} ms "
                        f"cpu {r['cpu_us']:5.0f} µs/req errors {r['errors']:.0f}",
                        file=sys.stderr,
                        flush=True,
                    )
        noise: list[float] = []
        aio = next((s for s in servers if s.name == "aiohttp.web"), None)
        if aio is not None and args.noise:
            for _ in range(args.noise):
                noise.append(measure(aio, "json", scripts["json"], 32, args)["rps"])
                print(f"  noise: aiohttp.web json c=32 {noise[-1]:,.0f} req/s", file=sys.stderr)
    finally:
        for server in [*servers, *([upstream] if upstream else [])]:
            server.stop()
        shutil.rmtree(logdir, ignore_errors=True)
    return report(args, results, names, noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--write", action="store_true", help=f"replace {SECTION!r} in BENCHMARKS.md"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per row")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per row")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--noise", type=int, default=3, help="extra aiohttp.web JSON c=32 runs")
    parser.add_argument("--only", nargs="+", help="stacks whose name contains one of these words")
    # internal: run one server
    parser.add_argument("--serve", choices=["upstream", "passthrough", "aiohttp"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--upstream")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.serve == "upstream":
        serve_upstream(args.port, args.uvloop)
    elif args.serve:
        kind = "passthrough" if args.serve == "passthrough" else "gateway"
        run_aiohttp(aiohttp_app(args.upstream, kind), args.port, args.uvloop)
    else:
        text = bench(args)
        print(text)
        if args.write:
            write_section(text)


if __name__ == "__main__":
    main()
