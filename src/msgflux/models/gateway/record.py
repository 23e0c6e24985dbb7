"""One :class:`CallRecord` per gateway call: what an access log, metrics and traces need.

A record is built when the call completes (a stream: when it ended, finished, broke or was
closed early by its reader) from what the call already kept (its attempts, the winner, the
usage and cost in ``metadata.gateway``), so nothing runs per attempt or per chunk. It goes to
the ``on_complete`` hooks (and the tracer) exactly once; the raw path also hands it out as
``RawAnswer.record`` / ``RawStream.record``. A hook that raises is logged and ignored.

A call rejected for its arguments (a ``TypeError``/``ValueError`` before planning) was never
made and has no record; a call refused before any attempt (every deployment outside its time
window) has one, with no attempts. msgflux's routed context methods
(``count_context_tokens``, ...) have none.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from msgflux._secrets import scrub
from msgflux._time import Clock
from msgflux.exceptions import Attempt
from msgflux.models.gateway.engine import CallState

__all__ = ["OUTCOMES", "CallRecord", "Completion", "RecordExporter", "Recorder", "StreamEnd"]

logger = logging.getLogger("msgflux.gateway")

OUTCOMES = ("success", "error", "cancelled")

Completion = Callable[["CallRecord"], Any]
"""An ``on_complete`` hook: called with each call's record."""


@dataclasses.dataclass(frozen=True)
class CallRecord:
    """How one gateway call went, content-free (no prompt, no answer, no key)."""

    gateway: str | None
    """The gateway's ``name=`` (None when it has none)."""
    kind: str
    """``"chat"``, ``"embeddings"``, ... (the model type for a gateway of other models)."""
    stream: bool
    deployment: str | None
    """The ``model_name`` of the deployment that answered (a broken or closed stream: that
    was streaming; None: none answered)."""
    provider: str | None
    model_id: str | None
    attempts: tuple[Attempt, ...]
    """Every attempt, skip and cancelled hedge, in order."""
    fallbacks: int
    """Deployments tried (or skipped) before the last one."""
    hedged: bool
    """The answer came from a hedge (an attempt started because an earlier one was slow)."""
    error: str | None
    """The type name of the exception the caller got (None: it got an answer)."""
    started: float
    """Epoch seconds when the call began."""
    duration: float
    """Seconds from the call's start to its end (a stream: to its last chunk)."""
    ttft: float | None
    """A stream's seconds from the call's start to its first content (None: not a stream)."""
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    cost: float | None
    """USD, from the reported usage and the deployment's price (None: unknown)."""
    cancelled: bool = False
    """The caller went away: a stream closed before its end, a cancelled task."""
    cache: str | None = None
    """The response cache's verdict: ``"hit"`` (answered from the cache: no attempt, nothing
    spent), ``"miss"`` or ``"bypass"``; None for a gateway without a cache."""
    cost_saved: float | None = None
    """A cache hit: what the answer cost when a deployment gave it, at today's price (USD)."""

    @property
    def outcome(self) -> str:
        """``"success"``, ``"error"`` or ``"cancelled"``."""
        if self.cancelled:
            return "cancelled"
        return "success" if self.error is None else "error"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (attempts as :meth:`~msgflux.exceptions.Attempt.as_dict`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["attempts"] = [a.as_dict() for a in self.attempts]
        out["outcome"] = self.outcome
        return out


class RecordExporter(Protocol):
    """What a :class:`Recorder` hands records to besides its hooks: a tracer.

    :class:`msgflux.tracing.Tracer` is one. Declared here, by the side that calls it, so that
    records need nothing from the tracing module (which imports :class:`CallRecord`).
    """

    content: bool
    """It records prompts and answers (the recorder then passes them)."""

    def capture(self) -> Any:
        """The current context (a stream's record is exported under the span it began in)."""
        ...

    def export(
        self, record: CallRecord, content: tuple[Any, Any] | None = None, context: Any = None
    ) -> None: ...


def _fallbacks(attempts: Sequence[Attempt], last: str | None) -> int:
    seen = {a.model_name for a in attempts if not a.cancelled}
    seen.discard(last)
    return len(seen)


class Recorder:
    """Builds a gateway's records and delivers them (one per gateway)."""

    __slots__ = ("active", "clock", "hooks", "kind", "name", "tracer")

    def __init__(
        self,
        name: str | None,
        kind: str,
        clock: Clock,
        hooks: Sequence[Completion],
        tracer: RecordExporter | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.clock = clock
        self.hooks = tuple(hooks)
        self.tracer = tracer
        self.active = bool(self.hooks) or tracer is not None
        """Someone wants every record (hooks, a tracer); else only the raw path builds one."""

    def build(
        self,
        call: CallState | None,
        stream: bool,
        ended: float,
        wall: float,
        error: BaseException | None = None,
        gateway: dict[str, Any] | None = None,
        ttft: float | None = None,
    ) -> CallRecord:
        """The record of ``call`` ended at perf time ``ended`` (epoch ``wall``); ``gateway``
        is the answer's ``metadata.gateway`` (None: no answer)."""
        duration = 0.0 if call is None else max(ended - call.started, 0.0)
        attempts = () if call is None else tuple(call.attempts)
        cancelled = error is not None and not isinstance(error, Exception)
        winner = call.winner if call is not None else None
        usage = gateway.get("usage") if gateway is not None else None
        last = winner.model_name if winner is not None else None
        if last is None and attempts:
            last = attempts[-1].model_name
        return CallRecord(
            self.name,
            self.kind,
            stream,
            winner.model_name if winner is not None else None,
            winner.provider if winner is not None else None,
            winner.model_id if winner is not None else None,
            attempts,
            _fallbacks(attempts, last),
            winner.hedge if winner is not None else False,
            None if error is None or cancelled else type(error).__name__,
            wall - duration,
            duration,
            ttft,
            usage["input_tokens"] if usage else None,
            usage["output_tokens"] if usage else None,
            usage["cached_input_tokens"] if usage else None,
            gateway.get("cost") if gateway is not None else None,
            cancelled,
            gateway.get("cache") if gateway is not None else None,
        )

    def replayed(
        self, began: float, stream: bool, who: tuple[str, str], gateway: dict[str, Any]
    ) -> CallRecord:
        """The record of an answer a wrapper gave (a cache hit) to a call that began at perf
        time ``began``: no attempt, nothing spent; delivered to the hooks at once."""
        ended, wall = self.now()
        duration = max(ended - began, 0.0)
        record = CallRecord(
            self.name,
            self.kind,
            stream,
            gateway["model_name"],
            who[0],
            who[1],
            (),
            0,
            False,
            None,
            wall - duration,
            duration,
            duration if stream else None,
            0,
            0,
            0,
            0.0,
            False,
            gateway.get("cache"),
            gateway.get("cost_saved"),
        )
        if self.active:
            self.deliver(record)
        return record

    def now(self) -> tuple[float, float]:
        clock = self.clock
        return clock.perf(), clock.time()

    def deliver(
        self,
        record: CallRecord,
        content: Callable[[], tuple[Any, Any]] | None = None,
        context: Any = None,
    ) -> None:
        """Hand ``record`` to the tracer and the hooks; ``content`` gives (input, output) for
        a tracer that records content, ``context`` the span's parent (None: the current)."""
        tracer = self.tracer
        if tracer is not None:
            try:
                pair = content() if content is not None and tracer.content else None
                tracer.export(record, pair, context)
            except Exception as exc:
                logger.error("gateway tracing failed: %s; ignoring it", scrub(repr(exc)))
        for hook in self.hooks:
            try:
                hook(record)
            except Exception as exc:
                logger.error(
                    "gateway on_complete hook %r raised %s; ignoring it", hook, scrub(repr(exc))
                )

    def failed(self, call: CallState | None, stream: bool, error: BaseException) -> None:
        """A call raised (``call`` None: refused before it was planned)."""
        if self.active:
            self.deliver(self.build(call, stream, *self.now(), error=error))


class StreamEnd:
    """A committed stream's record, made once whichever way the stream ends."""

    __slots__ = ("call", "content_in", "context", "record", "recorder", "ttft")

    def __init__(
        self,
        recorder: Recorder,
        call: CallState,
        ttft: float,
        content_in: Callable[[], Any] | None = None,
    ) -> None:
        self.recorder = recorder
        self.call = call
        self.ttft = ttft
        self.content_in = content_in
        """The call's input, for a tracer that records content."""
        tracer = recorder.tracer
        self.context = tracer.capture() if tracer is not None else None
        self.record: CallRecord | None = None
        """Set when the stream ended."""

    def __call__(
        self,
        error: BaseException | None,
        gateway: dict[str, Any] | None,
        text: Sequence[str] = (),
    ) -> None:
        """The stream ended with ``error`` (None: finished; a ``GeneratorExit`` or
        ``CancelledError``: its reader left) after ``text``; ``gateway`` is its final
        ``metadata.gateway``."""
        if self.record is not None:
            return
        recorder = self.recorder
        ended, wall = recorder.now()
        self.record = recorder.build(
            self.call, True, ended, wall, error, gateway if error is None else None, self.ttft
        )
        if recorder.active:
            content_in = self.content_in
            content = None if content_in is None else (lambda: (content_in(), "".join(text)))
            recorder.deliver(self.record, content, self.context)
