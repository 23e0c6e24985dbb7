"""What cost, call records, metrics and tracing add per gateway call (issue 14, library).

    .venv/bin/python -m bench.observability            # print
    .venv/bin/python -m bench.observability --write    # ... and update BENCHMARKS.md

Two in-process deployments that answer at once with a usage report (so the gateway's own
work is all there is to measure); per configuration, time per call through the gateway minus
a direct call of the model, best of several rounds, all configurations in the same run:

* plain: no hook, no metrics, no tracing (cost is still computed: it is in every answer);
* ``on_complete``: a hook that does nothing (the cost of building the record);
* metrics: ``on_complete=GatewayMetrics(...).observe``;
* tracing: ``tracing=`` an SDK TracerProvider whose processor drops the spans;
* metrics and tracing together.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import Instant, write_section
from msgflux import ModelGateway
from msgflux.models.response import ModelResponse

SECTION = "## Cost, records, metrics and tracing (issue 14, library)"
COMMAND = ".venv/bin/python -m bench.observability --write"
USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 30,
    "prompt_tokens_details": {"cached_tokens": 20},
}


class Priced(Instant):
    """Answers at once, reporting usage; priced by genai-prices as OpenAI's ``model_id``."""

    provider = "openai"

    def __call__(self, **kwargs: Any) -> ModelResponse:
        resp = super().__call__(**kwargs)
        resp.metadata["usage"] = USAGE
        return resp


def per_call(fn: Callable[..., Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(messages="hi")
    return (time.perf_counter() - start) / calls


def configurations() -> dict[str, dict[str, Any]]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from prometheus_client import CollectorRegistry

    from msgflux.metrics import GatewayMetrics

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    both = GatewayMetrics(registry=CollectorRegistry())
    return {
        "plain": {},
        "on_complete (no-op hook)": {"on_complete": lambda record: None},
        "metrics": {"on_complete": GatewayMetrics(registry=CollectorRegistry()).observe},
        "tracing": {"tracing": provider},
        "metrics + tracing": {"on_complete": both.observe, "tracing": provider},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    model = Priced("gpt-4o-mini")
    gateways = {
        name: ModelGateway(
            [
                {"model_name": "primary", "model": model},
                {"model_name": "fallback", "model": Priced("gpt-4o")},
            ],
            name="bench",
            **options,
        )
        for name, options in configurations().items()
    }
    assert gateways["plain"](messages="hi").metadata.gateway["cost"] > 0
    best = {name: float("inf") for name in gateways}
    direct = float("inf")
    for _ in range(args.rounds):  # interleaved, so drift on the shared machine hits all alike
        direct = min(direct, per_call(model._call_once, args.calls))
        for name, gateway in gateways.items():
            best[name] = min(best[name], per_call(gateway, args.calls))
    plain = best["plain"] - direct
    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}` (Python {'.'.join(map(str, sys.version_info[:3]))}, 2 shared "
        f"cores). Sync calls, best of {args.rounds} interleaved rounds of {args.calls}; two "
        "in-process deployments answering at once with a usage report, so every answer is "
        "priced (gpt-4o-mini from genai-prices).",
        "",
        "| configuration | overhead per call | vs plain |",
        "|---|---|---|",
    ]
    for name, value in best.items():
        added = value - direct
        lines.append(f"| {name} | {added * 1e6:.1f} µs | {added / plain:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
