"""``msgflux config import-litellm``: LiteLLM proxy configs written from LiteLLM's documentation
(``tests/tools/litellm_configs/``, each naming its page) converted exactly, every setting that
does not carry over reported, the output accepted by the strict loader, and one config
round-tripped into a running ``msgflux serve`` answering the openai SDK.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from typer.testing import CliRunner

from msgflux.cli import app
from msgflux.server.config import parse_config
from msgflux.server.runtime import build_runtime
from msgflux.tools.litellm_import import (
    Imported,
    LiteLLMImportError,
    import_litellm,
    parse_litellm,
    render,
)
from tests.server.harness import run_cli, start, write_config
from tests.upstream import Reply, Upstream

CONFIGS = Path(__file__).parent / "litellm_configs"
FIXTURES = sorted(p.name for p in CONFIGS.glob("*.yaml") if not p.name.endswith(".expected.yaml"))
MASTER_KEY = "sk-litellm-master-key-1234"
ENV = {
    "AZURE_API_KEY": "a",
    "AZURE_API_KEY_EU": "a",
    "AZURE_API_KEY_CA": "a",
    "AZURE_API_BASE": "https://example.openai.azure.com",
    "AZURE_API_VERSION": "2024-10-21",
    "OPENAI_API_KEY": "o",
    "ANTHROPIC_API_KEY": "c",
    "REDIS_PASSWORD": "secret",
    "REDIS_HOST": "127.0.0.1",
    "LITELLM_MASTER_KEY": MASTER_KEY,
    "UPSTREAM_API_BASE": "http://127.0.0.1:9/v1",
    "UPSTREAM_KEY": "u",
    "AWS_REGION_NAME": "us-east-1",
}
MESSAGES: Any = [{"role": "user", "content": "Who was Frank Rosenblatt?"}]


def imported(name: str) -> Imported:
    return import_litellm(parse_litellm((CONFIGS / name).read_text()))


def convert(text: str) -> Imported:
    return import_litellm(parse_litellm(text))


# -- exact outputs ----------------------------------------------------------------------------
def test_configs_quick_start() -> None:
    out = imported("configs_quick_start.yaml")
    assert out.config == {
        "gateways": {
            "gpt-4o": {
                "strategy": "weighted",
                "models": [
                    {
                        "model_name": "gpt-4o-eu",
                        "model": "azure/gpt-4o-eu",
                        "base_url": "https://my-endpoint-europe-berri-992.openai.azure.com/",
                        "api_key": "${AZURE_API_KEY_EU}",
                        "rpm": 6,
                    },
                    {
                        "model_name": "gpt-4o-ca",
                        "model": "azure/gpt-4o-ca",
                        "base_url": "https://my-endpoint-canada-berri992.openai.azure.com/",
                        "api_key": "${AZURE_API_KEY_CA}",
                        "rpm": 6,
                    },
                ],
            },
            # LiteLLM reads AWS_REGION_NAME when a Bedrock deployment names no region
            "bedrock-claude-v1": {
                "models": [
                    {
                        "model_name": "anthropic.claude-instant-v1",
                        "model": "bedrock/anthropic.claude-instant-v1",
                        "aws_region_name": "${AWS_REGION_NAME}",
                    }
                ]
            },
            "anthropic-claude": {
                "models": [
                    {
                        "model_name": "anthropic.claude-instant-v1",
                        "model": "bedrock/anthropic.claude-instant-v1",
                        "aws_region_name": "us-east-1",
                    }
                ]
            },
            "vllm-models": {
                "models": [
                    {
                        "model_name": "facebook/opt-125m",
                        "model": "openai_compatible/facebook/opt-125m",
                        "base_url": "http://0.0.0.0:4000/v1",
                        "api_key": "none",
                        "rpm": 1440,
                    }
                ]
            },
        },
        "server": {
            "keys": [
                {
                    "name": "master",
                    "key_sha256": hashlib.sha256(b"sk-1234").hexdigest(),
                    "models": "*",
                }
            ]
        },
    }
    assert out.unmapped == [
        "model_list[4] (vllm-models).model_info.version: LiteLLM model metadata; ignored",
        "model_list[5] (*): wildcard routing (model_name or model with `*`) is not supported; "
        "deployment not imported (list the models you serve instead)",
        "litellm_settings.drop_params: msgflux sends the request's fields upstream as the "
        "client sent them",
        "litellm_settings.success_callback: logging callbacks are not supported",
        "general_settings.alerting: alerting is not supported",
    ]
    # the strategy says why it is there
    comment = " ".join(out.comments[("gateways", "gpt-4o", "strategy")])
    assert "LiteLLM load-balances the 2 deployments named gpt-4o (simple-shuffle)" in comment
    assert "uniform random pick (every deployment has the same rpm)" in comment


def test_load_balancing_weights_by_rpm_and_aliases() -> None:
    out = imported("load_balancing.yaml")
    group = {
        "max_retries": 2,
        "timeout": 30,
        "strategy": "weighted",
        "models": [
            {
                "model_name": name,
                "model": f"azure/{name}",
                "base_url": url,
                "api_key": "${AZURE_API_KEY}",
                "rpm": rpm,
                "weight": rpm,
            }
            for name, url, rpm in [
                ("gpt-turbo-small-eu", "https://my-endpoint-europe-berri-992.openai.azure.com/", 6),
                ("gpt-turbo-small-ca", "https://my-endpoint-canada-berri992.openai.azure.com/", 6),
                ("gpt-turbo-large", "https://openai-france-1234.openai.azure.com/", 1440),
            ]
        ],
    }
    assert out.config == {
        "gateways": {"gpt-3.5-turbo": group, "gpt-4": group},
        # the literal password is percent-encoded into the URL
        "server": {"state": "redis://:p%40ss%2Fword@10.0.0.7:1992"},
    }
    assert out.unmapped == []
    assert out.comments[("gateways", "gpt-4")] == [
        "router_settings.model_group_alias: gpt-4 -> gpt-3.5-turbo"
    ]


def test_reliability_fallbacks_follow_litellms_order() -> None:
    out = imported("reliability_fallbacks.yaml")
    options = {"max_retries": 3, "timeout": 10, "breaker": {"failure_threshold": 4, "open_for": 30}}
    gpt4_ca = {
        "model_name": "gpt-4-ca",
        "model": "azure/gpt-4-ca",
        "base_url": "https://my-endpoint-canada-berri992.openai.azure.com/",
        "api_key": "${AZURE_API_KEY}",
        "rpm": 6,
    }
    by_id = {
        "model_name": "my-specific-model-id",
        "model": "openai/gpt-4",
        "api_key": "${OPENAI_API_KEY}",
    }
    claude = {
        "model_name": "claude-3-opus-20240229",
        "model": "anthropic/claude-3-opus-20240229",
        "api_key": "${ANTHROPIC_API_KEY}",
    }
    assert out.config == {
        "gateways": {
            # gpt-4's deployments, then gpt-4's own fallback (anthropic-claude), whose
            # default fallback (my-specific-model-id) is already in the list
            "gpt-3.5-turbo": {
                **options,
                "models": [
                    {
                        "model_name": "chatgpt-v-2",
                        "model": "azure/chatgpt-v-2",
                        "base_url": "https://my-endpoint-europe-berri-992.openai.azure.com/",
                        "api_key": "${AZURE_API_KEY}",
                        "rpm": 6,
                    },
                    gpt4_ca,
                    by_id,
                    claude,
                ],
            },
            # LiteLLM weighs by the first deployment's rpm: the one without rpm weighs 0
            "gpt-4": {
                **options,
                "strategy": "weighted",
                "models": [
                    {**gpt4_ca, "weight": 6},
                    {**by_id, "weight": 0},
                    {**claude, "weight": 0},
                ],
            },
            "anthropic-claude": {**options, "models": [claude, by_id]},
        }
    }
    assert out.unmapped == []
    assert out.comments[("gateways", "gpt-3.5-turbo", "models", 1)] == [
        "fallback gpt-4: LiteLLM tries it once every gpt-3.5-turbo deployment has failed"
    ]


def test_routing_weights() -> None:
    out = imported("routing_weights.yaml")
    models = out.config["gateways"]["gpt-3.5-turbo"]["models"]
    assert [(m["model_name"], m["weight"]) for m in models] == [
        ("chatgpt-v-2", 9),
        ("chatgpt-functioncalling", 1),
    ]
    assert models[0] == {
        "model_name": "chatgpt-v-2",
        "model": "azure/chatgpt-v-2",
        "base_url": "${AZURE_API_BASE}",
        "api_key": "${AZURE_API_KEY}",
        "api_version": "${AZURE_API_VERSION}",
        "weight": 9,
    }


def test_configs_load_balancing_reports_what_does_not_carry_over() -> None:
    out = imported("configs_load_balancing.yaml")
    hf = (
        "litellm_params.model 'huggingface/HuggingFaceH4/zephyr-7b-beta': no msgflux provider "
        "for LiteLLM's 'huggingface'; deployment not imported"
    )
    assert out.unmapped == [
        f"model_list[0] (zephyr-beta): {hf}",
        f"model_list[1] (zephyr-beta): {hf}",
        f"model_list[2] (zephyr-beta): {hf}",
        "litellm_settings.context_window_fallbacks: a gateway falls back on every error; a "
        "fallback used only when the context window is exceeded cannot be expressed (add it "
        "to `fallbacks` if falling back to it on any error is acceptable)",
        "fallbacks of zephyr-beta: none of its deployments was imported; ignored",
        "litellm_settings.num_retries: router_settings.num_retries wins (as in LiteLLM); ignored",
    ]
    assert list(out.config["gateways"]) == ["gpt-4o", "gpt-3.5-turbo-16k", "gpt-4"]
    assert out.config["gateways"]["gpt-4o"] == {
        "max_retries": 2,
        "timeout": 30,
        "breaker": {"failure_threshold": 4},
        "models": [
            {
                "model_name": "gpt-4o",
                "model": "openai/gpt-4o",
                "api_key": "${OPENAI_API_KEY}",
                "rpm": 200,
            }
        ],
    }
    assert out.config["server"] == {"state": "redis://:${REDIS_PASSWORD}@redis.internal:1992"}


def test_the_documented_example_renders_exactly() -> None:
    out = imported("docs_example.yaml")
    text = render(out, "docs_example.yaml")
    assert text == (CONFIGS / "docs_example.expected.yaml").read_text()
    docs = (Path(__file__).parents[2] / "docs" / "litellm_import.md").read_text()
    source = (CONFIGS / "docs_example.yaml").read_text()
    body = "".join(line + "\n" for line in source.splitlines() if not line.startswith("#"))
    assert body.strip() in docs, "docs/litellm_import.md shows the fixture's LiteLLM config"
    assert text.split("gateways:\n", 1)[1] in docs, "and the importer's output"


@pytest.mark.parametrize("name", FIXTURES)
def test_the_rendered_yaml_is_the_config(name: str) -> None:
    out = imported(name)
    assert yaml.safe_load(render(out, name)) == out.config


# -- mapping rules ----------------------------------------------------------------------------
def one(text: str) -> tuple[dict[str, Any], Imported]:
    out = convert(text)
    return next(iter(out.config["gateways"].values())), out


def test_providers_map_to_ours_and_the_rest_is_reported() -> None:
    out = convert(
        """
model_list:
  - {model_name: a, litellm_params: {model: together_ai/meta-llama/Llama-3-8b, api_key: k}}
  - {model_name: b, litellm_params: {model: groq/llama3-8b-8192}}
  - {model_name: c, litellm_params: {model: ollama/llama3, api_base: "http://localhost:11434"}}
  - {model_name: d, litellm_params: {model: ollama_chat/llama3, api_base: "http://h:11434/v1/"}}
  - {model_name: e, litellm_params: {model: hosted_vllm/qwen, api_base: "http://h:8000/v1"}}
  - model_name: f
    litellm_params: {model: gemini/gemini-1.5-pro, api_key: os.environ/GEMINI_API_KEY}
  - {model_name: g, litellm_params: {model: claude-3-haiku-20240307}}
  - {model_name: h, litellm_params: {model: gpt-4o-mini}}
  - model_name: i
    litellm_params:
      {model: anthropic/claude-3, api_base: "https://api.anthropic.com/v1/messages"}
  - {model_name: j, litellm_params: {model: deepseek/deepseek-chat}}
  - model_name: k
    litellm_params: {model: mistral/mistral-small, temperature: 0.2, max_tokens: 20, seed: 3}
  - {model_name: l, litellm_params: {model: openrouter/x/y}}
  - {model_name: m, litellm_params: {model: cerebras/llama3.1-8b}}
  - {model_name: n, litellm_params: {model: sambanova/Meta-Llama-3.1-8B-Instruct}}
  - {model_name: o, litellm_params: {model: together_ai/m}}
  - {model_name: p, litellm_params: {model: hosted_vllm/m}}
  - {model_name: q, litellm_params: {model: vertex_ai/gemini-pro, vertex_project: x}}
  - {model_name: r, litellm_params: {model: text-completion-openai/gpt-3.5-turbo-instruct}}
  - {model_name: s, litellm_params: {model: vllm/facebook/opt-125m}}
  - {model_name: t, litellm_params: {model: cohere/command-r}}
  - {model_name: u, litellm_params: {model: command-r}}
  - {model_name: v, litellm_params: {model: my-model, custom_llm_provider: openai, api_base: "http://h/v1"}}
"""
    )
    got = {name: g["models"][0] for name, g in out.config["gateways"].items()}
    assert {k: (v["model"], v.get("base_url")) for k, v in got.items()} == {
        "a": ("together/meta-llama/Llama-3-8b", None),
        "b": ("groq/llama3-8b-8192", None),
        "c": ("ollama/llama3", "http://localhost:11434/v1"),
        "d": ("ollama/llama3", "http://h:11434/v1"),
        "e": ("vllm/qwen", "http://h:8000/v1"),
        "f": ("gemini/gemini-1.5-pro", None),
        "g": ("anthropic/claude-3-haiku-20240307", None),
        "h": ("openai/gpt-4o-mini", None),
        "i": ("anthropic/claude-3", "https://api.anthropic.com"),
        "j": ("deepseek/deepseek-chat", None),
        "k": ("mistral/mistral-small", None),
        "l": ("openrouter/x/y", None),
        "m": ("cerebras/llama3.1-8b", None),
        "n": ("sambanova/Meta-Llama-3.1-8B-Instruct", None),
        # LiteLLM's environment variables where they differ from ours
        "o": ("together/m", None),
        "p": ("vllm/m", "${HOSTED_VLLM_API_BASE}"),
        "v": ("openai_compatible/my-model", "http://h/v1"),
        "q": ("vertex/gemini-pro", None),
    }
    assert got["q"]["vertex_project"] == "x"
    assert got["o"]["api_key"] == "${TOGETHERAI_API_KEY}"
    assert got["f"]["api_key"] == "${GEMINI_API_KEY}"
    assert got["k"] == {
        "model_name": "mistral-small",
        "model": "mistral/mistral-small",
        "temperature": 0.2,
        "max_tokens": 20,
    }
    reasons = {line.split(":", 1)[0]: line for line in out.unmapped}
    assert (
        "seed: not a parameter of the msgflux model; ignored"
        in reasons["model_list[10] (k).litellm_params.seed"]
    )
    assert "legacy /v1/completions API" in reasons["model_list[17] (r)"]
    assert "use hosted_vllm/" in reasons["model_list[18] (s)"]
    assert "no msgflux provider for LiteLLM's 'cohere'" in reasons["model_list[19] (t)"]
    assert "no provider prefix" in reasons["model_list[20] (u)"]
    assert len(out.unmapped) == 5


def test_model_types_come_from_model_info_mode_or_the_model_id() -> None:
    out = convert(
        """
model_list:
  - model_name: embed
    litellm_params: {model: openai/text-embedding-3-small}
  - model_name: azure-embeddings
    litellm_params:
      model: azure/azure-embedding-model
      api_base: "https://x.openai.azure.com"
      api_version: "2023-07-01-preview"
    model_info: {mode: embedding}
  - model_name: whisper
    litellm_params: {model: whisper-1}
  - model_name: rerank
    litellm_params: {model: openai/bge-reranker, api_base: "http://h/v1"}
    model_info: {mode: rerank}
  - model_name: mixed
    litellm_params: {model: openai/gpt-4o}
  - model_name: mixed
    litellm_params: {model: openai/text-embedding-3-large}
"""
    )
    gateways = out.config["gateways"]
    assert {k: g.get("type", "chat_completion") for k, g in gateways.items()} == {
        "embed": "text_embedder",
        "azure-embeddings": "text_embedder",
        "whisper": "speech_to_text",
        "mixed": "chat_completion",
    }
    assert [m["model"] for m in gateways["mixed"]["models"]] == ["openai/gpt-4o"]
    assert out.unmapped == [
        "model_list[3] (rerank).model_info.mode: msgflux serves no 'rerank' endpoint; "
        "deployment not imported",
        "model_list[5] (mixed): a text_embedder deployment in a chat_completion group (a "
        "msgflux gateway serves one model type); deployment not imported",
    ]


def test_routing_strategies() -> None:
    base = """
model_list:
  - {model_name: g, litellm_params: {model: openai/a, rpm: 10, tpm: 100}}
  - {model_name: g, litellm_params: {model: openai/b, rpm: 30}}
  - {model_name: backup, litellm_params: {model: openai/c}}
router_settings:
  routing_strategy: %s
"""
    fb = "\n  fallbacks: [{g: [backup]}]\n"
    cases = {
        # strategy, with fallbacks, approximated/unmapped note
        "least-busy": ("least_busy", "least_busy_then_fallbacks"),
        "latency-based-routing": ("least_latency", "least_latency_then_fallbacks"),
        "usage-based-routing": ("least_busy", "least_busy_then_fallbacks"),
        "usage-based-routing-v2": ("least_busy", "least_busy_then_fallbacks"),
        "simple-shuffle": ("weighted", "weighted"),
        "cost-based-routing": ("weighted", "weighted"),
    }
    for name, (alone, with_fallbacks) in cases.items():
        gateway, out = one(base % name)
        assert gateway["strategy"] == alone, name
        gateway, _ = one(base % name + fb)
        assert gateway["strategy"] == with_fallbacks, name
        weights = [m.get("weight") for m in gateway["models"]]
        if alone == "weighted":
            assert weights == [10, 30, 0]  # LiteLLM's rpm; the fallback last
        else:
            assert weights == [None, None, 0]  # only the fallback is marked
        if name.startswith("usage-based"):
            assert out.approximated and "least_busy on g" in out.approximated[0]
        if name == "cost-based-routing":
            assert out.unmapped == [
                "router_settings.routing_strategy: cost-based-routing: no msgflux equivalent; "
                "g uses LiteLLM's default simple-shuffle (strategy: weighted) instead"
            ]
    # one deployment of its own: failover order is all there is to keep
    gateway, _ = one(
        base.replace(
            "model_name: g, litellm_params: {model: openai/b",
            "model_name: h, litellm_params: {model: openai/b",
        )
        % "least-busy"
        + fb
    )
    assert "strategy" not in gateway and [m["model"] for m in gateway["models"]] == [
        "openai/a",
        "openai/c",
    ]


def test_weights_and_fallbacks_hold_in_a_built_gateway() -> None:
    out = convert(
        """
model_list:
  - {model_name: g, litellm_params: {model: openai/a, weight: 9}}
  - {model_name: g, litellm_params: {model: openai/b, weight: 1}}
  - {model_name: backup, litellm_params: {model: openai/c}}
  - {model_name: busy, litellm_params: {model: openai/d}}
  - {model_name: busy, litellm_params: {model: openai/e}}
router_settings:
  fallbacks: [{g: [backup]}, {busy: [backup]}]
"""
    )
    runtime = build_runtime(parse_config(render(out), {}))
    try:
        gateway = runtime.routes["g"].gateway
        firsts = Counter()
        for _ in range(2000):
            plan = gateway.plan()
            assert plan[-1] == "c"
            firsts[plan[0]] += 1
        assert 0.85 < firsts["a"] / 2000 < 0.95  # LiteLLM's 9:1
    finally:
        runtime.close()
    least = convert(
        """
model_list:
  - {model_name: g, litellm_params: {model: openai/a}}
  - {model_name: g, litellm_params: {model: openai/b}}
  - {model_name: backup, litellm_params: {model: openai/c}}
router_settings:
  routing_strategy: latency-based-routing
  fallbacks: [{g: [backup]}]
"""
    )
    runtime = build_runtime(parse_config(render(least), {}))
    try:
        assert runtime.routes["g"].gateway.plan() == ["a", "b", "c"]
    finally:
        runtime.close()


def test_settings_breaker_timeouts_and_environment() -> None:
    gateway, out = one(
        """
model_list:
  - model_name: g
    litellm_params:
      model: openai/a
      api_key: os.environ/MY_KEY
      timeout: 5
      stream_timeout: 2
      max_retries: 1
      max_parallel_requests: 8
      api_base: "http://h/${not-a-variable}"
router_settings:
  disable_cooldowns: true
  allowed_fails: 2
  stream_timeout: 3
  retry_policy: {RateLimitErrorRetries: 3}
  enable_pre_call_checks: true
litellm_settings:
  request_timeout: 20
  cache: true
general_settings:
  database_url: postgres://x
environment_variables:
  MY_KEY: sk-from-the-file
  UNUSED: x
telemetry: false
"""
    )
    assert gateway == {
        "timeout": 20,
        "first_chunk_timeout": 3,
        "idle_timeout": 3,
        "breaker": False,
        "cache": {"store": "memory", "cache_sampled": True},
        "models": [
            {
                "model_name": "a",
                "model": "openai_compatible/a",
                "base_url": "http://h/$${not-a-variable}",
                "api_key": "${MY_KEY:-sk-from-the-file}",
                "timeout": 5,
                "first_chunk_timeout": 2,
                "idle_timeout": 2,
                "max_retries": 1,
                "max_concurrency": 8,
            }
        ],
    }
    assert out.unmapped == [
        "telemetry: no msgflux equivalent; ignored",
        "router_settings.retry_policy: msgflux retries transient errors of a deployment "
        "(max_retries), not a count per exception type",
        "router_settings.enable_pre_call_checks: context-window pre-call checks are not supported",
        "general_settings.database_url: LiteLLM's database is not read: give each team a "
        "server.keys entry (models, rpm, tpm, max_concurrency, budget: {usd, period}), whose "
        "spend `msgflux keys usage` reports",
        "environment_variables.UNUSED: msgflux does not set environment variables: export it "
        "before `msgflux serve`",
    ]
    # the escaped literal stays literal through the loader
    config = parse_config(render(out), {})
    params = config.gateways["g"].deployments[0].params
    assert params["base_url"] == "http://h/${not-a-variable}"
    assert params["api_key"] == "sk-from-the-file"


def test_fallback_edge_cases() -> None:
    out = convert(
        """
model_list:
  - {model_name: a, litellm_params: {model: openai/a}}
  - {model_name: b, litellm_params: {model: openai/b}}
  - {model_name: c, litellm_params: {model: openai/c}}
  - {model_name: e, litellm_params: {model: openai/text-embedding-3-small}}
router_settings:
  fallbacks: [{a: [b, nope]}, {b: [a, c]}, {"*": [c]}, {e: [a]}]
  context_window_fallbacks: [{a: [c]}]
  model_group_alias:
    A: {model: a, hidden: true}
    z: nope
"""
    )
    gateways = out.config["gateways"]
    names = {k: [m["model_name"] for m in g["models"]] for k, g in gateways.items()}
    assert names == {
        "a": ["a", "b", "c"],
        "b": ["b", "a", "c"],
        "c": ["c"],
        "e": ["text-embedding-3-small"],
        "A": ["a", "b", "c"],
    }
    assert out.unmapped == [
        "router_settings.fallbacks[0].a: nope: no model_list entry has this model_name or "
        "model_info.id; ignored",
        "router_settings.context_window_fallbacks: a gateway falls back on every error; a "
        "fallback used only when the context window is exceeded cannot be expressed (add it "
        "to `fallbacks` if falling back to it on any error is acceptable)",
        # e -> a -> a's own fallback b -> b's c: LiteLLM would try each, and each fails
        *(
            f"fallbacks of e: model_list[{i}] ({g}): a chat_completion deployment cannot serve "
            "a text_embedder gateway; ignored"
            for i, g in enumerate("abc")
        ),
        "router_settings.model_group_alias.A.hidden: every gateway is listed on /v1/models; "
        "ignored",
        "router_settings.model_group_alias.z: 'nope' was not imported; alias ignored",
    ]


def test_names_are_unique_and_model_info_id_names_a_deployment() -> None:
    gateway, _ = one(
        """
model_list:
  - {model_name: g, litellm_params: {model: openai/gpt-4o, api_key: k1}}
  - {model_name: g, litellm_params: {model: openai/gpt-4o, api_key: k2}}
  - model_name: g
    litellm_params: {model: azure/gpt-4o, api_base: "https://x.openai.azure.com"}
    model_info: {id: eu}
"""
    )
    assert [m["model_name"] for m in gateway["models"]] == ["gpt-4o", "gpt-4o-2", "eu"]


def test_what_cannot_be_imported_at_all() -> None:
    with pytest.raises(LiteLLMImportError, match="model_list"):
        convert("router_settings: {}")
    with pytest.raises(LiteLLMImportError, match="sagemaker"):
        convert("model_list: [{model_name: x, litellm_params: {model: sagemaker/y}}]")
    with pytest.raises(LiteLLMImportError, match="not valid YAML"):
        convert("model_list: [")


# -- the command, the loader, a running server ------------------------------------------------
def import_command(*args: str) -> Any:
    """``msgflux config import-litellm`` in this process (the round trip runs the real one)."""
    return CliRunner().invoke(app, ["config", "import-litellm", *args])


@pytest.mark.parametrize("name", FIXTURES)
def test_the_output_passes_the_strict_loader(name: str) -> None:
    result = import_command(str(CONFIGS / name))
    assert result.exit_code == 0, result.stderr
    out = imported(name)
    assert result.stdout == render(out, name)
    for item in out.unmapped:  # every unmapped setting is on stderr
        assert f"  - {item}\n" in result.stderr
    # what `msgflux config check` does (the round trip below runs the command itself)
    build_runtime(parse_config(result.stdout, ENV), shared_state=False).close()


def test_the_command_fails_on_what_it_cannot_read(tmp_path: Path) -> None:
    result = import_command(str(tmp_path / "missing.yaml"))
    assert result.exit_code == 1 and "cannot read" in result.stderr and result.stdout == ""
    empty = write_config(tmp_path, "general_settings: {master_key: sk-1}", "litellm.yaml")
    result = import_command(str(empty))
    assert result.exit_code == 1 and "model_list" in result.stderr


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream().start()
    yield up
    up.stop()


def test_round_trip_into_a_running_server(upstream: Upstream, tmp_path: Path) -> None:
    result = run_cli("config", "import-litellm", str(CONFIGS / "roundtrip.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("Imported 2 gateway(s): vllm-models, anthropic-claude.")
    path = write_config(tmp_path, result.stdout, "msgflux.yaml")
    check = run_cli("config", "check", str(path), env=ENV)
    assert check.returncode == 0 and "config OK" in check.stderr, check.stderr
    env = {
        "UPSTREAM_API_BASE": upstream.base_url,
        "LITELLM_MASTER_KEY": MASTER_KEY,
    }
    server = start(tmp_path, result.stdout, env=env)
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key=MASTER_KEY, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="vllm-models", messages=MESSAGES
        )
        answer = raw.parse()
        deployment = raw.headers["x-msgflux-deployment"]
        assert deployment in ("facebook/opt-125m", "facebook/opt-350m")
        assert answer.choices[0].message.content == f"Hello from {deployment}"
        assert answer.model == "vllm-models"
        key = "sk-upstream-secret-key-9876"  # the harness's UPSTREAM_KEY
        if deployment == "facebook/opt-125m":
            assert upstream.last.headers["authorization"] == f"Bearer {key}"

        # both deployments of the group fail: LiteLLM's fallback group answers, in
        # Anthropic's wire format, with the key from environment_variables
        for model_id in ("facebook/opt-125m", "facebook/opt-350m"):
            upstream.set_default(Reply(status=500), model=model_id)
        raw = client.chat.completions.with_raw_response.create(
            model="vllm-models", messages=MESSAGES
        )
        assert raw.parse().choices[0].message.content == "Hello from claude-3-opus-20240229"
        assert raw.headers["x-msgflux-deployment"] == "claude-3-opus-20240229"
        assert set(raw.headers["x-msgflux-fallbacks"].split(",")) == {
            "facebook/opt-125m",
            "facebook/opt-350m",
        }
        last = upstream.last
        assert last.vendor == "anthropic" and last.invalid is None
        assert last.headers["x-api-key"] == "sk-ant-from-the-litellm-config"

        # general_settings.master_key became the only client key
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(
                base_url=server.base_url, api_key="sk-wrong-key-000", max_retries=0
            ).chat.completions.create(model="anthropic-claude", messages=MESSAGES)
        assert {m.id for m in client.models.list()} == {"vllm-models", "anthropic-claude"}
    finally:
        server.stop()
