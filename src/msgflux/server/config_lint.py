"""What ``msgflux config check`` reports beyond a config's validity, every problem in one run:

* ``${VAR}`` references whose variable is not set (all of them, with where they are);
* deployments with no credentials from any source (every call would fail);
* a ``server.state`` Redis that does not answer (a warning: the server starts, and falls back
  to its own memory until Redis is back);
* an OpenAI-compatible ``base_url`` that does not end with an API version (a hint: those
  servers answer under ``/v1``, and a missing suffix is a 404 at every call).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from msgflux.server.config_specs import ServerConfig
from msgflux.server.config_yaml import load_yaml, missing_variables
from msgflux.server.runtime import Runtime

__all__ = ["Report", "credentials", "hints", "missing_env", "state_reachable"]

_VERSIONED = re.compile(r"/v\d+[a-z0-9]*$|/openai$")
"""A base URL's end that names an API version (``/v1``, ``/v1beta``) or Azure's root."""


class Report:
    """Errors (exit 1) and warnings of one check."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []


def missing_env(text: str, source: str, env: Mapping[str, str]) -> list[str]:
    """One line per ``${VAR}`` that ``env`` lacks (the config cannot be read without them)."""
    data = load_yaml(text, source)
    return [
        f"{path}: environment variable {name} is not set (set it, or give a default: "
        f"${{{name}:-value}})"
        for path, name in missing_variables(data, "", env)
    ]


def credentials(runtime: Runtime) -> list[str]:
    """One line per deployment whose model has no credentials from any source."""
    out = []
    for name, route in runtime.routes.items():
        gateway: Any = route.gateway
        for deployment, model in zip(gateway.model_names, gateway.models, strict=True):
            source = getattr(model, "credential_source", None)
            where = source() if callable(source) else None
            if isinstance(where, str) and where.startswith("missing"):
                fix = where.removeprefix("missing: ")
                out.append(
                    f"gateways.{name}: deployment {deployment} ({model.provider}/"
                    f"{model.model_id}) has no credentials: {fix}; every call to it would fail"
                )
    return out


def hints(config: ServerConfig) -> list[str]:
    """Likely mistakes that are not errors (a base URL without its API version)."""
    out = []
    for name, spec in config.gateways.items():
        for i, dep in enumerate(spec.deployments):
            base = dep.params.get("base_url")
            provider = dep.model.partition("/")[0]
            if not isinstance(base, str) or provider in ("anthropic", "gemini", "azure", "local"):
                continue
            if not _VERSIONED.search(base.rstrip("/")):
                out.append(
                    f"gateways.{name}.models[{i}].base_url: {base!r} does not end with an API "
                    "version; OpenAI-compatible servers answer under /v1 (e.g. "
                    f"{base.rstrip('/')}/v1), and without it every call is a 404"
                )
    return out


def state_reachable(url: str, timeout: float = 1.0) -> str | None:
    """None when the Redis at ``url`` answers a PING within ``timeout``, else why not."""
    from msgflux.server.health import StateProbe

    async def probe() -> tuple[bool, str | None]:
        state = StateProbe(url, timeout=timeout)
        try:
            return await state.reachable()
        finally:
            await state.aclose()

    ok, error = asyncio.run(probe())
    return None if ok else (error or "no answer")
