"""Chaos under load: a primary that dies mid-run, and 1,000 concurrent requests with 30% of
upstream answers failing. Every request gets an answer or a well-formed error."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.server.harness import chat_gateway, start
from tests.upstream import Reply, Upstream

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


async def call(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(url, json=body) as resp:
        data = await resp.read()
        return resp.status, orjson.loads(data)


async def load(url: str, n: int, concurrency: int, stream_every: int = 0) -> list[tuple[int, Any]]:
    sem = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int) -> tuple[int, Any]:
            async with sem:
                return await call(session, url, CHAT)

        return await asyncio.gather(*(one(i) for i in range(n)))


@pytest.mark.slow
def test_the_primary_dies_mid_run_and_no_client_request_fails(tmp_path: Path) -> None:
    primary, fallback = Upstream(record=False).start(), Upstream(record=False).start()
    primary.set_default(Reply(delay=0.01))
    server = start(
        tmp_path, {"gateways": {"chat": chat_gateway(primary.base_url, fallback.base_url)}}
    )
    url = server.base_url + "/chat/completions"

    async def run() -> list[tuple[int, Any]]:
        task = asyncio.ensure_future(load(url, 600, 16))
        await asyncio.to_thread(primary.wait_for, lambda u: u.count("chat") >= 150, 30)
        await asyncio.to_thread(primary.stop)  # the primary dies under load
        return await task

    try:
        results = asyncio.run(run())
        assert [s for s, _ in results if s != 200] == []
        assert primary.count("chat") >= 150 and fallback.count("chat") > 0
        texts = {body["choices"][0]["message"]["content"] for _, body in results}
        assert texts == {"Hello from m0", "Hello from m1"}
    finally:
        server.stop()
        fallback.stop()


@pytest.mark.slow
def test_1000_concurrent_requests_with_30_percent_upstream_failures(tmp_path: Path) -> None:
    rng = random.Random(12)
    a, b = Upstream(record=False).start(), Upstream(record=False).start()
    for up in (a, b):
        failures = [Reply(status=rng.choice([500, 502, 503, 429])) for _ in range(600)]
        replies = failures + [Reply() for _ in range(1400)]
        rng.shuffle(replies)
        up.script(replies)
    server = start(tmp_path, {"gateways": {"chat": chat_gateway(a.base_url, b.base_url)}})
    try:
        results = asyncio.run(load(server.base_url + "/chat/completions", 1000, 1000))
        assert len(results) == 1000
        ok = 0
        for status, body in results:
            if status == 200:
                assert body["model"] == "chat" and body["choices"][0]["message"]["content"]
                ok += 1
            else:
                assert status in (429, 502, 503, 504), (status, body)
                assert set(body["error"]) == {"message", "type", "param", "code"}
                assert body["error"]["message"]
        # A miss is a request both deployments failed, or one whose fallback failed while the
        # other's breaker was open after a burst of failures: about 9% on a quiet machine
        # (907 answered), up to 24% when timing packs the failures (762 seen under load).
        assert ok >= 700
        live = server.proc.poll() is None
        assert live
    finally:
        server.stop()
        a.stop()
        b.stop()
