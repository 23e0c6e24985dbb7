"""What maps to what between a LiteLLM proxy config and a msgflux config: provider prefixes,
``model_info.mode``, the router settings the importer carries over, and why the others are not.

Data only, separate from the conversion (:mod:`msgflux.tools.litellm_import`), so that
supporting one more LiteLLM provider or setting is a line here.
"""

from __future__ import annotations

import re

__all__ = [
    "BARE_OPENAI",
    "DEFAULT_MAX_FALLBACKS",
    "ENV_REFERENCE",
    "GROUP_FIRST",
    "LITELLM_ENV",
    "MODEL_PREFIXES",
    "MODES",
    "NO_EQUIVALENT",
    "PARAM_NAMES",
    "PROVIDERS",
    "TOP_KEYS",
    "TYPE_BY_ID",
    "USED_SETTINGS",
    "WHY",
]

GROUP_FIRST = {
    "least_busy": "least_busy_then_fallbacks",
    "least_latency": "least_latency_then_fallbacks",
}
"""Our strategy -> the one that keeps fallback deployments last (see ``GroupFirst`` in
:mod:`msgflux.models.gateway.strategy`)."""

# -- providers --------------------------------------------------------------------------------
PROVIDERS = {
    "openai": "openai",
    "azure": "azure",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "ollama": "ollama",
    "ollama_chat": "ollama",
    "hosted_vllm": "vllm",
    "together_ai": "together",
    "groq": "groq",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
    "sambanova": "sambanova",
    "custom_openai": "openai_compatible",
    "litellm_proxy": "openai_compatible",
    "bedrock": "bedrock",
    "vertex_ai": "vertex",
    "vertex_ai_beta": "vertex",
}
"""LiteLLM provider prefix -> ours (used only when ours exists for the gateway's model type)."""

MODEL_PREFIXES = {"bedrock": ("converse/", "invoke/")}
"""LiteLLM's route prefixes inside a model id (``bedrock/converse/<id>``): msgflux chooses the
route itself (Converse, and Claude's own API for Messages API requests)."""

PARAM_NAMES = {
    "aws_profile_name": "aws_profile",
    "aws_bedrock_runtime_endpoint": "base_url",
}
"""LiteLLM parameter -> ours, where the names differ."""

NO_EQUIVALENT = {
    "sagemaker": "AWS SageMaker needs SigV4 request signing, which msgflux does not implement",
    "text-completion-openai": "the legacy /v1/completions API; msgflux speaks chat completions",
    "text-completion-codestral": "a text-completion API; msgflux speaks chat completions",
    "vllm": "LiteLLM runs vLLM inside its own process; serve the model with `vllm serve` and "
    "use hosted_vllm/ (msgflux vllm/)",
    "azure_ai": "Azure AI Foundry's model inference API is not Azure OpenAI (msgflux azure/)",
}

BARE_OPENAI = re.compile(
    r"(gpt-|chatgpt-|o[1-9]|text-embedding-|text-moderation|omni-moderation|dall-e|tts-|"
    r"whisper-|davinci|babbage)"
)

MODES = {
    "chat": "chat_completion",
    "completion": "chat_completion",
    "embedding": "text_embedder",
    "image_generation": "text_to_image",
    "audio_transcription": "speech_to_text",
    "audio_speech": "text_to_speech",
    "moderation": "moderation",
}
"""``model_info.mode`` -> our model type."""

TYPE_BY_ID = (
    (re.compile(r"embed", re.I), "text_embedder"),
    (re.compile(r"moderation", re.I), "moderation"),
    (re.compile(r"whisper|transcribe", re.I), "speech_to_text"),
    (re.compile(r"(^|/)tts-|-tts\b", re.I), "text_to_speech"),
    (re.compile(r"dall-e|gpt-image", re.I), "text_to_image"),
)

# -- settings ---------------------------------------------------------------------------------
TOP_KEYS = (
    "model_list",
    "router_settings",
    "litellm_settings",
    "general_settings",
    "environment_variables",
)
USED_SETTINGS = frozenset(
    {
        "routing_strategy",
        "num_retries",
        "timeout",
        "request_timeout",
        "stream_timeout",
        "allowed_fails",
        "cooldown_time",
        "disable_cooldowns",
        "fallbacks",
        "default_fallbacks",
        "max_fallbacks",
        "model_group_alias",
        "redis_host",
        "redis_port",
        "redis_password",
        "redis_username",
        "redis_db",
        "redis_url",
        "default_max_parallel_requests",
        "cache",
        "cache_params",
        "cache_responses",
    }
)
"""``router_settings``/``litellm_settings`` keys the importer carries over."""

WHY = {
    "context_window_fallbacks": "a gateway falls back on every error; a fallback used only "
    "when the context window is exceeded cannot be expressed (add it to `fallbacks` if "
    "falling back to it on any error is acceptable)",
    "content_policy_fallbacks": "a gateway falls back on every error; a fallback used only "
    "on content-policy errors cannot be expressed (add it to `fallbacks` if falling back to "
    "it on any error is acceptable)",
    "success_callback": "logging callbacks are not supported",
    "failure_callback": "logging callbacks are not supported",
    "callbacks": "logging callbacks are not supported",
    "service_callbacks": "logging callbacks are not supported",
    "drop_params": "msgflux sends the request's fields upstream as the client sent them",
    "set_verbose": "logging is not configured in the config file",
    "json_logs": "logging is not configured in the config file",
    "retry_policy": "msgflux retries transient errors of a deployment (max_retries), not a "
    "count per exception type",
    "allowed_fails_policy": "the breaker counts every provider-side failure alike",
    "retry_after": "backoff waits follow backoff_base/backoff_cap and the upstream's Retry-After",
    "enable_pre_call_checks": "context-window pre-call checks are not supported",
    "enable_pre_call_check": "context-window pre-call checks are not supported",
    "routing_strategy_args": "the strategies take no arguments (least_latency uses the "
    "gateway's stats_window)",
    "database_url": (
        "LiteLLM's database is not read: give each team a server.keys entry (models, rpm, tpm, "
        "max_concurrency, budget: {usd, period}), whose spend `msgflux keys usage` reports"
    ),
    "alerting": "alerting is not supported",
    "base_model": "used by LiteLLM for cost tracking and context-window checks",
    "aws_role_name": "msgflux takes AWS credentials from botocore's chain: put the role in a "
    "profile (role_arn, source_profile) and set aws_profile",
    "aws_session_name": "msgflux takes AWS credentials from botocore's chain: put the role in "
    "a profile (role_session_name) and set aws_profile",
    "aws_web_identity_token": "msgflux takes AWS credentials from botocore's chain: set "
    "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (or a profile) instead",
    "aws_sts_endpoint": "msgflux takes AWS credentials from botocore's chain, which uses the "
    "regional STS endpoint",
}

LITELLM_ENV = {
    "azure": {"base_url": "AZURE_API_BASE"},
    "bedrock": {"aws_region_name": "AWS_REGION_NAME"},
    "together": {"api_key": "TOGETHERAI_API_KEY"},
    "vllm": {"base_url": "HOSTED_VLLM_API_BASE"},
}


DEFAULT_MAX_FALLBACKS = 5
"""LiteLLM's ``max_fallbacks`` default."""

ENV_REFERENCE = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)")
"""LiteLLM's ``os.environ/NAME`` (a value read from the environment)."""
