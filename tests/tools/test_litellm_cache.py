"""``msgflux config import-litellm`` and LiteLLM's response caching: ``litellm_settings.cache``
with its ``cache_params`` (and ``router_settings.cache_responses``) become each chat gateway's
``cache:``, accepted by the strict loader; what msgflux cannot do is reported, never dropped.
"""

from __future__ import annotations

from typing import Any

from msgflux.server.config import parse_config
from msgflux.tools.litellm_import import import_litellm, parse_litellm, render

MODELS = """
model_list:
  - {model_name: gpt, litellm_params: {model: openai/gpt-4o-mini}}
  - {model_name: embed, litellm_params: {model: openai/text-embedding-3-small}}
"""
ENV = {"OPENAI_API_KEY": "o", "REDIS_PASSWORD": "secret", "REDIS_HOST": "127.0.0.1"}


def convert(text: str) -> Any:
    return import_litellm(parse_litellm(MODELS + text))


def test_a_redis_cache_with_its_own_host_and_ttl() -> None:
    out = convert(
        """
litellm_settings:
  cache: true
  cache_params:
    type: redis
    host: os.environ/REDIS_HOST
    port: 6380
    password: os.environ/REDIS_PASSWORD
    ttl: 600
    supported_call_types: [acompletion, aembedding]
    namespace: litellm.caching
"""
    )
    gateways = out.config["gateways"]
    assert gateways["gpt"]["cache"] == {
        "store": "redis://:${REDIS_PASSWORD}@${REDIS_HOST}:6380",
        "ttl": 600,
        "cache_sampled": True,
    }
    assert "cache" not in gateways["embed"]  # msgflux caches chat answers
    assert out.unmapped == [
        "litellm_settings.cache_params.supported_call_types: msgflux caches chat calls",
        "litellm_settings.cache_params.namespace: ignored",
    ]
    config = parse_config(render(out), ENV)
    assert config.gateways["gpt"].options["cache"]["store"] == "redis://:secret@127.0.0.1:6380"
    assert any("cache_sampled" in line for line in out.comments[()])


def test_cache_responses_on_the_routers_redis_is_server_state() -> None:
    out = convert(
        """
router_settings:
  cache_responses: true
  redis_host: os.environ/REDIS_HOST
  redis_port: 6379
litellm_settings:
  cache_params: {type: redis, default_in_redis_ttl: 120}
"""
    )
    assert out.config["gateways"]["gpt"]["cache"] == {
        "store": "redis",
        "ttl": 120,
        "cache_sampled": True,
    }
    assert out.config["server"]["state"] == "redis://${REDIS_HOST}:6379"
    config = parse_config(render(out), ENV)
    assert config.gateways["gpt"].options["cache"]["store"] == "redis"


def test_an_in_memory_cache_without_a_ttl_is_noted() -> None:
    out = convert("litellm_settings: {cache: true}\n")
    assert out.config["gateways"]["gpt"]["cache"] == {"store": "memory", "cache_sampled": True}
    assert out.approximated == [
        "litellm_settings.cache: LiteLLM keeps entries without a ttl; msgflux's default is 1 h"
    ]
    parse_config(render(out), ENV)


def test_what_msgflux_cannot_cache_like_litellm_sets_no_cache_and_says_why() -> None:
    semantic = convert("litellm_settings: {cache: true, cache_params: {type: redis-semantic}}\n")
    assert "cache" not in semantic.config["gateways"]["gpt"]
    assert semantic.unmapped == [
        "litellm_settings.cache: a 'redis-semantic' cache: msgflux caches exact matches in "
        "memory or Redis; no cache set"
    ]
    opt_in = convert("litellm_settings: {cache: true, cache_params: {mode: default_off}}\n")
    assert "cache" not in opt_in.config["gateways"]["gpt"]
    assert "mode: default_off" in opt_in.unmapped[0]
    off = convert("litellm_settings: {cache: false, cache_params: {type: local}}\n")
    assert "cache" not in off.config["gateways"]["gpt"]
    assert off.unmapped == ["litellm_settings.cache_params: caching is off (cache: false)"]
