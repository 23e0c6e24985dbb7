"""``msgflux serve`` under an OpenTelemetry SDK tracer provider whose exporter drops the spans.

    python -m bench.traced_serve --config FILE --port PORT

What ``opentelemetry-instrument`` (or a user's own setup) does before the server starts: set a
global ``TracerProvider`` with a ``BatchSpanProcessor``. Gateways with ``tracing: true`` then
build, end and queue every span; the exporter drops them, so what is measured is the server's
and the SDK's work, not a collector's. Gateways without ``tracing`` ignore it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class Drop(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    from msgflux.cli import app

    app(["serve", *sys.argv[1:]])


if __name__ == "__main__":
    main()
