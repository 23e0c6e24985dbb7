"""msgflux.tracing: spans checked with the OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import msgflux as mf
from msgflux.exceptions import ModelRouterError
from tests.conftest import TEST_KEYS
from tests.observed import pair
from tests.upstream import Reply, Upstream

USAGE = {"prompt_tokens": 7, "completion_tokens": 3}


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_a_call_is_a_span_and_each_attempt_a_child_span(
    upstream_env: Upstream, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    upstream_env.set_default(Reply(usage=USAGE))
    upstream_env.script(Reply(status=500), model="gpt-4o")
    pair(upstream_env, tracing=provider)(messages="hi")
    finished = exporter.get_finished_spans()
    [call] = [s for s in finished if s.parent is None]
    attempts = sorted((s for s in finished if s.parent is not None), key=lambda s: s.start_time)
    assert call.name == "chat chat" and call.kind is SpanKind.INTERNAL
    assert call.attributes is not None
    assert call.attributes["gen_ai.operation.name"] == "chat"
    assert call.attributes["msgflux.deployment"] == "backup"
    assert call.attributes["gen_ai.system"] == "openai"
    assert call.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert call.attributes["gen_ai.usage.input_tokens"] == 7
    assert call.attributes["gen_ai.usage.output_tokens"] == 3
    assert call.attributes["msgflux.fallbacks"] == 1
    assert call.attributes["msgflux.cost_usd"] > 0
    assert [s.name for s in attempts] == ["chat gpt-4o", "chat gpt-4o-mini"]
    assert all(s.parent is not None and s.parent.span_id == call.context.span_id for s in attempts)
    assert all(s.kind is SpanKind.CLIENT for s in attempts)
    first, second = (s.attributes or {} for s in attempts)
    assert first["error.type"] == "InternalServerError" and first["msgflux.fallback"] is False
    assert first["gen_ai.request.model"] == "gpt-4o" and first["msgflux.attempt"] == 1
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert second["msgflux.fallback"] is True and "error.type" not in second
    assert second["gen_ai.usage.output_tokens"] == 3
    assert call.start_time <= attempts[0].start_time <= attempts[0].end_time <= call.end_time
    assert attempts[1].end_time <= call.end_time


def test_a_failed_call_span_has_the_error_type(
    upstream_env: Upstream, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    upstream_env.set_default(Reply(status=503))
    with pytest.raises(ModelRouterError):
        pair(upstream_env, tracing=provider)(messages="hi")
    [call] = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert call.attributes is not None and call.attributes["error.type"] == "ModelRouterError"
    assert call.status.status_code is StatusCode.ERROR


def test_skips_are_child_spans_with_the_reason(
    upstream_env: Upstream, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    upstream_env.script(Reply(status=500), model="gpt-4o")
    gw = pair(upstream_env, tracing=provider, breaker={"failure_threshold": 1, "open_for": 60})
    gw(messages="hi")  # opens primary's breaker
    exporter.clear()
    gw(messages="hi")
    skipped = [
        s for s in exporter.get_finished_spans() if (s.attributes or {}).get("msgflux.skipped")
    ]
    assert [(s.attributes or {})["msgflux.skipped"] for s in skipped] == ["circuit open"]


async def test_a_stream_span_ends_when_the_stream_ended_under_its_parent(
    upstream_env: Upstream, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")
    gw = pair(upstream_env, tracing=tracer)
    with tracer.start_as_current_span("request") as parent:
        stream = await gw.acall(messages="hi", stream=True)
    assert [s.name for s in exporter.get_finished_spans()] == ["request"]
    [c async for c in stream.consume()]
    [call] = [s for s in exporter.get_finished_spans() if s.name == "chat chat"]
    assert call.parent is not None and call.parent.span_id == parent.get_span_context().span_id
    assert call.attributes is not None and call.attributes["msgflux.stream"] is True
    assert call.attributes["msgflux.time_to_first_chunk"] > 0


def test_no_content_by_default_and_content_when_enabled(
    upstream_env: Upstream, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    secret_prompt = "my zebra-quartz prompt " + TEST_KEYS["OPENAI"]
    upstream_env.set_default(Reply(text="the walrus-ochre answer"))
    pair(upstream_env, tracing=provider)(messages=secret_prompt)
    everything = repr([dict(s.attributes or {}) for s in exporter.get_finished_spans()])
    assert "zebra-quartz prompt" not in everything and "walrus-ochre answer" not in everything
    exporter.clear()
    pair(upstream_env, tracing=provider, trace_content=True)(messages=secret_prompt)
    [call] = [s for s in exporter.get_finished_spans() if s.parent is None]
    attrs = call.attributes or {}
    assert "my zebra-quartz prompt" in attrs["gen_ai.input.messages"]
    assert "the walrus-ochre answer" in attrs["gen_ai.output.messages"]
    assert TEST_KEYS["OPENAI"] not in repr(dict(attrs))  # scrubbed even when content is on


def test_stream_content_is_the_streamed_text(
    upstream_env: Upstream, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    upstream_env.set_default(Reply(chunks=["streamed ", "words"]))
    gw = pair(upstream_env, tracing=provider, trace_content=True)
    list(gw.complete({"messages": [{"role": "user", "content": "q"}], "stream": True}))
    [call] = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert "streamed words" in (call.attributes or {})["gen_ai.output.messages"]


def test_secrets_never_in_span_attributes(
    upstream_env: Upstream, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    upstream_env.set_default(Reply(status=401, error="invalid key " + TEST_KEYS["OPENAI"]))
    with pytest.raises(ModelRouterError):
        pair(upstream_env, tracing=provider)(messages="hi")
    text = repr([(s.name, dict(s.attributes or {})) for s in exporter.get_finished_spans()])
    assert TEST_KEYS["OPENAI"] not in text


@pytest.mark.parametrize(
    ("tracing", "content", "error", "match"),
    [
        ("yes", False, TypeError, "tracing must be True, False, None"),
        (None, True, ValueError, "trace_content=True needs tracing="),
        (True, "yes", TypeError, "trace_content must be a bool"),
    ],
)
def test_tracing_options_are_validated(tracing: Any, content: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        mf.ModelGateway(
            [{"model_name": "a", "model": "openai/gpt-4o"}], tracing=tracing, trace_content=content
        )


def test_tracing_true_uses_the_global_provider() -> None:
    gw = mf.ModelGateway([{"model_name": "a", "model": "openai/gpt-4o"}], tracing=True)
    assert gw._recorder.tracer is not None


def test_without_tracing_opentelemetry_is_never_imported() -> None:
    code = (
        "import sys, msgflux as mf\n"
        "gw = mf.ModelGateway([{'model_name': 'a', 'model': 'openai/gpt-4o'}], name='x')\n"
        "import msgflux.metrics, msgflux.pricing\n"
        "assert not any(m.startswith('opentelemetry') for m in sys.modules), 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_tracing_without_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match='install "msgflux\\[tracing\\]"'):
        mf.ModelGateway([{"model_name": "a", "model": "openai/gpt-4o"}], tracing=True)
