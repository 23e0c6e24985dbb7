"""What a native lane to Claude on a cloud (Bedrock, Vertex AI) says it left out: the client's
betas the cloud would refuse (:mod:`msgflux.formats.anthropic.betas`), named in the answer's
``dropped`` list (the server's ``x-msgflux-dropped`` header), as a translated lane names what
it drops."""

from __future__ import annotations

from collections.abc import Collection

from msgflux.formats.anthropic.betas import DROPPED, refused
from msgflux.models.native import NativeAnswer, NativeStream
from msgflux.models.request import Request
from msgflux.models.response import metadata_of

__all__ = ["noted_betas"]


def noted_betas(
    answer: NativeAnswer | NativeStream, req: Request, allowed: Collection[str]
) -> NativeAnswer | NativeStream:
    """``answer``, its ``dropped`` list naming ``anthropic-beta`` when the request's betas held
    some not in ``allowed`` (left out of what was sent)."""
    native = req.native
    if native is not None and refused(native.headers, allowed):
        meta = metadata_of(answer)
        dropped = list(meta.get("dropped") or ())
        if DROPPED not in dropped:
            meta["dropped"] = [*dropped, DROPPED]
    return answer
