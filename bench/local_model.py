"""Local model figures for BENCHMARKS.md: load time, time to first token, tokens/s, and the
latency of falling back from a failing cloud deployment to the first local token.

    .venv/bin/python -m bench.local_model            # the figures in BENCHMARKS.md
    .venv/bin/python -m bench.local_model --runs 20  # more samples

Run it in a fresh process: the first section measures a cold load (import + weights).
Every upstream is on 127.0.0.1: a closed port (connection refused), or tests/upstream.py
answering 500.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import msgflux as mf
from msgflux.models.gateway import ModelGateway
from msgflux.models.providers.local import LocalChatCompletion, loaded_models

MODEL = "local/smollm2-135m-instruct"
STORY = "Write a long story about a lighthouse keeper and a storm."


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def median(values: list[float]) -> float:
    return statistics.median(values)


def ttft(model: LocalChatCompletion, question: str) -> float:
    started = time.perf_counter()
    stream = model(messages=question, stream=True)
    next(iter(stream))
    elapsed = time.perf_counter() - started
    stream.close()
    return elapsed


def bench_load() -> tuple[LocalChatCompletion, dict[str, float]]:
    started = time.perf_counter()
    import llama_cpp  # noqa: F401  (timed on purpose: the first call pays for it)

    imported = time.perf_counter()
    model = mf.Model.chat_completion(MODEL, max_tokens=60, temperature=0.2)
    assert isinstance(model, LocalChatCompletion)
    model.load()
    loaded = time.perf_counter()
    return model, {"import": imported - started, "load": loaded - imported}


def bench_generation(model: LocalChatCompletion, runs: int) -> dict[str, float]:
    firsts = [ttft(model, f"Question {i}: who was Frank Rosenblatt?") for i in range(runs)]
    totals: list[float] = []
    decode_rates: list[float] = []
    for i in range(runs):
        stream = model(messages=f"{STORY} ({i})", stream=True)
        started = time.perf_counter()
        first_at = 0.0
        for count, _ in enumerate(stream, 1):
            if count == 1:
                first_at = time.perf_counter()
        ended = time.perf_counter()
        tokens = stream.metadata.usage["completion_tokens"]
        if tokens == 60:
            totals.append(ended - started)
            decode_rates.append((tokens - 1) / (ended - first_at))
    if not totals:
        raise SystemExit("the model stopped before 60 tokens every time; change STORY")
    return {
        "ttft": median(firsts),
        "ttft_p90": sorted(firsts)[int(0.9 * (len(firsts) - 1))],
        "call_60": median(totals),
        "tps_end_to_end": 60 / median(totals),
        "tps_decode": median(decode_rates),
        "samples": len(totals),
    }


def gateway_for(cloud: Any, local: LocalChatCompletion) -> ModelGateway:
    return ModelGateway(
        [{"model_name": "cloud", "model": cloud}, {"model_name": "local", "model": local}]
    )


def fallback_latency(
    gateway: ModelGateway, local: LocalChatCompletion, runs: int
) -> dict[str, float]:
    """From the gateway call to the first local token (streaming), sync and async.

    Each gateway call is paired with a direct call to the local model on a prompt of the same
    length, so the difference is what the failing cloud attempt and the gateway add.
    """
    direct: list[float] = []
    sync_times: list[float] = []
    cloud_fail: list[float] = []
    for i in range(runs):
        direct.append(ttft(local, f"A{i:03d}: who was Frank Rosenblatt?"))
        started = time.perf_counter()
        stream = gateway(messages=f"B{i:03d}: who was Frank Rosenblatt?", stream=True)
        next(iter(stream))
        sync_times.append(time.perf_counter() - started)
        meta = stream.metadata.gateway
        assert meta["model_name"] == "local", meta
        cloud_fail.append(meta["history"][0]["duration"])
        stream.close()

    async def run_async() -> list[float]:
        times: list[float] = []
        for i in range(runs):
            started = time.perf_counter()
            stream = await gateway.acall(
                messages=f"C{i:03d}: who was Frank Rosenblatt?", stream=True
            )
            chunks = stream.consume()
            await chunks.__anext__()
            times.append(time.perf_counter() - started)
            await chunks.aclose()
        return times

    async_times = asyncio.run(run_async())
    return {
        "direct": median(direct),
        "sync": median(sync_times),
        "async": median(async_times),
        "cloud_fail": median(cloud_fail),
    }


def fallback_cases(up_url: str, refused_url: str) -> list[tuple[str, str | None, str | None]]:
    """``(label, OPENAI_API_KEY, base_url)`` of each failing cloud deployment."""
    return [
        ("no OPENAI_API_KEY (AuthenticationError)", None, refused_url),
        ("closed port (connection refused)", "sk-bench", refused_url),
        ("upstream answering 500", "sk-bench", up_url),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    model, load = bench_load()
    threads = loaded_models()[0]["n_threads"]
    print(f"machine: {os.cpu_count()} CPUs, llama.cpp threads: {threads}")
    print(f"import llama_cpp: {ms(load['import'])}   load weights + context: {ms(load['load'])}")

    gen = bench_generation(model, args.runs)
    print(
        f"time to first token (median of {args.runs}): {ms(gen['ttft'])} "
        f"(p90 {ms(gen['ttft_p90'])})"
    )
    print(
        f"60 tokens: {ms(gen['call_60'])} per call = {gen['tps_end_to_end']:.0f} tokens/s "
        f"end to end, {gen['tps_decode']:.0f} tokens/s decoding "
        f"(median of {gen['samples']:.0f})"
    )

    from tests.upstream import Reply, Upstream, closed_port_url

    print(f"fallback to the first local token (median of {args.runs}, streaming):")
    with Upstream() as up:
        up.set_default(Reply(status=500))
        for label, key, base_url in fallback_cases(up.base_url, closed_port_url()):
            if key is None:
                os.environ.pop("OPENAI_API_KEY", None)
            else:
                os.environ["OPENAI_API_KEY"] = key
            cloud = mf.Model.chat_completion("openai/gpt-4.1-nano", base_url=base_url)
            r = fallback_latency(gateway_for(cloud, model), model, args.runs)
            print(
                f"  {label}: cloud attempt failed in {ms(r['cloud_fail'])}; first local token "
                f"after {ms(r['sync'])} sync, {ms(r['async'])} async "
                f"(local alone, same run: {ms(r['direct'])})"
            )


if __name__ == "__main__":
    main()
