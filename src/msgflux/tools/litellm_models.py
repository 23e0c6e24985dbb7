"""``model_list``: each LiteLLM deployment as one of ours.

A LiteLLM model string becomes our ``provider/model_id`` (:func:`provider_of`), the model type
comes from ``model_info.mode`` or the model id, ``litellm_params`` become deployment keys
(``rpm``, ``timeout``, ...) or the model's own parameters when its constructor takes them, and
everything else is noted as not carried over.

Separate from :mod:`msgflux.tools.litellm_import`, which groups these deployments into
gateways and carries over the router-wide settings (fallbacks, routing, retries, ...).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Mapping
from typing import Any

from msgflux.models.registry import lookup
from msgflux.tools.litellm_result import Conversion
from msgflux.tools.litellm_tables import (
    BARE_OPENAI,
    LITELLM_ENV,
    MODEL_PREFIXES,
    MODES,
    NO_EQUIVALENT,
    PARAM_NAMES,
    PROVIDERS,
    TYPE_BY_ID,
    WHY,
)

__all__ = ["ImportedDeployment", "provider_of", "read_deployments"]


@dataclasses.dataclass
class ImportedDeployment:
    """One ``model_list`` entry as our deployment, with what the rest of the import needs."""

    group: str
    where: str
    name: str
    type: str
    spec: dict[str, Any]
    """Our deployment dict, ``model_name`` excluded."""
    source: Mapping[str, Any]
    """The LiteLLM deployment's ``litellm_params`` plus its top-level ``rpm``/``tpm``."""
    comments: dict[str, list[str]]
    """Comment lines above keys of ``spec``."""


def read_deployments(conv: Conversion) -> tuple[list[ImportedDeployment], set[str]]:
    """The ``model_list`` entries that can be imported, and every ``model_name`` seen."""
    out: list[ImportedDeployment] = []
    seen: set[str] = set()
    for i, entry in enumerate(conv.data["model_list"]):
        where = f"model_list[{i}]"
        if not isinstance(entry, dict):
            conv.unmapped(where, "not a mapping; skipped")
            continue
        group = entry.get("model_name")
        if not isinstance(group, str) or not group.strip():
            conv.unmapped(where, "no model_name; skipped")
            continue
        seen.add(group)
        dep = _deployment(conv, entry, group, f"{where} ({group})")
        if dep is not None:
            out.append(dep)
    return out, seen


def _deployment(
    conv: Conversion, entry: dict[str, Any], group: str, where: str
) -> ImportedDeployment | None:
    for key in entry:
        if key not in ("model_name", "litellm_params", "model_info", "rpm", "tpm"):
            conv.unmapped(f"{where}.{key}", "no msgflux equivalent; ignored")
    params = entry.get("litellm_params")
    if not isinstance(params, dict) or not isinstance(params.get("model"), str):
        conv.unmapped(where, "no litellm_params.model; deployment not imported")
        return None
    if "*" in group or "*" in params["model"]:
        conv.unmapped(
            where,
            "wildcard routing (model_name or model with `*`) is not supported; "
            "deployment not imported (list the models you serve instead)",
        )
        return None
    info = entry.get("model_info")
    if not isinstance(info, dict):
        if info is not None:
            conv.unmapped(f"{where}.model_info", "not a mapping; ignored")
        info = {}
    source = {**params, **{k: entry[k] for k in ("rpm", "tpm") if k in entry}}
    for key in ("rpm", "tpm"):
        if key in info and key not in source:
            source[key] = info[key]
    model = str(params["model"])
    api_base = params.get("api_base", params.get("base_url"))
    provider, model_id, why = provider_of(model, params.get("custom_llm_provider"), api_base)
    if provider is None:
        conv.unmapped(where, f"litellm_params.model {model!r}: {why}; deployment not imported")
        return None
    kind = _type(conv, info, model_id, where)
    if kind is None:
        return None
    try:
        cls = lookup(kind, provider)
    except ValueError:
        conv.unmapped(
            where,
            f"msgflux has no {kind} model for provider {provider!r} (from {model!r}); "
            "deployment not imported",
        )
        return None
    accepted = _constructor_params(cls)
    spec: dict[str, Any] = {"model": f"{provider}/{model_id}"}
    comments: dict[str, list[str]] = {}
    if provider == "openai_compatible" and model.startswith("openai/"):
        comments["model"] = ["openai/ with an api_base: an OpenAI-compatible server"]
    if api_base is not None:
        spec["base_url"] = _base_url(conv, provider, api_base, comments)
    for key, value in params.items():
        if key in ("model", "api_base", "base_url", "custom_llm_provider"):
            continue
        _param(conv, key, value, source, spec, accepted, f"{where}.litellm_params.{key}")
    for key in ("rpm", "tpm"):
        if key in spec:
            continue
        if key in entry:
            spec[key] = conv.value(entry[key])
        elif key in info:
            spec[key] = conv.value(info[key])
    for key, variable in LITELLM_ENV.get(provider, {}).items():
        if key not in spec:
            spec[key] = f"${{{variable}}}"
            comments.setdefault(key, []).append(
                f"LiteLLM reads {variable} when litellm_params has no "
                f"{'api_base' if key == 'base_url' else key}"
            )
    name = info.get("id") if isinstance(info.get("id"), str) and info["id"].strip() else None
    if name is not None:
        source["_id"] = name
    for key in info:
        if key in ("id", "mode", "rpm", "tpm"):
            continue
        why = WHY.get(key) or "LiteLLM model metadata; ignored"
        conv.unmapped(f"{where}.model_info.{key}", why)
    return ImportedDeployment(group, where, name or model_id, kind, spec, source, comments)


def _type(conv: Conversion, info: Mapping[str, Any], model_id: str, where: str) -> str | None:
    mode = info.get("mode")
    if mode is not None:
        kind = MODES.get(str(mode))
        if kind is None:
            conv.unmapped(
                f"{where}.model_info.mode",
                f"msgflux serves no {mode!r} endpoint; deployment not imported",
            )
        elif mode == "completion":
            conv.approximated(
                f"{where}.model_info.mode",
                "'completion': imported as a chat model (msgflux serves /v1/chat/completions)",
            )
        return kind
    for pattern, kind in TYPE_BY_ID:
        if pattern.search(model_id):
            return kind
    return "chat_completion"


def _base_url(
    conv: Conversion, provider: str, api_base: Any, comments: dict[str, list[str]]
) -> Any:
    value = conv.value(api_base)
    if not isinstance(value, str) or "${" in value:
        return value
    if provider == "ollama":
        base = value.rstrip("/")
        if not base.endswith("/v1"):
            comments["base_url"] = [
                "LiteLLM calls Ollama's own API at api_base; msgflux its OpenAI-compatible /v1"
            ]
            return base + "/v1"
        return base
    if provider == "anthropic":
        return re.sub(r"/v1/messages/?$", "", value)
    return value


def _param(
    conv: Conversion,
    key: str,
    value: Any,
    source: dict[str, Any],
    spec: dict[str, Any],
    accepted: set[str],
    where: str,
) -> None:
    if value is None:
        return
    converted = conv.value(value)
    key = PARAM_NAMES.get(key, key)
    if key in ("rpm", "tpm", "weight", "timeout"):
        spec[key] = converted
    elif key in ("max_retries", "num_retries"):
        spec.setdefault("max_retries", converted)
    elif key == "stream_timeout":
        spec["first_chunk_timeout"] = converted
        spec["idle_timeout"] = converted
        conv.approximated(
            where,
            "first_chunk_timeout and idle_timeout (each wait for a stream's data, as the "
            "HTTP read timeout LiteLLM sets)",
        )
    elif key == "max_parallel_requests":
        spec["max_concurrency"] = converted
    elif key in accepted:
        spec[key] = converted
    else:
        conv.unmapped(where, WHY.get(key) or "not a parameter of the msgflux model; ignored")


def provider_of(model: str, custom: Any, api_base: Any) -> tuple[str | None, str, str]:
    """(our provider or None, model id, why not) for a LiteLLM model string."""
    prefix, sep, rest = model.partition("/")
    if isinstance(custom, str) and custom:
        prefix, rest = custom, (rest if sep and prefix == custom else model)
    elif not sep:
        if BARE_OPENAI.match(model):
            prefix, rest = "openai", model
        elif model.startswith("claude-"):
            prefix, rest = "anthropic", model
        else:
            return (
                None,
                model,
                "no provider prefix (LiteLLM infers it from its model list); write provider/model",
            )
    if prefix in NO_EQUIVALENT:
        return None, rest, NO_EQUIVALENT[prefix]
    ours = PROVIDERS.get(prefix)
    if ours is None:
        return None, rest, f"no msgflux provider for LiteLLM's {prefix!r}"
    if ours == "openai" and api_base is not None:
        ours = "openai_compatible"
    for route in MODEL_PREFIXES.get(prefix, ()):
        rest = rest.removeprefix(route)
    return ours, rest, ""


def _constructor_params(cls: type[Any]) -> set[str]:
    """Keyword arguments the model class takes, following ``**kwargs`` up the MRO."""
    out: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):
            break
        out |= {
            name
            for name, p in params.items()
            if name not in ("self", "model_id", "clock")
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return out
