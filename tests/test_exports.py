"""The public surface: what each public package exports, pinned (a change here is an API change)."""

from __future__ import annotations

import importlib

import pytest

import msgflux

SURFACE = {
    "msgflux": [
        "BaseModel",
        "Breaker",
        "Clock",
        "Hedge",
        "LeastBusy",
        "LeastLatency",
        "ManualClock",
        "MemoryStore",
        "Model",
        "ModelGateway",
        "ModelResponse",
        "ModelStreamResponse",
        "Ordered",
        "RedisState",
        "RoundRobin",
        "StateStore",
        "Strategy",
        "Weighted",
        "set_envs",
    ],
    "msgflux.models.gateway": [
        "Admission",
        "Breaker",
        "Call",
        "GatewayEvent",
        "Hedge",
        "LeastBusy",
        "LeastLatency",
        "MemoryCache",
        "MemoryStore",
        "Model",
        "ModelGateway",
        "Ordered",
        "Policy",
        "RawAnswer",
        "RawStream",
        "RedisCache",
        "RedisState",
        "ResponseCache",
        "RoundRobin",
        "Settlement",
        "Skip",
        "StateStore",
        "Strategy",
        "Weighted",
        "Wrapper",
        "utc_now",
    ],
    "msgflux.exceptions": [
        "APIConnectionError",
        "APIResponseValidationError",
        "APIStatusError",
        "APITimeoutError",
        "AbortRequestedError",
        "Attempt",
        "AuthenticationError",
        "BadRequestError",
        "ConflictError",
        "ContentPolicyError",
        "ContextWindowExceededError",
        "InternalServerError",
        "ModelRouterError",
        "MsgFluxError",
        "NotFoundError",
        "PermissionDeniedError",
        "ProviderError",
        "RateLimitError",
        "RequestTimeoutError",
        "ResponseTooLargeError",
        "StreamInterruptedError",
        "UnsupportedFeatureError",
        "is_overloaded",
        "is_transient",
    ],
    "msgflux.models.registry": [
        "lookup",
        "model_registry",
        "model_types",
        "providers",
        "register",
        "register_model",
    ],
    "msgflux.models.compaction": ["ContextTokenEstimate", "ModelCompaction"],
    "msgflux.models.response": [
        "CONTENT",
        "SKIP",
        "LMStreamEvent",
        "Metadata",
        "ModelResponse",
        "ModelStreamResponse",
        "StreamFinalState",
        "metadata_of",
    ],
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_the_exported_surface_is_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(SURFACE[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name


def test_importing_msgflux_imports_neither_redis_nor_llama_cpp() -> None:
    import subprocess
    import sys

    code = (
        "import sys, msgflux; from msgflux import Model, ModelGateway; "
        "assert 'redis' not in sys.modules and 'llama_cpp' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('redis', 'llama')))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_settlement_is_exported_where_settle_takes_it() -> None:
    from msgflux.models.gateway import Settlement, StateStore

    assert "s" in StateStore.settle.__code__.co_varnames
    assert Settlement.__module__ == "msgflux.models.gateway.state"
    assert msgflux.ModelGateway is msgflux.models.gateway.ModelGateway
