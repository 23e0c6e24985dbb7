"""Canonical answers of the non-chat model types: check them, build msgflux's views of them,
and build them from a user-written model's msgflux answer (the raw gateway path).

The canonical forms are OpenAI's: ``{"data": [{"embedding": [...], "index": 0}], "usage"}``
for embeddings, ``{"results": [{"flagged": ...}]}`` for moderation, audio bytes for speech,
``{"text": ...}`` (or plain text) for transcription, ``{"data": [{"url"|"b64_json"}]}`` for
images. Chat lives in :mod:`msgflux.models.chat`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any

import orjson

from msgflux.exceptions import APIResponseValidationError
from msgflux.models.request import (
    EMBEDDINGS,
    IMAGES,
    MODERATIONS,
    SPEECH,
    TRANSCRIPTIONS,
    Request,
)
from msgflux.models.response import Metadata, ModelResponse, metadata_of

__all__ = ["canonical_of", "view_of", "view_of_payload"]

Who = tuple["str | None", "str | None"]
_TEXT_FORMATS = ("text", "srt", "vtt")


def _bad(who: Who, what: str, body: Any = None) -> APIResponseValidationError:
    return APIResponseValidationError(what, provider=who[0], model_id=who[1], body=body)


def _request_id(headers: Mapping[str, str] | None) -> str | None:
    return headers.get("x-request-id") if headers is not None else None


def _json(content: bytes, who: Who) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise _bad(who, f"the answer is not valid JSON: {exc}", content[:500]) from None


def _embeddings(payload: Any, req: Request, who: Who) -> ModelResponse:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or not data:
        raise _bad(who, "an embeddings answer needs a non-empty data list", payload)
    for item in data:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(vector, (list, str)):
            raise _bad(who, "an embeddings answer without data[].embedding", payload)
        if isinstance(vector, list) and not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector
        ):
            raise _bad(who, "an embedding must be a list of numbers", payload)
        index = item.get("index", 0)
        if isinstance(index, bool) or not isinstance(index, int):
            raise _bad(who, "data[].index must be an int", payload)
    items = sorted(data, key=lambda item: item.get("index", 0))
    vectors = [_vector(item["embedding"], who) for item in items]
    resp = ModelResponse()
    resp.response_type = "text_embedding"
    resp.data = vectors[0] if req.single else vectors
    metadata_of(resp)["usage"] = payload.get("usage")
    return resp


def _vector(value: Any, who: Who) -> list[float]:
    if isinstance(value, list):
        return value
    import array

    try:  # encoding_format="base64": little-endian float32
        floats = array.array("f")
        floats.frombytes(base64.b64decode(value, validate=True))
    except ValueError:
        raise _bad(who, "a base64 embedding that does not decode to float32 values") from None
    return floats.tolist()


def _moderation(payload: Any, req: Request, who: Who) -> ModelResponse:
    results = payload.get("results") if isinstance(payload, dict) else None
    if (
        not isinstance(results, list)
        or not results
        or not all(isinstance(r, dict) and isinstance(r.get("flagged"), bool) for r in results)
    ):
        raise _bad(who, "a moderation answer without results[].flagged", payload)
    resp = ModelResponse()
    resp.response_type = "moderation"
    flagged = any(r["flagged"] for r in results)
    resp.data = Metadata(safe=not flagged, results=results[0] if req.single else results)
    return resp


def _images(payload: Any, req: Request, who: Who) -> ModelResponse:
    data = payload.get("data") if isinstance(payload, dict) else None
    images = []
    for item in data if isinstance(data, list) else ():
        value = (item.get("url") or item.get("b64_json")) if isinstance(item, dict) else None
        if not isinstance(value, str):
            break
        images.append(value)
    if not images or len(images) != len(data or ()):
        raise _bad(who, "an images answer without data[].url/b64_json", payload)
    resp = ModelResponse()
    resp.response_type = "image_generation"
    resp.data = images[0] if len(images) == 1 else images
    metadata_of(resp)["usage"] = payload.get("usage")
    return resp


def _transcript(content: bytes, req: Request, who: Who) -> tuple[Any, ModelResponse]:
    fmt = req.body.get("response_format", "json")
    transcript = Metadata()
    usage = None
    if fmt in _TEXT_FORMATS:
        text = content.decode("utf-8", "replace")
        transcript["text"] = text
        payload: Any = text
    else:
        payload = _json(content, who)
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
            raise _bad(who, "a transcription answer without text", payload)
        transcript["text"] = payload["text"]
        for key in ("language", "duration", "words", "segments"):
            if payload.get(key) is not None:
                transcript[key] = payload[key]
        usage = payload.get("usage")
    resp = ModelResponse()
    resp.response_type = "transcript"
    resp.data = transcript
    metadata_of(resp)["usage"] = usage
    return payload, resp


def view_of(
    req: Request, content: bytes, headers: Mapping[str, str] | None, who: Who
) -> ModelResponse:
    """msgflux's view of a non-chat answer body (checked); ``raw`` is its canonical form."""
    kind = req.kind
    if kind == SPEECH:
        resp = ModelResponse()
        resp.response_type = "audio_generation"
        resp.data = content
        resp.raw = content
        metadata_of(resp)["content_type"] = headers.get("content-type") if headers else None
    elif kind == TRANSCRIPTIONS:
        raw, resp = _transcript(content, req, who)
        resp.raw = raw
    else:
        return view_of_payload(req, _json(content, who), headers, who)
    metadata_of(resp)["request_id"] = _request_id(headers)
    return resp


_JSON_VIEWS = {EMBEDDINGS: _embeddings, MODERATIONS: _moderation, IMAGES: _images}


def view_of_payload(
    req: Request, payload: Any, headers: Mapping[str, str] | None, who: Who
) -> ModelResponse:
    """msgflux's view of a parsed JSON answer (embeddings, moderation, images)."""
    build = _JSON_VIEWS.get(req.kind)
    if build is None:
        raise ValueError(f"no JSON view for request kind {req.kind!r}")
    resp = build(payload, req, who)
    resp.raw = payload
    metadata_of(resp)["request_id"] = _request_id(headers)
    return resp


def canonical_of(req: Request, result: Any, model: str) -> Any:
    """The canonical answer for a non-chat msgflux answer (a user-written model's)."""
    raw = getattr(result, "raw", None)
    if raw is not None:
        return raw
    data = getattr(result, "data", result)
    metadata = getattr(result, "metadata", None) or {}
    usage = metadata.get("usage") if isinstance(metadata, dict) else None
    kind = req.kind
    if kind == EMBEDDINGS:
        vectors = [data] if req.single else list(data)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "model": model,
            "usage": usage or {"prompt_tokens": 0, "total_tokens": 0},
        }
    if kind == MODERATIONS:
        results = data.get("results") if isinstance(data, dict) else None
        if isinstance(results, dict):
            results = [results]
        return {
            "id": f"modr-msgflux-{time.monotonic_ns():x}",
            "model": model,
            "results": results or [],
        }
    if kind == SPEECH:
        return data if isinstance(data, (bytes, bytearray)) else bytes(data or b"")
    if kind == TRANSCRIPTIONS:
        return dict(data) if isinstance(data, dict) else {"text": str(data)}
    if kind == IMAGES:
        images = data if isinstance(data, list) else [data]
        key = "b64_json" if req.body.get("response_format") == "b64_json" else "url"
        return {"created": int(time.time()), "data": [{key: image} for image in images]}
    raise ValueError(f"no canonical form for request kind {kind!r}")
