"""Gateway logic overhead per call: two in-process deployments that answer at once.

Overhead = time per call through ModelGateway minus time per direct call of the same model,
both measured in this run (best of several rounds, to drop scheduler noise).

    .venv/bin/python -m bench.gateway_overhead [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from msgflux.models.base import BaseModel
from msgflux.models.gateway import ModelGateway
from msgflux.models.response import ModelResponse
from msgflux.models.types import ChatCompletionModel


class Instant(BaseModel, ChatCompletionModel):
    provider = "bench"

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def __call__(self, **kwargs: Any) -> ModelResponse:
        resp = ModelResponse()
        resp.set_response_type("text_generation")
        resp.add("ok")
        return resp

    async def acall(self, **kwargs: Any) -> ModelResponse:
        return self(**kwargs)


def best_of(rounds: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(rounds))


def per_call_sync(fn: Callable[..., Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(messages="hi")
    return (time.perf_counter() - start) / calls


async def per_call_async(fn: Callable[..., Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await fn(messages="hi")
    return (time.perf_counter() - start) / calls


def build(**options: Any) -> tuple[ModelGateway, Instant]:
    primary = Instant("primary")
    gateway = ModelGateway(
        [
            {"model_name": "primary", "model": primary},
            {"model_name": "fallback", "model": Instant("fallback")},
        ],
        **options,
    )
    return gateway, primary


def measure(calls: int, rounds: int, **options: Any) -> dict[str, float]:
    gateway, model = build(**options)
    direct_sync = best_of(rounds, lambda: per_call_sync(model._call_once, calls))
    gw_sync = best_of(rounds, lambda: per_call_sync(gateway, calls))
    loop = asyncio.new_event_loop()
    try:
        direct_async = best_of(
            rounds, lambda: loop.run_until_complete(per_call_async(model._acall_once, calls))
        )
        gw_async = best_of(
            rounds, lambda: loop.run_until_complete(per_call_async(gateway.acall, calls))
        )
    finally:
        loop.close()
    return {
        "sync_us": (gw_sync - direct_sync) * 1e6,
        "async_us": (gw_async - direct_async) * 1e6,
        "direct_sync_us": direct_sync * 1e6,
        "direct_async_us": direct_async * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    r = measure(args.calls, args.rounds)
    print(f"direct call: sync {r['direct_sync_us']:.2f} us, async {r['direct_async_us']:.2f} us")
    print(
        f"gateway overhead: sync {r['sync_us']:.2f} us/call (target <= 20), "
        f"async {r['async_us']:.2f} us/call (target <= 30)"
    )


if __name__ == "__main__":
    main()
