"""Hostile upstreams (the issue of that name): whatever an upstream does, a call ends by its
deadline, in bounded memory, with a typed ``msgflux.exceptions`` error that lets the next
deployment answer, and no API key is ever echoed back.

The misbehaving server is :mod:`tests.hostile` (the request's model id names the behaviour);
the healthy "good" deployment is the ``upstream`` fixture. Most tests run both call paths
(``mode``): ``sync`` calls ``model(...)``/``gateway(...)`` and iterates a stream with ``for``
(in a worker thread, so a call that hangs is reported instead of hanging the suite), ``async``
awaits ``acall`` and iterates ``consume()``. Every test that makes a call asserts a bound on
its wall time (``timeout + GRACE``) besides the module's pytest timeout; the memory cases run
the call in a child process whose address space is capped about 1 GiB above its baseline
(:func:`tests.hostile.run_in_child`) and require the typed error and a clean exit.

The last section (``test_hostile_server_*``) checks that the server really does what each
behaviour claims, with raw sockets, so a failure above is never the server's fault.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import logging
import math
import re
import secrets
import socket
import threading
import time
import types
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from msgflux import Breaker, Model, ModelGateway, ModelStreamResponse, exceptions
from msgflux.exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    AuthenticationError,
    InternalServerError,
    ModelRouterError,
    MsgFluxError,
    ProviderError,
    RateLimitError,
    StreamInterruptedError,
)
from tests.hostile import (
    MALFORMED,
    MALFORMED_SSE,
    TEXT,
    ChildResult,
    Hostile,
    crc32_repeated,
    gzip_bomb_parts,
    key_forms,
    run_in_child,
)
from tests.upstream import Reply, Upstream

pytestmark = pytest.mark.timeout(60)

KEY = f"sk-test-SECRET-{secrets.token_hex(8)}"
"""The API key every hostile model sends (and ``echo_key*`` echoes back)."""
T = 0.5
"""The per-attempt timeout of most tests, seconds."""
GRACE = 0.5
"""How long after its bound a call may take to end."""
BOUND = T + GRACE
HARD = 4.0
"""A call still running this long after it began is reported as hung (and abandoned)."""
GOOD_TEXT = "Hello from good"
"""What the ``upstream`` fixture answers for model id "good"."""
MODES = pytest.mark.parametrize("mode", ["sync", "async"])

ResponseTooLargeError: Any = getattr(exceptions, "ResponseTooLargeError", None)
"""New in the fix (a subclass of APIResponseValidationError); None until it exists."""


# -- fixtures and builders -----------------------------------------------------------------------
_WORKERS: list[threading.Thread] = []


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    server = Hostile().start()
    yield server
    broken = [r for r in server.requests if r.server_error]
    server.stop()  # aborts open connections, which also ends a sync call stuck on one
    for worker in _WORKERS:
        worker.join(5)
    _WORKERS.clear()
    close_pools()
    assert not broken, f"the hostile server itself failed: {broken}"


def close_pools() -> None:
    """Drop pooled sync connections (the transport module's name differs across versions)."""
    for name in ("msgflux._transport", "msgflux._http"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        close = getattr(module, "close_pools", None)
        if callable(close):
            close()
        return


def bad_model(hostile: Hostile, behaviour: str, **options: Any) -> Any:
    """A chat model whose upstream misbehaves as ``behaviour``."""
    return Model.chat_completion(
        f"openai_compatible/{behaviour}",
        base_url=hostile.base_url,
        api_key=KEY,
        max_retries=0,
        **options,
    )


def good_model(upstream: Upstream) -> Any:
    return Model.chat_completion("openai_compatible/good", base_url=upstream.base_url)


def fallback_gateway(
    bad: Any, upstream: Upstream, *, bad_keys: dict[str, Any] | None = None, **options: Any
) -> ModelGateway:
    """``[bad, good]`` with ``timeout=T, deadline=1.0`` unless ``options`` say otherwise."""
    options = {"timeout": T, "deadline": 1.0, **options}
    models = [
        {"model_name": "bad", "model": bad, **(bad_keys or {})},
        {"model_name": "good", "model": good_model(upstream)},
    ]
    return ModelGateway(models, **options)


def failures(gateway: ModelGateway, name: str = "bad") -> dict[str, int]:
    return dict(gateway.stats()["deployments"][name]["failures"])


def too_large() -> type:
    assert ResponseTooLargeError is not None, "msgflux.exceptions.ResponseTooLargeError is missing"
    assert issubclass(ResponseTooLargeError, APIResponseValidationError)
    return ResponseTooLargeError  # type: ignore[no-any-return]


# -- running a call with a hard cap ------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    response: Any = None
    chunks: list[Any] = dataclasses.field(default_factory=list)
    answer: Any = None
    """``consume()`` of a plain answer; the str chunks joined for a stream."""
    error: BaseException | None = None
    elapsed: float = math.inf
    """Seconds from the call to its end (a stream: to its last chunk or its error)."""
    hung: bool = False


def _read_sync(resp: Any, out: Outcome) -> None:
    out.response = resp
    if isinstance(resp, ModelStreamResponse):
        for chunk in resp:
            out.chunks.append(chunk)
        out.answer = "".join(c for c in out.chunks if isinstance(c, str))
    else:
        out.answer = resp.consume()


async def _read_async(target: Any, args: Any, kwargs: Any, out: Outcome) -> None:
    resp = await target.acall(*args, **kwargs)
    out.response = resp
    if isinstance(resp, ModelStreamResponse):
        async for chunk in resp.consume():
            out.chunks.append(chunk)
        out.answer = "".join(c for c in out.chunks if isinstance(c, str))
    else:
        out.answer = resp.consume()


async def run(mode: str, target: Any, *args: Any, hard: float = HARD, **kwargs: Any) -> Outcome:
    """Call ``target`` (a model or a gateway) on the ``mode`` path and read the answer."""
    out = Outcome()
    started = time.monotonic()
    if mode == "sync":
        done = threading.Event()

        def work() -> None:
            try:
                _read_sync(target(*args, **kwargs), out)
            except BaseException as exc:
                out.error = exc
            finally:
                out.elapsed = time.monotonic() - started
                done.set()

        worker = threading.Thread(target=work, name="hostile-call", daemon=True)
        _WORKERS.append(worker)
        worker.start()
        out.hung = not await asyncio.to_thread(done.wait, hard)
        return out
    task = asyncio.ensure_future(_read_async(target, args, kwargs, out))
    finished, _ = await asyncio.wait({task}, timeout=hard)
    if not finished:
        out.hung = True
        task.cancel()
        await asyncio.wait({task}, timeout=2)
    elif task.cancelled():
        out.error = asyncio.CancelledError("the call cancelled itself")
    else:
        out.error = task.exception()
    if task.done() and not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it
    if not out.hung:
        out.elapsed = time.monotonic() - started
    return out


def failed_in_time(out: Outcome, error: type[BaseException], bound: float = BOUND) -> Any:
    """The call ended within ``bound`` seconds with an ``error`` (a msgflux error)."""
    assert not out.hung, (
        f"still running {HARD:g}s after it began (bound {bound:g}s); "
        f"{len(out.chunks)} chunks so far: {out.chunks[:5]!r:.200}"
    )
    err = out.error
    assert err is not None, f"no error after {out.elapsed:.2f}s: answered {out.answer!r:.200}"
    assert isinstance(err, MsgFluxError), (
        f"a built-in {type(err).__module__}.{type(err).__name__} escaped: {err!r:.300}"
    )
    assert isinstance(err, error), f"expected {error.__name__}, got {type(err).__name__}: {err}"
    assert out.elapsed <= bound, f"{type(err).__name__} after {out.elapsed:.2f}s > {bound:g}s"
    return err


def answered_in_time(out: Outcome, bound: float = BOUND, by: str = "good") -> None:
    """The gateway answered from ``by`` within ``bound`` seconds."""
    assert not out.hung, f"still running {HARD:g}s after it began (bound {bound:g}s)"
    assert out.error is None, f"{type(out.error).__name__}: {out.error}"
    assert out.elapsed <= bound, f"answered after {out.elapsed:.2f}s > {bound:g}s"
    assert out.response.metadata.gateway["model_name"] == by


def failure_is(fails: dict[str, int], error: type[BaseException]) -> bool:
    """``stats()`` failures name ``error`` (or a msgflux subclass of it)."""
    for name in fails:
        cls = getattr(exceptions, name, None)
        if isinstance(cls, type) and issubclass(cls, error):
            return True
    return False


# -- 1. time: every wait is bounded ------------------------------------------------------------
@MODES
async def test_trickled_body_ends_by_timeout(hostile: Hostile, mode: str) -> None:
    out = await run(mode, bad_model(hostile, "trickle_body"), messages="hi", timeout=T)
    failed_in_time(out, APITimeoutError)
    assert await hostile.await_for(lambda h: bool(h.closed_early("trickle_body"))), (
        "the timed-out connection was left open"
    )


@MODES
async def test_trickled_speech_body_ends_by_timeout(hostile: Hostile, mode: str) -> None:
    model = Model.text_to_speech(
        "openai_compatible/trickle_body",
        base_url=hostile.base_url,
        api_key=KEY,
        max_retries=0,
        timeout=T,
    )
    out = await run(mode, model, "hi")
    failed_in_time(out, APITimeoutError)


@MODES
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_trickled_headers_end_by_timeout(hostile: Hostile, mode: str, stream: bool) -> None:
    out = await run(
        mode, bad_model(hostile, "trickle_headers"), messages="hi", stream=stream, timeout=T
    )
    failed_in_time(out, APITimeoutError)
    assert await hostile.await_for(lambda h: bool(h.closed_early("trickle_headers")))


@MODES
async def test_trickled_first_sse_chunk_ends_by_timeout(hostile: Hostile, mode: str) -> None:
    """``timeout`` is the default first_chunk_timeout: bytes that never finish a chunk do not
    keep the stream alive."""
    model = bad_model(hostile, "trickle_sse_first")
    out = await run(mode, model, messages="hi", stream=True, timeout=T)
    failed_in_time(out, APITimeoutError)
    assert out.chunks == []


@MODES
async def test_first_chunk_timeout_option_bounds_a_trickled_first_chunk(
    hostile: Hostile, mode: str
) -> None:
    model = bad_model(hostile, "trickle_sse_first", first_chunk_timeout=0.3)
    out = await run(mode, model, messages="hi", stream=True, timeout=5)
    failed_in_time(out, APITimeoutError, bound=0.3 + GRACE)


@MODES
async def test_sse_comments_do_not_count_as_a_first_chunk(hostile: Hostile, mode: str) -> None:
    out = await run(
        mode, bad_model(hostile, "sse_comments_only"), messages="hi", stream=True, timeout=T
    )
    failed_in_time(out, APITimeoutError)
    assert await hostile.await_for(lambda h: bool(h.closed_early("sse_comments_only")))


@MODES
async def test_sse_empty_and_role_only_deltas_do_not_count_as_a_first_chunk(
    hostile: Hostile, mode: str
) -> None:
    out = await run(
        mode, bad_model(hostile, "sse_empty_deltas"), messages="hi", stream=True, timeout=T
    )
    failed_in_time(out, APITimeoutError)
    assert [c for c in out.chunks if c] == []


@MODES
async def test_sse_idle_after_first_chunk_ends_by_idle_timeout(hostile: Hostile, mode: str) -> None:
    """``timeout`` is also the default idle_timeout: the stream raises from the iterator."""
    out = await run(
        mode, bad_model(hostile, "sse_idle_after_first"), messages="hi", stream=True, timeout=T
    )
    failed_in_time(out, APITimeoutError)
    assert out.chunks == ["Hello"]


@MODES
async def test_idle_timeout_option_bounds_the_gap_between_chunks(
    hostile: Hostile, mode: str
) -> None:
    model = bad_model(hostile, "sse_idle_after_first", idle_timeout=0.3)
    out = await run(mode, model, messages="hi", stream=True, timeout=5)
    failed_in_time(out, APITimeoutError, bound=0.3 + GRACE)
    assert out.chunks == ["Hello"]


@MODES
async def test_sse_comments_after_the_first_chunk_do_not_reset_the_idle_timeout(
    hostile: Hostile, mode: str
) -> None:
    hostile.configure("sse_idle_after_first", ping=0.1)
    model = bad_model(hostile, "sse_idle_after_first", idle_timeout=0.3)
    out = await run(mode, model, messages="hi", stream=True, timeout=5)
    failed_in_time(out, APITimeoutError, bound=0.3 + GRACE)


@MODES
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_reset_mid_body_is_a_connection_error(
    hostile: Hostile, mode: str, stream: bool
) -> None:
    out = await run(
        mode, bad_model(hostile, "reset_mid_body"), messages="hi", stream=stream, timeout=T
    )
    err = failed_in_time(out, APIConnectionError)
    assert not isinstance(err, APITimeoutError), f"a reset reported as a timeout: {err}"


# -- 2. malformed answers are validation errors --------------------------------------------------
@MODES
@pytest.mark.parametrize(
    "behaviour", ["not_json", "unknown_encoding", *(f"bad_{name}" for name in MALFORMED)]
)
async def test_malformed_answer_is_a_validation_error(
    hostile: Hostile, mode: str, behaviour: str
) -> None:
    """Never a built-in error, never an empty success (``content: 123`` included)."""
    out = await run(mode, bad_model(hostile, behaviour), messages="hi", timeout=T)
    failed_in_time(out, APIResponseValidationError)


@MODES
@pytest.mark.parametrize("behaviour", ["not_sse", *(f"sse_bad_{name}" for name in MALFORMED_SSE)])
async def test_malformed_stream_is_a_validation_error(
    hostile: Hostile, mode: str, behaviour: str
) -> None:
    """A wrong-shaped first event, a non-JSON event, or a JSON answer to a stream request."""
    out = await run(mode, bad_model(hostile, behaviour), messages="hi", stream=True, timeout=T)
    failed_in_time(out, APIResponseValidationError)
    assert out.chunks == []


@MODES
async def test_answer_under_max_response_bytes_is_accepted(hostile: Hostile, mode: str) -> None:
    """The default cap (64 MiB) leaves a 100 kB answer alone."""
    out = await run(mode, bad_model(hostile, "big_body"), messages="hi", timeout=5)
    assert out.error is None and not out.hung, out.error
    assert out.answer == "A" * 100_000
    assert out.elapsed <= 5


@MODES
async def test_max_response_bytes_option_caps_an_answer(hostile: Hostile, mode: str) -> None:
    model = bad_model(hostile, "big_body", max_response_bytes=10_000)
    out = await run(mode, model, messages="hi", timeout=5)
    failed_in_time(out, too_large(), bound=GRACE)


@MODES
async def test_max_event_bytes_option_caps_one_sse_event(hostile: Hostile, mode: str) -> None:
    hostile.configure("huge_sse_event", size=100_000)
    model = bad_model(hostile, "huge_sse_event", max_event_bytes=10_000)
    out = await run(mode, model, messages="hi", stream=True, timeout=5)
    failed_in_time(out, too_large(), bound=GRACE)
    assert out.chunks == []


# -- 3. a gateway falls back from every misbehaviour ---------------------------------------------
FALLBACK_CASES = [
    ("trickle_body", False, APITimeoutError),
    ("trickle_headers", False, APITimeoutError),
    ("trickle_headers", True, APITimeoutError),
    ("trickle_sse_first", True, APITimeoutError),
    ("sse_comments_only", True, APITimeoutError),
    ("sse_empty_deltas", True, APITimeoutError),
    ("reset_mid_body", False, APIConnectionError),
    ("reset_mid_body", True, APIConnectionError),
    ("unknown_encoding", False, APIResponseValidationError),
    ("not_json", False, APIResponseValidationError),
    ("not_sse", True, APIResponseValidationError),
    *((f"bad_{name}", False, APIResponseValidationError) for name in MALFORMED),
    *((f"sse_bad_{name}", True, APIResponseValidationError) for name in MALFORMED_SSE),
]


@MODES
@pytest.mark.parametrize(
    ("behaviour", "stream", "error"),
    FALLBACK_CASES,
    ids=[f"{b}-{'stream' if s else 'plain'}" for b, s, _ in FALLBACK_CASES],
)
async def test_gateway_answers_from_the_next_deployment_when_one_misbehaves(
    hostile: Hostile,
    upstream: Upstream,
    mode: str,
    behaviour: str,
    stream: bool,
    error: type[BaseException],
) -> None:
    gateway = fallback_gateway(bad_model(hostile, behaviour), upstream)
    out = await run(mode, gateway, messages="hi", stream=stream)
    answered_in_time(out)
    assert out.answer == GOOD_TEXT
    fails = failures(gateway)
    assert failure_is(fails, error), f"bad failed with {fails}, expected {error.__name__}"
    if error is APIConnectionError:
        assert "APITimeoutError" not in fails


@MODES
@pytest.mark.parametrize("where", ["gateway", "deployment"])
async def test_first_chunk_timeout_flows_from_the_gateway_or_the_deployment(
    hostile: Hostile, upstream: Upstream, mode: str, where: str
) -> None:
    """A gateway option is every attempt's default; a deployment key overrides it."""
    if where == "gateway":
        gateway = fallback_gateway(
            bad_model(hostile, "trickle_sse_first"),
            upstream,
            timeout=5,
            deadline=None,
            first_chunk_timeout=0.3,
        )
    else:
        gateway = fallback_gateway(
            bad_model(hostile, "trickle_sse_first"),
            upstream,
            bad_keys={"first_chunk_timeout": 0.3},
            timeout=5,
            deadline=None,
            first_chunk_timeout=5,
        )
    out = await run(mode, gateway, messages="hi", stream=True)
    answered_in_time(out, bound=0.3 + GRACE)
    assert "APITimeoutError" in failures(gateway)


@MODES
@pytest.mark.parametrize("where", ["gateway", "deployment"])
async def test_idle_timeout_flows_from_the_gateway_or_the_deployment(
    hostile: Hostile, upstream: Upstream, mode: str, where: str
) -> None:
    model = bad_model(hostile, "sse_idle_after_first")
    common: dict[str, Any] = {"timeout": 5, "deadline": None, "mid_stream": "continue"}
    if where == "gateway":
        gateway = fallback_gateway(model, upstream, idle_timeout=0.3, **common)
    else:
        keys = {"idle_timeout": 0.3}
        gateway = fallback_gateway(model, upstream, bad_keys=keys, idle_timeout=5, **common)
    out = await run(mode, gateway, messages="hi", stream=True)
    answered_in_time(out, bound=0.3 + GRACE)
    # The fallback ignores the prefill and starts again with "Hello": that repetition of what
    # the caller already has is stripped, so the caller reads the answer once.
    assert out.answer == GOOD_TEXT


@MODES
@pytest.mark.parametrize("where", ["gateway", "deployment"])
async def test_max_response_bytes_flows_from_the_gateway_or_the_deployment(
    hostile: Hostile, upstream: Upstream, mode: str, where: str
) -> None:
    model = bad_model(hostile, "big_body")
    if where == "gateway":
        gateway = fallback_gateway(model, upstream, max_response_bytes=10_000)
    else:
        keys = {"max_response_bytes": 10_000}
        gateway = fallback_gateway(model, upstream, bad_keys=keys, max_response_bytes=10**9)
    out = await run(mode, gateway, messages="hi")
    answered_in_time(out)
    assert failure_is(failures(gateway), too_large()), failures(gateway)


@MODES
@pytest.mark.parametrize("where", ["gateway", "deployment"])
async def test_max_event_bytes_flows_from_the_gateway_or_the_deployment(
    hostile: Hostile, upstream: Upstream, mode: str, where: str
) -> None:
    hostile.configure("huge_sse_event", size=100_000)
    model = bad_model(hostile, "huge_sse_event")
    if where == "gateway":
        gateway = fallback_gateway(model, upstream, max_event_bytes=10_000)
    else:
        keys = {"max_event_bytes": 10_000}
        gateway = fallback_gateway(model, upstream, bad_keys=keys, max_event_bytes=10**8)
    out = await run(mode, gateway, messages="hi", stream=True)
    answered_in_time(out)
    assert failure_is(failures(gateway), too_large()), failures(gateway)


@MODES
async def test_gateway_stream_idle_after_its_first_chunk_raises_stream_interrupted(
    hostile: Hostile, upstream: Upstream, mode: str
) -> None:
    """Committed after the first chunk (today's semantics), so it cannot fall back: it raises
    StreamInterruptedError with the partial text, by the idle timeout."""
    gateway = fallback_gateway(bad_model(hostile, "sse_idle_after_first"), upstream)
    out = await run(mode, gateway, messages="hi", stream=True)
    err = failed_in_time(out, StreamInterruptedError)
    assert out.chunks == ["Hello"]
    assert err.partial == "Hello" and err.model_name == "bad"
    assert isinstance(err.cause, APITimeoutError), repr(err.cause)


@MODES
async def test_gateway_stream_reset_after_its_first_chunk_raises_stream_interrupted(
    hostile: Hostile, upstream: Upstream, mode: str
) -> None:
    hostile.configure("reset_mid_body", after_first=True)
    gateway = fallback_gateway(bad_model(hostile, "reset_mid_body"), upstream)
    out = await run(mode, gateway, messages="hi", stream=True)
    err = failed_in_time(out, StreamInterruptedError)
    assert err.partial == "Hello" and out.chunks == ["Hello"]
    assert isinstance(err.cause, APIConnectionError), repr(err.cause)
    assert not isinstance(err.cause, APITimeoutError), repr(err.cause)


@MODES
async def test_gateway_stream_idle_after_its_first_chunk_continues_on_the_next_deployment(
    hostile: Hostile, upstream: Upstream, mode: str
) -> None:
    gateway = fallback_gateway(
        bad_model(hostile, "sse_idle_after_first"), upstream, mid_stream="continue"
    )
    out = await run(mode, gateway, messages="hi", stream=True)
    answered_in_time(out)
    assert out.answer == GOOD_TEXT  # the repeated "Hello" is stripped (see above)
    prefill = upstream.last.json["messages"][-1]
    assert prefill["role"] == "assistant" and prefill["content"] == "Hello", prefill


@MODES
async def test_gateway_deadline_ends_a_stream_that_never_stops(
    hostile: Hostile, upstream: Upstream, mode: str
) -> None:
    """Content every 0.2 s forever never trips a per-read or idle timeout; the deadline must."""
    gateway = fallback_gateway(bad_model(hostile, "sse_drip"), upstream, timeout=T, deadline=1.0)
    out = await run(mode, gateway, messages="hi", stream=True)
    err = failed_in_time(out, StreamInterruptedError, bound=1.0 + GRACE)
    assert out.chunks and set(out.chunks) == {" drip"}
    assert isinstance(err.cause, APITimeoutError), repr(err.cause)
    assert await hostile.await_for(lambda h: bool(h.closed_early("sse_drip")))


@MODES
async def test_gateway_deadline_bounds_an_attempt_without_a_timeout(
    hostile: Hostile, upstream: Upstream, mode: str
) -> None:
    gateway = fallback_gateway(
        bad_model(hostile, "trickle_body"), upstream, timeout=None, deadline=1.0
    )
    out = await run(mode, gateway, messages="hi")
    assert not out.hung, "still running long after the deadline"
    assert out.elapsed <= 1.0 + GRACE, f"ended after {out.elapsed:.2f}s"
    if out.error is not None:
        assert isinstance(out.error, ModelRouterError), repr(out.error)
        assert isinstance(out.error.attempts[0].exception, APITimeoutError)


@MODES
async def test_non_sse_answers_to_stream_requests_do_not_open_the_breaker(
    hostile: Hostile, upstream: Upstream, mode: str
) -> None:
    """A JSON answer to a stream request is a validation error, not a provider outage."""
    gateway = fallback_gateway(
        bad_model(hostile, "not_sse"), upstream, breaker=Breaker(failure_threshold=2)
    )
    for _ in range(4):
        out = await run(mode, gateway, messages="hi", stream=True)
        answered_in_time(out)
    bad = gateway.stats()["deployments"]["bad"]
    assert sum(bad["failures"].values()) == 4, bad["failures"]
    assert all(failure_is({n: 1}, APIResponseValidationError) for n in bad["failures"]), bad
    assert bad["breaker"] == "closed"
    assert hostile.count("not_sse") == 4


def test_gateway_stream_read_in_another_event_loop_is_complete_or_raises(
    upstream: Upstream,
) -> None:
    """A stream opened in one ``asyncio.run`` and read in another: the whole text, or an
    exception at once; never a silently truncated success."""
    pieces = [f"w{i} " for i in range(20)]
    upstream.set_default(Reply(chunks=pieces, chunk_delay=0.02), model="good")
    other = Model.chat_completion("openai_compatible/other", base_url=upstream.base_url)
    gateway = ModelGateway(
        [
            {"model_name": "good", "model": good_model(upstream)},
            {"model_name": "o", "model": other},
        ],
        timeout=2,
    )

    async def open_stream() -> Any:
        return await gateway.acall(messages="hi", stream=True)

    resp = asyncio.run(open_stream())
    chunks: list[Any] = []

    async def read() -> None:
        async for chunk in resp.consume():
            chunks.append(chunk)

    started = time.monotonic()
    error: BaseException | None = None
    try:
        asyncio.run(asyncio.wait_for(read(), 5))
    except Exception as exc:
        error = exc
    elapsed = time.monotonic() - started
    text = "".join(chunks)
    assert elapsed <= 1.0 + GRACE, f"reading took {elapsed:.2f}s ({error!r})"
    if error is None:
        assert text == "".join(pieces), f"a silently truncated stream: {text!r}"


# -- 4. bounded memory (a child process with a capped address space) -----------------------------
CHILD_BOUND = 5.0
"""Seconds the call may take in the child (its own timeout is 8 s, so a cap must end it)."""
CHILD_TIMEOUT = 25.0
"""Seconds before the parent kills the child."""


def child_spec(
    hostile: Hostile,
    behaviour: str,
    mode: str,
    *,
    stream: bool = False,
    kind: str = "chat",
    upstream: Upstream | None = None,
) -> dict[str, Any]:
    options: dict[str, Any] = {"base_url": hostile.base_url, "api_key": KEY, "max_retries": 0}
    spec: dict[str, Any] = {
        "mode": mode,
        "kind": kind,
        "model": {"path": f"openai_compatible/{behaviour}", "options": options},
    }
    if kind == "speech":
        options["timeout"] = 8
        spec["args"] = ["hi"]
    else:
        spec["kwargs"] = {"messages": "hi", "stream": stream, "timeout": 8}
    if upstream is not None:
        spec["good"] = {
            "path": "openai_compatible/good",
            "options": {"base_url": upstream.base_url},
        }
        spec["gateway"] = {"timeout": 8, "deadline": 15}
        spec["kwargs"].pop("timeout")
    return spec


def expect_too_large(result: ChildResult) -> dict[str, Any]:
    """The child ended in time and cleanly, with ResponseTooLargeError (or a gateway answer)."""
    assert not result.timed_out and result.returncode == 0, result.describe()
    rep = result.report
    assert rep is not None, result.describe()
    err = rep["error"]
    if rep.get("answered_by") is None:
        assert err is not None, (
            f"no error: answered {rep['answer_size']} units: {rep['answer_head']}"
        )
        assert err["type"] != "MemoryError", (
            f"MemoryError: memory grew past the cap (baseline {rep.get('baseline_vm_kib')} KiB "
            f"+ 1 GiB; peak RSS {rep.get('peak_rss_kib')} KiB)"
        )
        assert "ResponseTooLargeError" in err["mro"], f"{err['type']}: {err['message']}"
        assert "APIResponseValidationError" in err["mro"], err["mro"]
    assert rep["elapsed"] <= CHILD_BOUND, f"the call took {rep['elapsed']:.2f}s ({err})"
    return rep


@pytest.mark.slow
@MODES
@pytest.mark.parametrize("chunked", [False, True], ids=["close-delimited", "chunked"])
def test_endless_body_is_cut_at_max_response_bytes_in_bounded_memory(
    hostile: Hostile, mode: str, chunked: bool
) -> None:
    hostile.configure("endless_body", chunked=chunked)
    expect_too_large(run_in_child(child_spec(hostile, "endless_body", mode), timeout=CHILD_TIMEOUT))


@pytest.mark.slow
@MODES
def test_endless_speech_body_is_cut_at_max_response_bytes_in_bounded_memory(
    hostile: Hostile, mode: str
) -> None:
    spec = child_spec(hostile, "endless_body", mode, kind="speech")
    expect_too_large(run_in_child(spec, timeout=CHILD_TIMEOUT))


@pytest.mark.slow
@MODES
def test_endless_sse_line_is_cut_at_max_event_bytes_in_bounded_memory(
    hostile: Hostile, mode: str
) -> None:
    spec = child_spec(hostile, "endless_sse_line", mode, stream=True)
    expect_too_large(run_in_child(spec, timeout=CHILD_TIMEOUT))


@pytest.mark.slow
@MODES
def test_huge_sse_event_is_cut_at_max_event_bytes_in_bounded_memory(
    hostile: Hostile, mode: str
) -> None:
    spec = child_spec(hostile, "huge_sse_event", mode, stream=True)
    rep = expect_too_large(run_in_child(spec, timeout=CHILD_TIMEOUT))
    assert rep["answer_size"] == 0, "the 50 MB event was delivered"


@pytest.mark.slow
@MODES
def test_gzip_bomb_is_cut_at_max_response_bytes_decompressed_in_bounded_memory(
    hostile: Hostile, mode: str
) -> None:
    spec = child_spec(hostile, "gzip_bomb", mode)
    expect_too_large(run_in_child(spec, timeout=CHILD_TIMEOUT))


@pytest.mark.slow
@MODES
def test_gzip_bomb_stream_is_cut_at_max_response_bytes_decompressed_in_bounded_memory(
    hostile: Hostile, mode: str
) -> None:
    """The stream inflates to 4 GiB of 16 KiB comment lines: only the decompressed total can
    stop it before its (8 s) first-chunk timeout."""
    spec = child_spec(hostile, "gzip_bomb_sse", mode, stream=True)
    expect_too_large(run_in_child(spec, timeout=CHILD_TIMEOUT))


@pytest.mark.slow
@MODES
def test_gateway_falls_back_from_a_gzip_bomb_in_bounded_memory(
    hostile: Hostile, upstream: Upstream, mode: str
) -> None:
    spec = child_spec(hostile, "gzip_bomb", mode, upstream=upstream)
    rep = expect_too_large(run_in_child(spec, timeout=CHILD_TIMEOUT))
    assert rep["error"] is None, rep["error"]
    assert rep["answered_by"] == "good" and rep["answer_size"] == len(GOOD_TEXT)
    assert "ResponseTooLargeError" in rep["bad_failures"], rep["bad_failures"]


# -- 5. the key never comes back -----------------------------------------------------------------
FORMS = key_forms(KEY)
ECHO_CASES = [
    ("echo_key", {"status": 401}, False, AuthenticationError),
    ("echo_key", {"status": 401}, True, AuthenticationError),
    ("echo_key", {"status": 500}, False, InternalServerError),
    ("echo_key", {"status": 500}, True, InternalServerError),
    ("echo_key", {"status": 429}, False, RateLimitError),
    ("echo_key", {"status": 429}, True, RateLimitError),
    ("echo_key_body", {}, False, APIResponseValidationError),
    ("echo_key_sse", {"kind": "not_json"}, True, APIResponseValidationError),
    ("echo_key_sse", {"kind": "error_event"}, True, AuthenticationError),
]


def echo_id(behaviour: str, params: dict[str, Any], stream: bool, _: Any) -> str:
    detail = "-".join(str(v) for v in params.values())
    return "-".join(p for p in (behaviour, detail, "stream" if stream else "plain") if p)


_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def key_leaks(obj: Any, path: str, seen: set[int] | None = None, depth: int = 0) -> list[str]:
    """Where (as a path from ``obj``) any form of the key appears in ``obj``, recursively:
    str, bytes, containers, exception str/repr/args/cause/context (unless suppressed with
    ``from None``), and object attributes (``__dict__`` and ``__slots__``)."""
    if isinstance(obj, (bytes, bytearray)):
        obj = bytes(obj).decode("latin-1")
    if isinstance(obj, str):
        return [f"{path} = {obj!r:.300}" for form in FORMS if form in obj][:1]
    if obj is None or isinstance(obj, (bool, int, float, _OPAQUE)) or depth > 12:
        return []
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    found: list[str] = []

    def walk(value: Any, where: str) -> None:
        found.extend(key_leaks(value, where, seen, depth + 1))

    if isinstance(obj, dict):
        for k, v in obj.items():
            walk(k, f"{path} key {k!r:.40}")
            walk(v, f"{path}[{k!r:.40}]")
        return found
    if isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            walk(v, f"{path}[{i}]")
        return found
    if isinstance(obj, BaseException):
        walk(str(obj), f"str({path})")
        walk(repr(obj), f"repr({path})")
        walk(obj.args, f"{path}.args")
        walk(obj.__cause__, f"{path}.__cause__")
        if not obj.__suppress_context__:  # what a traceback (or Sentry) would show
            walk(obj.__context__, f"{path}.__context__")
    for name, value in getattr(obj, "__dict__", {}).items():
        walk(value, f"{path}.{name}")
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if isinstance(name, str) and not name.startswith("__"):
                walk(getattr(obj, name, None), f"{path}.{name}")
    return found


def assert_no_key(obj: Any, where: str) -> None:
    leaks = key_leaks(obj, where)
    assert not leaks, "the API key leaked:\n  " + "\n  ".join(leaks[:10])


def assert_no_key_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    formatter = logging.Formatter()
    for record in caplog.records:
        assert_no_key(record.getMessage(), f"log record {record.name}:{record.levelname}")
        if record.exc_info:
            text = formatter.formatException(record.exc_info)
            assert_no_key(text, f"traceback logged by {record.name}")


@MODES
@pytest.mark.parametrize(
    ("behaviour", "params", "stream", "error"),
    ECHO_CASES,
    ids=[echo_id(*case) for case in ECHO_CASES],
)
async def test_echoed_key_never_leaks(
    hostile: Hostile,
    upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    behaviour: str,
    params: dict[str, Any],
    stream: bool,
    error: type[BaseException],
) -> None:
    caplog.set_level(logging.DEBUG, logger="msgflux")
    hostile.configure(behaviour, **params)
    # The model alone: the typed error, with the key scrubbed from every part of it.
    out = await run(mode, bad_model(hostile, behaviour), messages="hi", stream=stream, timeout=T)
    err = failed_in_time(out, error)
    assert isinstance(err, ProviderError)
    assert_no_key(err, "err")
    # A gateway falls back; nothing it reports holds the key.
    gateway = fallback_gateway(bad_model(hostile, behaviour), upstream)
    out = await run(mode, gateway, messages="hi", stream=stream)
    answered_in_time(out)
    assert failures(gateway), "bad did not fail"
    assert_no_key(out.response.metadata, "response.metadata")
    assert_no_key(gateway.stats(), "gateway.stats()")
    assert_no_key(gateway.health(), "gateway.health()")
    # Every deployment echoes: the ModelRouterError and everything in it.
    models = [
        {"model_name": name, "model": bad_model(hostile, behaviour)} for name in ("bad", "bad2")
    ]
    out = await run(
        mode, ModelGateway(models, timeout=T, deadline=1.0), messages="hi", stream=stream
    )
    router_error = failed_in_time(out, ModelRouterError)
    assert_no_key(router_error, "router_error")
    assert_no_key_in_logs(caplog)
    # The key really went out (and came back) four times: the checks above were not vacuous.
    assert hostile.count(behaviour) == 4
    assert {r.key for r in hostile.requests} == {KEY}


def test_cli_never_prints_the_echoed_key(hostile: Hostile) -> None:
    """``msgflux demo`` with both deployments echoing the key (verbose, plain and stream)."""
    from typer.testing import CliRunner

    from msgflux.cli import app

    env = {
        "OPENAI_COMPATIBLE_BASE_URL": hostile.base_url,
        "OPENAI_COMPATIBLE_API_KEY": KEY,
        "COLUMNS": "400",
    }
    root = logging.getLogger("msgflux")
    handlers, level = list(root.handlers), root.level
    try:
        for extra in ([], ["--stream"]):
            args = ["demo", "hi", "--cloud", "openai_compatible/echo_key", "-v", *extra]
            args += ["--local", "openai_compatible/echo_key_body", "--cloud-timeout", "2"]
            started = time.monotonic()
            result = CliRunner().invoke(app, args, env=env)
            assert time.monotonic() - started <= 5
            assert result.exit_code == 1, result.output
            assert_no_key(result.output, "CLI output")
            assert_no_key("".join(result.output.split()), "CLI output without whitespace")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert hostile.count() == 4 and {r.key for r in hostile.requests} == {KEY}


# -- 6. configuration is validated at construction -------------------------------------------------
def two_models() -> list[dict[str, Any]]:
    url = "http://127.0.0.1:9/v1"
    return [
        {"model_name": n, "model": Model.chat_completion(f"openai_compatible/{n}", base_url=url)}
        for n in ("a", "b")
    ]


BAD_NUMBERS = pytest.mark.parametrize("value", [math.nan, math.inf, -1], ids=["nan", "inf", "-1"])
BYTE_OPTIONS = ("max_response_bytes", "max_event_bytes")
_RANGE_WORDS = re.compile(r">|<|between|at least|at most|finite|positive|range|\bin \[", re.I)


def expect_rejected(option: str, value: Any, build: Any) -> None:
    """ValueError naming the option and the accepted range (TypeError allowed for a float
    given to a byte count)."""
    allowed: tuple[type[Exception], ...] = (ValueError,)
    if option in BYTE_OPTIONS and not isinstance(value, int):
        allowed = (ValueError, TypeError)
    with pytest.raises(allowed) as info:
        build()
    message = str(info.value)
    assert option in message, f"the message does not name {option!r}: {message}"
    assert _RANGE_WORDS.search(message), f"the message does not give the range: {message}"


@BAD_NUMBERS
@pytest.mark.parametrize(
    "option",
    [
        "timeout",
        "deadline",
        "backoff_base",
        "backoff_cap",
        "retry_after_cap",
        "stats_window",
        "first_chunk_timeout",
        "idle_timeout",
        "max_response_bytes",
        "max_event_bytes",
    ],
)
def test_gateway_rejects_an_out_of_range_option(option: str, value: float) -> None:
    expect_rejected(option, value, lambda: ModelGateway(two_models(), **{option: value}))


@BAD_NUMBERS
@pytest.mark.parametrize(
    "key",
    ["timeout", "first_chunk_timeout", "idle_timeout", "max_response_bytes", "max_event_bytes"],
)
def test_gateway_rejects_an_out_of_range_deployment_key(key: str, value: float) -> None:
    models = two_models()
    models[0][key] = value
    expect_rejected(key, value, lambda: ModelGateway(models))


@BAD_NUMBERS
@pytest.mark.parametrize(
    "option",
    ["timeout", "first_chunk_timeout", "idle_timeout", "max_response_bytes", "max_event_bytes"],
)
def test_model_rejects_an_out_of_range_option(option: str, value: float) -> None:
    expect_rejected(
        option,
        value,
        lambda: Model.chat_completion(
            "openai_compatible/m", base_url="http://127.0.0.1:9/v1", **{option: value}
        ),
    )


def test_gateway_rejects_an_absurd_max_retries() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        ModelGateway(two_models(), max_retries=10**18)


@pytest.mark.parametrize(("option", "value"), [("raise_on", int), ("fallback_on", "x")])
def test_gateway_rejects_error_matchers_that_are_not_exception_types(
    option: str, value: Any
) -> None:
    with pytest.raises((TypeError, ValueError), match=option):
        ModelGateway(two_models(), **{option: value})


# -- 7. the hostile server does what it claims ---------------------------------------------------
@dataclasses.dataclass
class Raw:
    """What a raw socket saw: the response head and body bytes, and how it ended."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    closed: bool
    """The server closed the connection (FIN)."""
    reset: bool
    """The server reset the connection (RST)."""
    arrivals: list[float]
    """Seconds from the request to each recv that returned data."""

    def events(self) -> list[bytes]:
        """The ``data:`` payloads of the complete SSE events in the body."""
        blocks = self.body.split(b"\n\n")[:-1]
        return [b[6:] for b in blocks if b.startswith(b"data: ")]


def raw_call(
    hostile: Hostile,
    behaviour: str,
    *,
    stream: bool = False,
    route: str = "/v1/chat/completions",
    seconds: float = 0.6,
    limit: int = 64 << 20,
) -> Raw:
    """POST as a client would (with ``Authorization: Bearer KEY``) and read for ``seconds``,
    until the connection ends, or until ``limit`` bytes."""
    body = json.dumps({"model": behaviour, "stream": stream, "messages": []}).encode()
    request = (
        f"POST {route} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    data = bytearray()
    arrivals: list[float] = []
    closed = reset = False
    with socket.create_connection(("127.0.0.1", hostile.port)) as sock:
        sock.sendall(request)
        started = time.monotonic()
        end = started + seconds
        while len(data) < limit:
            left = end - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                piece = sock.recv(1 << 20)
            except TimeoutError:
                break
            except ConnectionResetError:
                reset = True
                break
            if not piece:
                closed = True
                break
            data += piece
            arrivals.append(time.monotonic() - started)
    head, sep, rest = bytes(data).partition(b"\r\n\r\n")
    if not sep:
        return Raw(None, {}, bytes(data), closed, reset, arrivals)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Raw(int(lines[0].split(" ")[1]), headers, rest, closed, reset, arrivals)


def test_hostile_server_answers_good_and_names_its_behaviours_on_a_404(hostile: Hostile) -> None:
    plain = raw_call(hostile, "good")
    assert plain.status == 200 and plain.closed
    assert json.loads(plain.body)["choices"][0]["message"]["content"] == TEXT
    stream = raw_call(hostile, "good", stream=True)
    assert stream.headers["content-type"] == "text/event-stream"
    events = stream.events()
    assert events[-1] == b"[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == TEXT
    unknown = raw_call(hostile, "no_such_behaviour")
    assert unknown.status == 404 and b"trickle_body" in unknown.body


def test_hostile_server_trickles_the_body_one_byte_per_interval(hostile: Hostile) -> None:
    hostile.configure("trickle_body", interval=0.03)
    raw = raw_call(hostile, "trickle_body", seconds=0.4)
    assert raw.status == 200 and not raw.closed
    assert int(raw.headers["content-length"]) > 100
    assert 5 <= len(raw.body) <= 20, raw.body
    assert b'{"id":"chatcmpl-hostile"'.startswith(raw.body)
    assert len(raw.arrivals) >= 5, "the bytes did not arrive one at a time"


def test_hostile_server_trickles_the_headers_one_byte_per_interval(hostile: Hostile) -> None:
    hostile.configure("trickle_headers", interval=0.03)
    raw = raw_call(hostile, "trickle_headers", seconds=0.4)
    assert raw.status is None, "the headers ended"
    assert raw.body.startswith(b"HTTP/1.1 200 OK\r\n")
    assert 5 <= len(raw.body) - len(b"HTTP/1.1 200 OK\r\n") <= 20, raw.body
    assert raw.arrivals[0] < 0.03  # the status line at once


def test_hostile_server_trickles_the_first_sse_content_chunk(hostile: Hostile) -> None:
    hostile.configure("trickle_sse_first", interval=0.03)
    raw = raw_call(hostile, "trickle_sse_first", stream=True, seconds=0.4)
    first, _, partial = raw.body.partition(b"\n\n")
    assert json.loads(first[6:])["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert partial.startswith(b"data: {") and 5 <= len(partial) <= 20, partial
    assert b"Hello" not in partial


def test_hostile_server_sends_only_sse_comments(hostile: Hostile) -> None:
    hostile.configure("sse_comments_only", interval=0.03)
    raw = raw_call(hostile, "sse_comments_only", stream=True, seconds=0.4)
    assert raw.headers["content-type"] == "text/event-stream" and not raw.closed
    count = raw.body.count(b": ping\n\n")
    assert count >= 5 and raw.body == b": ping\n\n" * count


def test_hostile_server_sends_only_empty_and_role_only_deltas(hostile: Hostile) -> None:
    hostile.configure("sse_empty_deltas", interval=0.03)
    raw = raw_call(hostile, "sse_empty_deltas", stream=True, seconds=0.4)
    deltas = [json.loads(e)["choices"][0]["delta"] for e in raw.events()]
    assert len(deltas) >= 5 and not raw.closed
    assert {"role": "assistant"} in deltas and {"content": ""} in deltas
    assert all(not d.get("content") for d in deltas)


@pytest.mark.parametrize("ping", [0.0, 0.1])
def test_hostile_server_goes_quiet_after_the_first_chunk(hostile: Hostile, ping: float) -> None:
    hostile.configure("sse_idle_after_first", ping=ping)
    raw = raw_call(hostile, "sse_idle_after_first", stream=True, seconds=0.4)
    deltas = [json.loads(e)["choices"][0]["delta"] for e in raw.events()]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hello"}]
    assert not raw.closed
    assert (raw.body.count(b": ping\n\n") >= 2) == (ping > 0)


def test_hostile_server_drips_content_forever(hostile: Hostile) -> None:
    hostile.configure("sse_drip", interval=0.03)
    raw = raw_call(hostile, "sse_drip", stream=True, seconds=0.4)
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in raw.events()]
    assert contents.count(" drip") >= 5 and b"[DONE]" not in raw.body and not raw.closed


@pytest.mark.parametrize("chunked", [False, True], ids=["close-delimited", "chunked"])
def test_hostile_server_sends_an_endless_body(hostile: Hostile, chunked: bool) -> None:
    hostile.configure("endless_body", chunked=chunked)
    raw = raw_call(hostile, "endless_body", seconds=5, limit=16 << 20)
    assert len(raw.body) >= 15 << 20 and not raw.closed, "fewer than 16 MiB in 5 s"
    assert "content-length" not in raw.headers
    assert raw.headers["content-type"] == "application/json"
    assert (raw.headers.get("transfer-encoding") == "chunked") == chunked
    start = raw.body.split(b"\r\n", 1)[1] if chunked else raw.body
    assert start.startswith(b'{"id":"chatcmpl-endless"')
    speech = raw_call(hostile, "endless_body", route="/v1/audio/speech", seconds=5, limit=4 << 20)
    assert speech.headers["content-type"] == "audio/mpeg" and len(speech.body) >= 3 << 20


def test_hostile_server_sends_an_endless_sse_line(hostile: Hostile) -> None:
    raw = raw_call(hostile, "endless_sse_line", stream=True, seconds=5, limit=16 << 20)
    assert len(raw.body) >= 15 << 20 and not raw.closed
    assert raw.body.startswith(b"data: {") and b"\n" not in raw.body


def test_hostile_server_sends_one_huge_sse_event_then_ends(hostile: Hostile) -> None:
    raw = raw_call(hostile, "huge_sse_event", stream=True, seconds=10, limit=60 << 20)
    assert raw.closed, "the stream did not end"
    lines = raw.body.split(b"\n")
    assert max(len(line) for line in lines) >= 50_000_000
    assert raw.body.endswith(b"data: [DONE]\n\n")
    assert json.loads(raw.events()[1])["choices"][0]["delta"]["content"] == "A" * 50_000_000


def test_hostile_server_gzip_bomb_is_a_valid_gzip_stream(hostile: Hostile) -> None:
    """Small bombs inflate completely, CRC and size checked by zlib."""
    for behaviour, mib in (("gzip_bomb", 8), ("gzip_bomb_sse", 4)):
        hostile.configure(behaviour, inflated_mib=mib)
        raw = raw_call(hostile, behaviour, stream=behaviour.endswith("sse"), seconds=5)
        assert raw.closed and raw.headers["content-encoding"] == "gzip"
        assert len(raw.body) == int(raw.headers["content-length"])
        inflated = zlib.decompress(raw.body, 31)
        assert len(inflated) == mib << 20
        if behaviour == "gzip_bomb":
            assert inflated == bytes(len(inflated))
        else:
            assert raw.headers["content-type"] == "text/event-stream"
            assert set(inflated.split(b"\n\n")[:-1]) == {b": " + b"0" * 16380}


@pytest.mark.parametrize("behaviour", ["gzip_bomb", "gzip_bomb_sse"])
def test_hostile_server_gzip_bombs_are_small_and_inflate_to_4_gib(
    hostile: Hostile, behaviour: str
) -> None:
    """By construction, without inflating 4 GiB here: the body is a head, 4095 copies of one
    segment and a trailer; after a full flush a segment inflates on its own (no reference to
    earlier data) to the same MiB, so the whole inflates to 4096 MiB. The small bombs above
    prove that the trailer's CRC and size are right."""
    raw = raw_call(hostile, behaviour, stream=behaviour.endswith("sse"), seconds=20, limit=16 << 20)
    assert raw.closed and len(raw.body) == int(raw.headers["content-length"]) < 8 << 20
    head, seg, count = gzip_bomb_parts("sse_comments" if behaviour.endswith("sse") else "zeros")
    assert count + 1 == 4096
    assert raw.body == head + seg * count + raw.body[-10:]
    block = zlib.decompressobj(31).decompress(head)
    assert len(block) == 1 << 20
    again = zlib.decompressobj(-15)  # a raw deflate stream starting from scratch
    assert again.decompress(seg) == block and not again.eof  # not the final block
    trailer = raw.body[-10:]
    assert (
        trailer[:2] == b"\x03\x00" and trailer[-4:] == b"\x00\x00\x00\x00"
    )  # ISIZE 4 GiB mod 2**32


def test_hostile_server_computes_the_crc_of_a_repeated_block_like_zlib() -> None:
    block = bytes(range(256)) * 7
    for count in (0, 1, 2, 5, 64, 77):
        assert crc32_repeated(block, count) == zlib.crc32(block * count)


def test_hostile_server_resets_the_connection_mid_body(hostile: Hostile) -> None:
    raw = raw_call(hostile, "reset_mid_body", seconds=2)
    assert raw.reset and not raw.closed
    assert len(raw.body) == int(raw.headers["content-length"]) // 2
    assert hostile.requests[-1].server_reset


@pytest.mark.parametrize("after_first", [False, True])
def test_hostile_server_resets_a_stream_before_or_after_its_first_content(
    hostile: Hostile, after_first: bool
) -> None:
    hostile.configure("reset_mid_body", after_first=after_first)
    raw = raw_call(hostile, "reset_mid_body", stream=True, seconds=2)
    assert raw.reset and len(raw.body) < int(raw.headers["content-length"])
    deltas = [json.loads(e)["choices"][0]["delta"] for e in raw.events()]
    expected = [{"role": "assistant", "content": ""}]
    if after_first:
        expected.append({"content": "Hello"})
    assert deltas == expected
    assert raw.body.endswith(b"}") is False and raw.body.split(b"\n\n")[-1].startswith(b"data: {")


def test_hostile_server_labels_an_answer_with_an_unknown_encoding(hostile: Hostile) -> None:
    raw = raw_call(hostile, "unknown_encoding")
    assert raw.headers["content-encoding"] == "x-hostile"
    assert json.loads(raw.body)["choices"][0]["message"]["content"] == TEXT


def test_hostile_server_answers_json_to_a_stream_request(hostile: Hostile) -> None:
    raw = raw_call(hostile, "not_sse", stream=True)
    assert raw.headers["content-type"] == "application/json"
    assert json.loads(raw.body)["object"] == "chat.completion"


def _message(body: Any) -> Any:
    return body["choices"][0]["message"]


SHAPES = {
    "choices_dict": lambda b: isinstance(b["choices"], dict),
    "choices_str": lambda b: isinstance(b["choices"], str),
    "choices_empty": lambda b: b["choices"] == [],
    "message_str": lambda b: isinstance(_message(b), str),
    "content_int": lambda b: _message(b)["content"] == 123,
    "tool_calls_int": lambda b: _message(b)["tool_calls"] == 5,
    "tool_calls_function_str": lambda b: _message(b)["tool_calls"] == [{"function": "x"}],
    "function_name_missing": lambda b: "name" not in _message(b)["tool_calls"][0]["function"],
    "audio_not_base64": lambda b: (
        _message(b)["audio"]["data"] == "!!notbase64!!" and _message(b)["content"] is None
    ),
}
SSE_SHAPES = {
    "choices_dict": lambda e: isinstance(e["choices"], dict),
    "choices_str": lambda e: isinstance(e["choices"], str),
    "delta_str": lambda e: isinstance(e["choices"][0]["delta"], str),
    "tool_calls_int": lambda e: e["choices"][0]["delta"]["tool_calls"] == 5,
    "function_str": lambda e: e["choices"][0]["delta"]["tool_calls"][0]["function"] == "x",
}


@pytest.mark.parametrize("name", [*MALFORMED, "not_json"])
def test_hostile_server_sends_malformed_answers(hostile: Hostile, name: str) -> None:
    raw = raw_call(hostile, "not_json" if name == "not_json" else f"bad_{name}")
    assert raw.status == 200 and raw.headers["content-type"] == "application/json"
    if name == "not_json":
        with pytest.raises(ValueError):
            json.loads(raw.body)
    else:
        assert SHAPES[name](json.loads(raw.body))


@pytest.mark.parametrize("name", MALFORMED_SSE)
def test_hostile_server_sends_malformed_first_sse_events(hostile: Hostile, name: str) -> None:
    raw = raw_call(hostile, f"sse_bad_{name}", stream=True)
    assert raw.headers["content-type"] == "text/event-stream"
    first = raw.events()[0]
    assert first == MALFORMED_SSE[name]
    if name == "not_json":
        with pytest.raises(ValueError):
            json.loads(first)
    else:
        assert SSE_SHAPES[name](json.loads(first))
    assert raw.events()[-1] == b"[DONE]"


def echoed_forms(text: str) -> set[str]:
    return {form for form in FORMS if form in text}


@pytest.mark.parametrize("status", [401, 500, 429])
def test_hostile_server_echoes_the_key_with_an_error_status(hostile: Hostile, status: int) -> None:
    hostile.configure("echo_key", status=status)
    raw = raw_call(hostile, "echo_key")
    assert raw.status == status
    assert KEY in raw.headers["x-request-id"]
    text = raw.body.decode()
    literal, escaped, _, pct, _ = FORMS
    assert {literal, escaped, pct} <= echoed_forms(text)
    error = json.loads(text)["error"]
    assert KEY in error["message"] and f"key={pct}" in error["message"]
    assert error["param"] == KEY  # the \u escapes decode to the key


def test_hostile_server_echoes_the_key_in_a_200_body_and_in_sse_events(hostile: Hostile) -> None:
    literal, escaped, _, pct, _ = FORMS
    body = raw_call(hostile, "echo_key_body")
    assert body.status == 200 and {literal, escaped, pct} <= echoed_forms(body.body.decode())
    with pytest.raises(ValueError):
        json.loads(body.body)
    broken = raw_call(hostile, "echo_key_sse", stream=True)
    first = broken.events()[0].decode()
    assert {literal, escaped, pct} <= echoed_forms(first)
    with pytest.raises(ValueError):
        json.loads(first)
    hostile.configure("echo_key_sse", kind="error_event")
    error_event = raw_call(hostile, "echo_key_sse", stream=True)
    payload = json.loads(error_event.events()[0])
    assert KEY in payload["error"]["message"] and payload["error"]["param"] == KEY


def test_hostile_server_trickles_binary_speech(hostile: Hostile) -> None:
    hostile.configure("trickle_body", interval=0.03)
    raw = raw_call(hostile, "trickle_body", route="/v1/audio/speech", seconds=0.4)
    assert raw.headers["content-type"] == "audio/mpeg"
    assert raw.body.startswith(b"ID3") and 5 <= len(raw.body) <= 20


def test_hostile_server_records_requests_and_client_hangups(hostile: Hostile) -> None:
    hostile.configure("trickle_body", interval=0.03)
    raw_call(hostile, "trickle_body", seconds=0.2)  # hangs up while the body trickles
    raw_call(hostile, "good")
    assert hostile.wait_for(lambda h: bool(h.closed_early("trickle_body")))
    trickled, good = hostile.requests
    assert trickled.behaviour == "trickle_body" and not trickled.finished
    assert trickled.params == {"interval": 0.03} and trickled.key == KEY
    assert good.finished and not good.client_closed and good.bytes_sent > 0
    assert hostile.count() == 2 and hostile.count("good") == 1
    assert hostile.closed_early() == [trickled]
