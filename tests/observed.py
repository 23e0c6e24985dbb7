"""The gateway the observability tests share: two OpenAI-protocol deployments on the test
upstream, ``primary`` (gpt-4o) then ``backup`` (gpt-4o-mini), named ``chat``, breakers off
unless asked (so each test sees plain fallback)."""

from __future__ import annotations

from typing import Any

import msgflux as mf
from tests.upstream import Upstream


def pair(upstream: Upstream, **options: Any) -> mf.ModelGateway:
    url = upstream.base_url
    options.setdefault("breaker", False)
    options.setdefault("name", "chat")
    return mf.ModelGateway(
        [
            {
                "model_name": "primary",
                "model": mf.Model.chat_completion("openai/gpt-4o", base_url=url),
            },
            {
                "model_name": "backup",
                "model": mf.Model.chat_completion("openai/gpt-4o-mini", base_url=url),
            },
        ],
        **options,
    )
