"""Anthropic's Messages API on the server: ``POST /v1/messages`` and
``/v1/messages/count_tokens`` (each also without ``/v1``), on the configured chat gateways.

``/v1/messages`` is a model endpoint like OpenAI's (:func:`.endpoints.handle`) in the
``messages`` family (:mod:`msgflux.formats.anthropic`): an ``anthropic`` deployment gets the
request as the client sent it, every field and the client's ``anthropic-version`` and
``anthropic-beta`` included (a native lane; Claude Code's newest fields pass untouched); any
other deployment gets it translated, and the answer comes back as a Messages API answer or
event stream. Every error is Anthropic's body ``{"type": "error", "error": {"type",
"message"}}`` with the status the OpenAI endpoints use, except that every deployment
overloaded is Anthropic's 529 ``overloaded_error``. The key may come as ``x-api-key`` (what
Anthropic clients send) or ``Authorization: Bearer``.

``count_tokens`` is answered by the upstream, never estimated: the gateway's first deployment
whose breaker is not open must speak the Messages API; it gets the request (the client's body,
``model`` set to the deployment's model id) once, with no fallback. Any other deployment there
is a 404 ``not_found_error`` saying so.
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from msgflux.exceptions import UnsupportedFeatureError
from msgflux.formats import MESSAGES, family
from msgflux.models.request import CHAT
from msgflux.server.asgi import JSON, Headers, Receive, Scope, Send, read_body, send_bytes
from msgflux.server.endpoints import (
    Endpoint,
    authenticate,
    route_for,
    send_family_error,
)
from msgflux.server.errors import HTTPError, from_gateway, from_validation
from msgflux.server.runtime import Runtime

__all__ = ["COUNT_TOKENS", "ENDPOINTS", "count_tokens"]

logger = logging.getLogger("msgflux.server")

ENDPOINTS = (Endpoint("/messages", CHAT, "chat_completion", MESSAGES),)
"""The Messages API's model endpoint (without ``/v1``)."""

COUNT_TOKENS = "/messages/count_tokens"


async def count_tokens(runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v1/messages/count_tokens`` (see the module docstring)."""
    fam = family(MESSAGES)
    try:
        principal = authenticate(runtime, scope)
        body = await read_body(scope, receive, runtime.config.server.max_body_bytes)
        payload, _ = ENDPOINTS[0].parse(scope, body)
        route = route_for(runtime, principal, payload.get("model"), ENDPOINTS[0])
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope["headers"]
            if k.decode("latin-1") in fam.forward_headers
        }
        try:
            request = route.gateway.request(payload, api=MESSAGES, headers=headers)
        except (TypeError, ValueError) as exc:
            raise from_validation(exc) from None
        gateway = route.gateway
        health = (await asyncio.to_thread(gateway.health))["deployments"]
        deployment, model = next(
            (
                (n, m)
                for n, m in zip(gateway.model_names, gateway.models, strict=True)
                if health[n]["status"] != "down"
            ),
            (gateway.model_names[0], gateway.models[0]),
        )
        try:
            answer = await model.acount_tokens(request)
        except UnsupportedFeatureError:
            raise HTTPError(
                404,
                f"count_tokens is answered by the upstream of a deployment that speaks the "
                f"Messages API; the deployment `{route.name}` would use now is `{deployment}` "
                f"({model.provider}/{model.model_id}), which has no token counting endpoint",
            ) from None
        except Exception as exc:
            raise from_gateway(exc) from None
        out: Headers = [(b"x-msgflux-deployment", deployment.encode())]
        await send_bytes(send, 200, orjson.dumps(answer), JSON, out)
    except HTTPError as exc:
        await send_family_error(send, exc, fam)
