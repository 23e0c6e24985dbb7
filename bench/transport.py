"""Transport figures for BENCHMARKS.md (issue 2): our chat model against bare HTTP clients.

    .venv/bin/python -m bench.transport            # print the table
    .venv/bin/python -m bench.transport --write    # ... and update BENCHMARKS.md

Everything is measured in one run against the same local OpenAI-compatible upstream
(``tests/upstream.py``), started in a separate process so that it does not share this
interpreter's GIL; it still shares the machine's cores, as any local benchmark does.

* async: ``calls`` chat completions at ``concurrency`` through ``OpenAIChatCompletion._acall_once``
  (build the body, POST over aiohttp, decode, build a ``ModelResponse``) against a bare
  ``aiohttp`` POST of pre-encoded bytes plus ``orjson.loads``. Target: >= 0.6x the req/s.
* sync: sequential per-call time of ``_call_once`` against a bare pooled ``urllib3``
  POST plus ``orjson.loads``. Target: <= 1.25x. ``httpx.Client`` is timed too, when
  installed, because it was the other candidate for the sync transport.

Rounds alternate between the contenders and the median round is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import urllib3

from bench.common import ROOT, start_upstream, write_section
from msgflux import Model, _transport
from msgflux.models.providers.openai import OpenAIChatCompletion

SECTION = "## Transport (issue 2)"
COMMAND = ".venv/bin/python -m bench.transport --write"
KEY = "sk-bench"
MODEL_ID = "bench-model"
PROMPT = "Who was Frank Rosenblatt?"


def request_body() -> bytes:
    return orjson.dumps(
        {
            "model": MODEL_ID,
            "max_tokens": 512,
            "messages": [{"role": "user", "content": PROMPT}],
        }
    )


HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}


# -- async ---------------------------------------------------------------------------------------
async def run_concurrently(call: Callable[[], Awaitable[Any]], calls: int, workers: int) -> float:
    """req/s for ``calls`` calls made by ``workers`` tasks."""
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return calls / (time.perf_counter() - started)


async def bench_async(
    model: OpenAIChatCompletion, url: str, calls: int, workers: int, rounds: int
) -> dict[str, list[float]]:
    body = request_body()
    results: dict[str, list[float]] = {"model": [], "bare": []}
    async with aiohttp.ClientSession() as session:

        async def bare() -> Any:
            async with session.post(url, data=body, headers=HEADERS) as resp:
                return orjson.loads(await resp.read())

        async def ours() -> Any:
            return await model._acall_once(messages=PROMPT)

        for _ in range(2):
            await run_concurrently(bare, 300, workers)
            await run_concurrently(ours, 300, workers)
        for i in range(rounds):
            order = [("bare", bare), ("model", ours)]
            for name, fn in order if i % 2 == 0 else order[::-1]:
                results[name].append(await run_concurrently(fn, calls, workers))
    await _transport.aclose()
    return results


# -- sync ----------------------------------------------------------------------------------------
def per_call(fn: Callable[[], Any], calls: int) -> float:
    """Seconds per call, sequential."""
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls


def bench_sync(
    model: OpenAIChatCompletion, url: str, calls: int, rounds: int
) -> dict[str, list[float]]:
    body = request_body()
    manager = urllib3.PoolManager(maxsize=4, retries=False)
    pool = urllib3.connection_from_url(url, maxsize=4)
    path = urllib3.util.parse_url(url).request_uri
    contenders: dict[str, Callable[[], Any]] = {
        "model": lambda: model._call_once(messages=PROMPT),
        "bare": lambda: orjson.loads(
            pool.urlopen("POST", path, body=body, headers=HEADERS, retries=False).data
        ),
        "poolmanager": lambda: orjson.loads(
            manager.request("POST", url, body=body, headers=HEADERS).data
        ),
    }
    client = None
    try:
        import httpx

        client = httpx.Client()
        contenders["httpx"] = lambda: orjson.loads(
            client.post(url, content=body, headers=HEADERS).content  # type: ignore[union-attr]
        )
    except ImportError:
        pass
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():
        per_call(fn, 300)
    items = list(contenders.items())
    for i in range(rounds):
        for name, fn in items if i % 2 == 0 else items[::-1]:
            results[name].append(per_call(fn, calls))
    if client is not None:
        client.close()
    manager.clear()
    pool.close()
    return results


# -- report --------------------------------------------------------------------------------------
def paired_ratio(results: dict[str, list[float]], name: str, base: str) -> float:
    """Median of per-round ratios: each round's contenders ran back to back, so a ratio is
    immune to the load drifting between rounds (the machine is shared)."""
    return statistics.median(a / b for a, b in zip(results[name], results[base], strict=True))


def report(
    args: argparse.Namespace, async_res: dict[str, list[float]], sync_res: dict[str, list[float]]
) -> str:
    med = statistics.median
    a_model, a_bare = med(async_res["model"]), med(async_res["bare"])
    s_model, s_bare = med(sync_res["model"]), med(sync_res["bare"])
    a_ratio = paired_ratio(async_res, "model", "bare")
    s_ratio = paired_ratio(sync_res, "model", "bare")
    rows = [
        "| measurement | ours | bare client | ratio (ours/bare) | target |",
        "|---|---|---|---|---|",
        f"| async, {args.calls} calls at concurrency {args.concurrency} "
        f"| {a_model:,.0f} req/s | {a_bare:,.0f} req/s (aiohttp POST + orjson) | {a_ratio:.2f}x "
        f"| >= 0.60x {'met' if a_ratio >= 0.6 else 'MISSED'} |",
        f"| sync, sequential | {s_model * 1e6:,.0f} µs/call | {s_bare * 1e6:,.0f} µs/call "
        f"(urllib3 pool.urlopen + orjson) | {s_ratio:.2f}x "
        f"| <= 1.25x {'met' if s_ratio <= 1.25 else 'MISSED'} |",
    ]
    others = [("poolmanager", "urllib3 PoolManager.request"), ("httpx", "httpx.Client.post")]
    for name, label in others:
        if name in sync_res:
            rows.append(
                f"| sync reference: {label} | | {med(sync_res[name]) * 1e6:,.0f} µs/call "
                f"| {paired_ratio(sync_res, name, 'bare'):.2f}x of pool.urlopen | |"
            )

    def fmt(values: list[float], scale: float = 1.0) -> str:
        return ", ".join(f"{v * scale:,.0f}" for v in values)

    spread = (
        f"Per round, async req/s: ours {fmt(async_res['model'])}; bare {fmt(async_res['bare'])}. "
        f"Sync µs/call: ours {fmt(sync_res['model'], 1e6)}; bare {fmt(sync_res['bare'], 1e6)}. "
        "The machine is shared with other work, which is why rounds drift and why ratios "
        "are taken per round."
    )
    machine = (
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"urllib3 {urllib3.__version__}, {os.cpu_count()} CPUs shared with the upstream "
        "(`tests/upstream.py`, started in a separate process so it does not share our GIL)."
    )
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: `{COMMAND}`. Each round runs the contenders back to back (order "
            f"alternating); a ratio is the median of the per-round ratios ({args.rounds} async "
            f"rounds of {args.calls} calls, {args.sync_rounds} sync rounds of {args.sync_calls}), "
            "the absolute figures the median rounds.",
            "",
            *rows,
            "",
            spread,
            "",
            machine,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sync-calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7, help="async rounds")
    parser.add_argument("--sync-rounds", type=int, default=15)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()

    proc, base_url = start_upstream()
    try:
        os.environ["OPENAI_API_KEY"] = KEY
        model = Model.chat_completion(f"openai/{MODEL_ID}", base_url=base_url, max_retries=0)
        assert isinstance(model, OpenAIChatCompletion)
        url = base_url + "/chat/completions"
        async_res = asyncio.run(bench_async(model, url, args.calls, args.concurrency, args.rounds))
        sync_res = bench_sync(model, url, args.sync_calls, args.sync_rounds)
    finally:
        proc.terminate()
        proc.wait(10)
        _transport.close_pools()
    text = report(args, async_res, sync_res)
    print(text)
    if args.write:
        write_section(SECTION, text)
        print(f"updated {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
