"""OpenTelemetry spans for gateway calls (the ``[tracing]`` extra: ``opentelemetry-api``).

``ModelGateway(models, tracing=True)`` makes each call a span and each attempt (and skip) a
child span, following the OpenTelemetry GenAI semantic conventions (``gen_ai.operation.name``,
``gen_ai.system``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens`` / ``output_tokens``, ``error.type``) plus the gateway's own
``msgflux.*`` attributes (deployment, attempt number, fallback, hedge, skipped reason, cost).

The spans are built once, when the call completes, from its
:class:`~msgflux.models.gateway.record.CallRecord` with the start and end times the attempts
recorded, so nothing runs per attempt or per chunk, and a gateway without ``tracing=`` never
imports OpenTelemetry. Tracing is opt-in per gateway (``True``: the global tracer provider;
or pass a ``Tracer`` or a ``TracerProvider``). Prompts and answers are left out unless
``trace_content=True`` (then ``gen_ai.input.messages`` / ``gen_ai.output.messages``, with
every known secret scrubbed).
"""

from __future__ import annotations

import json
from typing import Any

from msgflux._secrets import scrub
from msgflux.exceptions import Attempt
from msgflux.models.gateway.record import CallRecord

__all__ = ["Tracer"]

_NS = 1_000_000_000


def _ns(seconds: float) -> int:
    return int(seconds * _NS)


def _json(value: Any) -> str:
    return scrub(json.dumps(value, default=str, ensure_ascii=False))


class Tracer:
    """Turns call records into spans (built by ``ModelGateway(tracing=...)``)."""

    __slots__ = ("_context", "_otel", "_status", "content", "trace")

    def __init__(self, otel_tracer: Any, content: bool = False) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import Status, StatusCode

        self.trace = trace
        self._context = context
        self._otel = otel_tracer
        self._status = Status(StatusCode.ERROR)
        self.content = content

    @classmethod
    def coerce(cls, value: Any, content: Any) -> Tracer | None:
        """The tracer for ``tracing=value`` (None: tracing off)."""
        if content is not True and content is not False:
            raise TypeError(f"trace_content must be a bool, got {content!r}")
        if value is None or value is False:
            if content:
                raise ValueError("trace_content=True needs tracing= (True, a Tracer or a provider)")
            return None
        if isinstance(value, Tracer):
            return value
        try:
            from opentelemetry import trace
        except ImportError as exc:
            raise ImportError(
                'tracing= needs OpenTelemetry: install "msgflux[tracing]" (opentelemetry-api)'
            ) from exc
        if value is True:
            otel = trace.get_tracer("msgflux")
        elif callable(getattr(value, "start_span", None)):
            otel = value
        elif callable(getattr(value, "get_tracer", None)):
            otel = value.get_tracer("msgflux")
        else:
            raise TypeError(
                "tracing must be True, False, None, an OpenTelemetry Tracer or TracerProvider, "
                f"got {value!r}"
            )
        return cls(otel, content)

    def capture(self) -> Any:
        """The current context (a stream's spans are children of the span it started in)."""
        return self._context.get_current()

    def export(
        self, record: CallRecord, content: tuple[Any, Any] | None = None, context: Any = None
    ) -> None:
        """The call's span and its attempts' child spans, ended at once."""
        op = record.kind
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": op,
            "msgflux.stream": record.stream,
            "msgflux.attempts": len(record.attempts),
            "msgflux.fallbacks": record.fallbacks,
            "msgflux.hedged": record.hedged,
            "msgflux.outcome": record.outcome,
        }
        if record.gateway is not None:
            attrs["msgflux.gateway"] = record.gateway
        if record.deployment is not None:
            attrs["msgflux.deployment"] = record.deployment
            attrs["gen_ai.system"] = record.provider
            attrs["gen_ai.request.model"] = record.model_id
            attrs["gen_ai.response.model"] = record.model_id
        _usage(attrs, record)
        if record.cost is not None:
            attrs["msgflux.cost_usd"] = record.cost
        if record.ttft is not None:
            attrs["msgflux.time_to_first_chunk"] = record.ttft
        if record.error is not None:
            attrs["error.type"] = record.error
        if self.content and content is not None:
            attrs["gen_ai.input.messages"] = _json(content[0])
            attrs["gen_ai.output.messages"] = _json([{"role": "assistant", "content": content[1]}])
        name = f"{op} {record.gateway}" if record.gateway else op
        # The call's times come from the perf clock, an attempt's from the wall clock: keep
        # the parent around its children whatever the clocks' microseconds of disagreement.
        start = min([record.started, *(a.started_at for a in record.attempts)])
        end = max([record.started + record.duration, *_ends(record.attempts)])
        otel = self._otel
        trace = self.trace
        span = otel.start_span(
            name,
            context=context,
            kind=trace.SpanKind.INTERNAL,
            attributes=_scrubbed(attrs),
            start_time=_ns(start),
        )
        parent = trace.set_span_in_context(span, context)
        first = record.attempts[0].model_name if record.attempts else None
        winner = _winner(record)
        for attempt in record.attempts:
            self._attempt(
                attempt, op, parent, attempt.model_name != first, attempt is winner, record
            )
        if record.error is not None:
            span.set_status(self._status)
        span.end(end_time=_ns(end))

    def _attempt(
        self,
        a: Attempt,
        op: str,
        parent: Any,
        fallback: bool,
        won: bool,
        record: CallRecord,
    ) -> None:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": op,
            "gen_ai.system": a.provider,
            "gen_ai.request.model": a.model_id,
            "msgflux.deployment": a.model_name,
            "msgflux.attempt": a.attempt,
            "msgflux.fallback": fallback,
            "msgflux.hedge": a.hedge,
        }
        if a.skipped is not None:
            attrs["msgflux.skipped"] = a.skipped
        if a.cancelled:
            attrs["msgflux.cancelled"] = True
        if a.exception is not None:
            attrs["error.type"] = type(a.exception).__name__
        if won:
            attrs["gen_ai.response.model"] = a.model_id
            _usage(attrs, record)
        span = self._otel.start_span(
            f"{op} {a.model_id}",
            context=parent,
            kind=self.trace.SpanKind.CLIENT,
            attributes=_scrubbed(attrs),
            start_time=_ns(a.started_at),
        )
        if a.exception is not None:
            span.set_status(self._status)
        span.end(end_time=_ns(a.started_at + a.duration))


def _ends(attempts: tuple[Attempt, ...]) -> list[float]:
    return [a.started_at + a.duration for a in attempts]


def _usage(attrs: dict[str, Any], record: CallRecord) -> None:
    if record.input_tokens is not None:
        attrs["gen_ai.usage.input_tokens"] = record.input_tokens
    if record.output_tokens is not None:
        attrs["gen_ai.usage.output_tokens"] = record.output_tokens


def _winner(record: CallRecord) -> Attempt | None:
    if record.deployment is None:
        return None
    for a in reversed(record.attempts):
        if (
            a.model_name == record.deployment
            and a.exception is None
            and a.skipped is None
            and not a.cancelled
        ):
            return a
    return None


def _scrubbed(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attribute values as OpenTelemetry takes them, every text scrubbed of secrets."""
    return {k: scrub(v) if isinstance(v, str) else v for k, v in attrs.items() if v is not None}
