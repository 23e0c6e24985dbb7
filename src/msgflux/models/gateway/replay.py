"""An answer no deployment gave this time: a canonical completion made into the answer of a
call's path (what a wrapper returns when it answers itself: a cache hit, a canned answer).

msgflux's path gets a ``ModelResponse`` (its view of the completion) or, for a stream, a
``ModelStreamResponse`` replaying it chunk by chunk; the raw path a
:class:`~.raw.RawAnswer` / :class:`~.raw.RawStream` in the request's API family. Either way
``metadata.gateway`` names the deployment and says no attempt was made and nothing was spent,
and the call's record (no attempt, cost 0) goes to the gateway's ``on_complete`` hooks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from msgflux.formats import family
from msgflux.formats.openai_chat import completion_chunks
from msgflux.models.chat import ChatStream, completion_view
from msgflux.models.gateway.raw import RawAnswer, RawStream
from msgflux.models.gateway.wrappers import RAW, Call
from msgflux.models.request import CHAT, Request
from msgflux.models.response import Metadata, ModelStreamResponse, Pair, metadata_of

if TYPE_CHECKING:
    from msgflux.models.gateway.gateway import ModelGateway

__all__ = ["replay"]


def _meta(deployment: str, call: Call) -> dict[str, Any]:
    """``metadata.gateway`` of a replayed answer: no attempt, nothing spent, and what the
    wrappers said (``call.meta``: the cache's verdict and age)."""
    return {
        "model_name": deployment,
        "attempts": 0,
        "fallbacks": [],
        "hedged": False,
        "history": [],
        "usage": {"input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0},
        "cost": 0.0,
        **call.meta,
    }


def _who(gateway: ModelGateway, deployment: str) -> tuple[str, str]:
    for model, name in zip(gateway.models, gateway.model_names, strict=True):
        if name == deployment:
            return str(model.provider), str(model.model_id)
    return "wrapper", deployment


def _pairs(chunks: list[dict[str, Any]], state: ChatStream) -> Iterator[Pair]:
    for chunk in chunks:
        yield chunk, state.feed(chunk)
    calls = state.finish()
    if calls is not None:
        yield None, calls


async def _apairs(chunks: list[dict[str, Any]], state: ChatStream) -> AsyncIterator[Pair]:
    for pair in _pairs(chunks, state):
        yield pair


def replay(gateway: ModelGateway, call: Call, completion: dict[str, Any], deployment: str) -> Any:
    """The answer of ``call``'s path for ``completion`` (see the module docstring)."""
    request = call.request
    req = request if request is not None else Request(CHAT, {"messages": []})
    who = _who(gateway, deployment)
    meta = _meta(deployment, call)
    record = gateway._replayed(call, who, meta)
    native = req.native
    fam = family(native.family) if native is not None else None
    if call.stream:
        stream = ModelStreamResponse()
        state = ChatStream(stream, who)
        chunks = completion_chunks(completion)
        source = _apairs(chunks, state) if call.is_async else _pairs(chunks, state)
        stream.set_pairs(source)
        stream.metadata = Metadata(gateway=meta)
        if call.path == RAW:
            return RawStream(stream, req, meta, [], record, fam)
        return stream
    view = completion_view(completion, req, who)
    metadata_of(view)["gateway"] = meta
    if call.path == RAW:
        return RawAnswer(view, req, meta, [], record, fam)
    return view
