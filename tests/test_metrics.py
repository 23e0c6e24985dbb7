"""msgflux.metrics: Prometheus output, parsed back with prometheus-client's own parser."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import msgflux as mf
from msgflux.exceptions import ModelRouterError
from msgflux.metrics import GatewayMetrics
from msgflux.models.base import BaseModel
from msgflux.models.types import ChatCompletionModel
from tests.conftest import TEST_KEYS
from tests.observed import pair
from tests.upstream import Reply, Upstream

USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 10,
    "prompt_tokens_details": {"cached_tokens": 40},
}


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_calls_attempts_fallbacks_tokens_and_cost(upstream_env: Upstream) -> None:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry=registry)
    upstream_env.set_default(Reply(usage=USAGE))
    upstream_env.script(Reply(status=500), model="gpt-4o")
    gw = pair(upstream_env, on_complete=metrics.observe, breaker=False)
    costs = [gw(messages="hi").metadata.gateway["cost"] for _ in range(2)]
    found = samples(registry)
    assert (
        value(found, "msgflux_gateway_calls_total", gateway="chat", outcome="success", error="none")
        == 2
    )
    attempts = "msgflux_gateway_attempts_total"
    assert value(found, attempts, gateway="chat", deployment="primary", provider="openai",
                 outcome="error", error="InternalServerError") == 1  # fmt: skip
    assert value(found, attempts, gateway="chat", deployment="primary", provider="openai",
                 outcome="success", error="none") == 1  # fmt: skip
    assert value(found, attempts, gateway="chat", deployment="backup", provider="openai",
                 outcome="success", error="none") == 1  # fmt: skip
    fallbacks = "msgflux_gateway_fallbacks_total"
    assert value(found, fallbacks, gateway="chat", deployment="primary", outcome="success") == 1
    tokens = "msgflux_gateway_tokens_total"
    assert value(found, tokens, gateway="chat", deployment="primary", type="input") == 100
    assert value(found, tokens, gateway="chat", deployment="backup", type="cached_input") == 40
    cost = "msgflux_gateway_cost_usd_total"
    assert value(found, cost, gateway="chat", deployment="backup") == pytest.approx(costs[0])
    assert value(found, cost, gateway="chat", deployment="primary") == pytest.approx(costs[1])
    duration = "msgflux_gateway_call_duration_seconds_count"
    assert value(found, duration, gateway="chat", deployment="primary", outcome="success") == 1


def test_failures_and_stream_latencies(upstream_env: Upstream) -> None:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry=registry)
    gw = pair(upstream_env, on_complete=metrics.observe, breaker=False)
    list(gw(messages="hi", stream=True))
    upstream_env.set_default(Reply(status=503))
    with pytest.raises(ModelRouterError):
        gw(messages="hi")
    found = samples(registry)
    calls = "msgflux_gateway_calls_total"
    assert value(found, calls, gateway="chat", outcome="error", error="ModelRouterError") == 1
    ttft = "msgflux_gateway_time_to_first_chunk_seconds_count"
    assert value(found, ttft, gateway="chat", deployment="primary") == 1
    fallbacks = "msgflux_gateway_fallbacks_total"
    assert value(found, fallbacks, gateway="chat", deployment="primary", outcome="error") == 1
    assert value(found, fallbacks, gateway="chat", deployment="backup", outcome="error") == 0


def test_watched_gauges_breaker_in_flight_and_state(upstream_env: Upstream) -> None:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry=registry)
    upstream_env.set_default(Reply(status=500), model="gpt-4o")
    gw = pair(
        upstream_env, on_complete=metrics.observe, breaker={"failure_threshold": 1, "open_for": 60}
    )
    metrics.watch(gw)
    stream = gw(messages="hi", stream=True)  # primary fails (its breaker opens), backup streams
    found = samples(registry)
    assert value(found, "msgflux_gateway_breaker_state", gateway="chat", deployment="primary") == 2
    assert value(found, "msgflux_gateway_breaker_state", gateway="chat", deployment="backup") == 0
    assert value(found, "msgflux_gateway_in_flight", gateway="chat", deployment="backup") == 1
    assert value(found, "msgflux_gateway_state_healthy", gateway="chat") == 1
    list(stream)
    assert (
        value(samples(registry), "msgflux_gateway_in_flight", gateway="chat", deployment="backup")
        == 0
    )


class Odd(Exception):
    """An error outside msgflux's hierarchy, its message a client's text."""


class Exploding(BaseModel, ChatCompletionModel):
    provider = "mine"
    model_id = "x"

    def __call__(self, **kwargs: Any) -> Any:
        raise Odd("client text " + TEST_KEYS["OPENAI"])


def test_error_labels_come_from_a_fixed_set() -> None:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry=registry)
    gw = mf.ModelGateway(
        [{"model_name": "a", "model": Exploding()}],
        name="chat",
        on_complete=metrics.observe,
        raise_on=[Odd],
    )
    with pytest.raises(Odd):
        gw(messages="hi")
    text = generate_latest(registry).decode()
    assert 'error="other"' in text and "Odd" not in text
    assert TEST_KEYS["OPENAI"] not in text


def test_secrets_never_reach_labels() -> None:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry=registry)
    from msgflux import _secrets

    secret = "sk-label-secret-0042"
    _secrets.register(secret)
    gw = mf.ModelGateway(
        [
            {
                "model_name": f"dep-{secret}",
                "model": "vllm/x",
                "price": {"input_per_mtok": 0, "output_per_mtok": 0},
            }
        ],
        name=f"gw-{secret}",
    )
    metrics.watch(gw)
    assert secret not in generate_latest(registry).decode()


def test_two_metrics_need_two_registries() -> None:
    registry = CollectorRegistry()
    GatewayMetrics(registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        GatewayMetrics(registry=registry)
    GatewayMetrics(registry=registry, namespace="other")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"namespace": "a-b"}, ValueError),
        ({"namespace": ""}, ValueError),
        ({"registry": 3}, TypeError),
    ],
)
def test_options_are_validated(kwargs: dict[str, Any], error: type[Exception]) -> None:
    kwargs.setdefault("registry", CollectorRegistry())
    with pytest.raises(error):
        GatewayMetrics(**kwargs)


def test_observe_and_watch_reject_other_values() -> None:
    metrics = GatewayMetrics(registry=CollectorRegistry())
    with pytest.raises(TypeError, match="observe takes a CallRecord"):
        metrics.observe({"gateway": "x"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="watch takes a ModelGateway"):
        metrics.watch(object())
