"""Convert a LiteLLM proxy ``config.yaml`` into a ``msgflux serve`` config.

``msgflux config import-litellm litellm.yaml > msgflux.yaml``. :func:`import_litellm` is pure:
the LiteLLM config as data in, an :class:`Imported` out (our config dict, the comments to
print above its keys, what could not be mapped and what was only approximated);
:func:`render` writes it as commented YAML.

What maps to what:

* ``model_list`` entries sharing a ``model_name`` become one gateway of that name; each entry
  a deployment named after ``model_info.id`` or its model id (``-2``, ``-3``... when two would
  share a name). ``litellm_params``: ``model`` -> ``model`` (``azure/x`` -> ``azure/x``,
  ``together_ai/x`` -> ``together/x``, ``openai/x`` with an ``api_base`` ->
  ``openai_compatible/x``, ...), ``api_base`` -> ``base_url``, ``api_key`` -> ``api_key``,
  ``rpm``, ``tpm``, ``weight``, ``timeout``, ``max_retries``/``num_retries`` ->
  ``max_retries``, ``stream_timeout`` -> ``first_chunk_timeout`` + ``idle_timeout``,
  ``max_parallel_requests`` -> ``max_concurrency``, and every parameter the provider's model
  takes (``temperature``, ``max_tokens``, ``api_version``, ...). ``os.environ/X`` -> ``${X}``
  (``${X:-value}`` when ``environment_variables`` sets X).
* LiteLLM load-balances the deployments of one name; a gateway fails over in list order. So a
  gateway with several deployments keeps LiteLLM's routing: ``simple-shuffle`` ->
  ``strategy: weighted`` with LiteLLM's weights (``weight``, else ``rpm``, else ``tpm`` of each
  deployment, as LiteLLM picks them), ``least-busy`` -> ``least_busy``,
  ``latency-based-routing`` -> ``least_latency``, ``usage-based-routing`` -> ``least_busy``
  (approximated), and a comment in the output says so.
* ``fallbacks`` (and ``default_fallbacks``, ``"*"``) append the fallback groups' deployments,
  in LiteLLM's order (a fallback group's own fallbacks follow it, up to ``max_fallbacks``),
  with ``weight: 0`` so that no strategy picks them before the group itself has failed.
* ``num_retries`` -> ``max_retries``, ``timeout``/``request_timeout`` -> ``timeout``,
  ``allowed_fails`` N -> ``breaker.failure_threshold`` N+1 (LiteLLM cools a deployment down
  after *more than* N failures), ``cooldown_time`` -> ``breaker.open_for``,
  ``disable_cooldowns`` -> ``breaker: false``, ``redis_*`` -> ``server.state``,
  ``model_group_alias`` -> a copy of the gateway under the alias,
  ``general_settings.master_key`` -> ``server.keys`` (its SHA-256 when written in the file).

Everything else is listed in :attr:`Imported.unmapped` (``msgflux config import-litellm``
prints it on stderr and in the output's header), never dropped silently.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import inspect
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from msgflux.models.gateway.strategy import LeastBusy, LeastLatency, Strategy
from msgflux.models.registry import lookup

if TYPE_CHECKING:
    from msgflux._time import Clock
    from msgflux.models.gateway.deployment import Deployment

__all__ = [
    "GroupFirst",
    "Imported",
    "LiteLLMImportError",
    "import_litellm",
    "least_busy",
    "least_latency",
    "parse_litellm",
    "render",
]

yaml: Any = importlib.import_module("yaml")

Path = tuple[str | int, ...]
"""Where a comment goes: the keys (and list indexes) leading to a value of the output."""


class LiteLLMImportError(ValueError):
    """The input is not a LiteLLM config this importer can read (or nothing could be imported)."""


@dataclasses.dataclass
class Imported:
    """The result of :func:`import_litellm`."""

    config: dict[str, Any]
    """Our config (``gateways``, and ``server`` when there is something to put there)."""
    comments: dict[Path, list[str]] = dataclasses.field(default_factory=dict)
    """Comment lines to print above the value at each path (``()``: the file's header)."""
    unmapped: list[str] = dataclasses.field(default_factory=list)
    """``"where: what happened and why"`` for every LiteLLM setting that was not carried over."""
    approximated: list[str] = dataclasses.field(default_factory=list)
    """Settings carried over with a different mechanism than LiteLLM's (also in comments)."""


# -- strategies the output may name -----------------------------------------------------------
class GroupFirst(Strategy):
    """Rank the model group's own deployments (``weight > 0``) with ``inner``, then the
    fallback groups' deployments (``weight: 0``) in their order.

    LiteLLM routes within a model group (least busy, lowest latency) and moves to the fallback
    groups only once the group has failed; ``least_busy``/``least_latency`` alone would rank a
    fallback deployment first as soon as it is idler or unmeasured. The importer names
    :data:`least_busy` or :data:`least_latency` (``strategy:
    msgflux.server.litellm_import:least_busy``) for a gateway that has both several
    deployments of its own and fallbacks.
    """

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.name = f"{inner.name}_then_fallbacks"

    def bind(self, clock: Clock) -> GroupFirst:
        self.inner.bind(clock)
        self.clock = clock
        return self

    def __call__(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        rest = [d for d in deployments if d.weight <= 0]
        if not rest:
            return self.inner(deployments)
        own = [d for d in deployments if d.weight > 0]
        return [*self.inner(own), *rest]

    def __repr__(self) -> str:
        return f"GroupFirst({self.inner!r})"


least_busy = GroupFirst(LeastBusy())
"""``least_busy`` within the group, then the fallback deployments in order."""
least_latency = GroupFirst(LeastLatency())
"""``least_latency`` within the group, then the fallback deployments in order."""

_GROUP_FIRST = {
    "least_busy": "msgflux.server.litellm_import:least_busy",
    "least_latency": "msgflux.server.litellm_import:least_latency",
}

# -- providers --------------------------------------------------------------------------------
_PROVIDERS = {
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
}
"""LiteLLM provider prefix -> ours (used only when ours exists for the gateway's model type)."""

_NO_EQUIVALENT = {
    "vertex_ai": "Vertex AI needs Google Cloud credentials (service account or ADC), which "
    "msgflux does not implement (a Gemini API key works with gemini/)",
    "vertex_ai_beta": "Vertex AI needs Google Cloud credentials, which msgflux does not implement",
    "bedrock": "AWS Bedrock needs SigV4 request signing, which msgflux does not implement",
    "sagemaker": "AWS SageMaker needs SigV4 request signing, which msgflux does not implement",
    "text-completion-openai": "the legacy /v1/completions API; msgflux speaks chat completions",
    "text-completion-codestral": "a text-completion API; msgflux speaks chat completions",
    "vllm": "LiteLLM runs vLLM inside its own process; serve the model with `vllm serve` and "
    "use hosted_vllm/ (msgflux vllm/)",
    "azure_ai": "Azure AI Foundry's model inference API is not Azure OpenAI (msgflux azure/)",
}

_BARE_OPENAI = re.compile(
    r"(gpt-|chatgpt-|o[1-9]|text-embedding-|text-moderation|omni-moderation|dall-e|tts-|"
    r"whisper-|davinci|babbage)"
)

_MODES = {
    "chat": "chat_completion",
    "completion": "chat_completion",
    "embedding": "text_embedder",
    "image_generation": "text_to_image",
    "audio_transcription": "speech_to_text",
    "audio_speech": "text_to_speech",
    "moderation": "moderation",
}
"""``model_info.mode`` -> our model type."""

_TYPE_BY_ID = (
    (re.compile(r"embed", re.I), "text_embedder"),
    (re.compile(r"moderation", re.I), "moderation"),
    (re.compile(r"whisper|transcribe", re.I), "speech_to_text"),
    (re.compile(r"(^|/)tts-|-tts\b", re.I), "text_to_speech"),
    (re.compile(r"dall-e|gpt-image", re.I), "text_to_image"),
)

# -- settings ---------------------------------------------------------------------------------
_TOP_KEYS = (
    "model_list",
    "router_settings",
    "litellm_settings",
    "general_settings",
    "environment_variables",
)
_USED_SETTINGS = frozenset(
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
    }
)
"""``router_settings``/``litellm_settings`` keys the importer carries over."""

_WHY = {
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
    "cache": "response caching is not supported",
    "cache_params": "response caching is not supported",
    "cache_responses": "response caching is not supported",
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
    "database_url": "virtual keys, budgets and spend tracking are not supported",
    "alerting": "alerting is not supported",
    "base_model": "used by LiteLLM for cost tracking and context-window checks",
}

_LITELLM_ENV = {
    "azure": {"base_url": "AZURE_API_BASE"},
    "together": {"api_key": "TOGETHERAI_API_KEY"},
    "vllm": {"base_url": "HOSTED_VLLM_API_BASE"},
}
"""Where LiteLLM's environment variable differs from ours (``AZURE_BASE_URL``,
``TOGETHER_API_KEY``, ``VLLM_BASE_URL``): the output reads LiteLLM's, so the same environment
keeps working."""

_DROP: Any = object()
"""``_entry``: remove the deployment's ``weight`` (LiteLLM ignores it under this strategy)."""

_DEFAULT_MAX_FALLBACKS = 5
"""LiteLLM's ``max_fallbacks`` default."""

_ENV = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)")


# -- the importer -----------------------------------------------------------------------------
@dataclasses.dataclass
class _Deployment:
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


def parse_litellm(text: str) -> Any:
    """LiteLLM's YAML as LiteLLM reads it (``yaml.safe_load``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LiteLLMImportError(f"not valid YAML: {exc}") from None


def import_litellm(data: Any) -> Imported:
    """Convert a LiteLLM proxy config (already parsed, see :func:`parse_litellm`)."""
    return _Importer(data).run()


class _Importer:
    def __init__(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise LiteLLMImportError("a LiteLLM config is a mapping with a `model_list:`")
        if not isinstance(data.get("model_list"), list) or not data["model_list"]:
            raise LiteLLMImportError("`model_list:` is missing or empty: nothing to import")
        self.data = data
        self.out = Imported({})
        self.router = self._section("router_settings")
        self.litellm = self._section("litellm_settings")
        self.general = self._section("general_settings")
        self.env_defaults = self._section("environment_variables")
        self.used_env: set[str] = set()

    # -- helpers ------------------------------------------------------------------------------
    def _section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self._unmapped(name, f"expected a mapping, got {type(value).__name__}; ignored")
            return {}
        return value

    def _unmapped(self, where: str, why: str) -> None:
        self.out.unmapped.append(f"{where}: {why}")

    def _approximated(self, where: str, how: str) -> None:
        self.out.approximated.append(f"{where}: {how}")

    def _comment(self, path: Path, *lines: str) -> None:
        self.out.comments.setdefault(path, []).extend(lines)

    def _setting(self, name: str) -> tuple[Any, str]:
        """A router setting: ``router_settings`` wins over ``litellm_settings`` (as in LiteLLM)."""
        if self.router.get(name) is not None:
            return self.router[name], f"router_settings.{name}"
        if self.litellm.get(name) is not None:
            return self.litellm[name], f"litellm_settings.{name}"
        return None, ""

    def _value(self, value: Any) -> Any:
        """``os.environ/X`` -> ``${X}``; a literal ``${`` escaped; containers recursively."""
        if isinstance(value, str):
            match = _ENV.fullmatch(value.strip())
            if match is None:
                return value.replace("${", "$${")
            name = match.group(1)
            default = self.env_defaults.get(name)
            if default is not None and not isinstance(default, (dict, list)):
                text = str(default).lower() if isinstance(default, bool) else str(default)
                if "}" not in text and "$" not in text:
                    self.used_env.add(name)
                    return f"${{{name}:-{text}}}"
            return f"${{{name}}}"
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._value(v) for v in value]
        return value

    # -- the whole config ---------------------------------------------------------------------
    def run(self) -> Imported:
        for key in self.data:
            if key not in _TOP_KEYS:
                self._unmapped(str(key), "no msgflux equivalent; ignored")
        deployments, groups_seen = self._deployments()
        by_group: dict[str, list[_Deployment]] = {}
        for dep in deployments:
            by_group.setdefault(dep.group, []).append(dep)
        by_id = {dep.name: dep for dep in deployments if dep.source.get("_id")}
        fallbacks, default_fallbacks = self._fallback_table(groups_seen, by_id)
        for group in fallbacks:
            if group in groups_seen and group not in by_group:
                self._unmapped(
                    f"fallbacks of {group}", "none of its deployments was imported; ignored"
                )
        self.options = self._options()
        gateways: dict[str, Any] = {}
        for group, own in by_group.items():
            gateways[group] = self._gateway(
                group, own, by_group, by_id, fallbacks, default_fallbacks
            )
        self._aliases(gateways)
        if not gateways:
            raise LiteLLMImportError(
                "no deployment could be imported:\n  - " + "\n  - ".join(self.out.unmapped)
            )
        self.out.config["gateways"] = gateways
        server = self._server()
        if server:
            self.out.config["server"] = server
        self._leftovers()
        return self.out

    # -- model_list ---------------------------------------------------------------------------
    def _deployments(self) -> tuple[list[_Deployment], set[str]]:
        out: list[_Deployment] = []
        seen: set[str] = set()
        for i, entry in enumerate(self.data["model_list"]):
            where = f"model_list[{i}]"
            if not isinstance(entry, dict):
                self._unmapped(where, "not a mapping; skipped")
                continue
            group = entry.get("model_name")
            if not isinstance(group, str) or not group.strip():
                self._unmapped(where, "no model_name; skipped")
                continue
            seen.add(group)
            dep = self._deployment(entry, group, f"{where} ({group})")
            if dep is not None:
                out.append(dep)
        return out, seen

    def _deployment(self, entry: dict[str, Any], group: str, where: str) -> _Deployment | None:
        for key in entry:
            if key not in ("model_name", "litellm_params", "model_info", "rpm", "tpm"):
                self._unmapped(f"{where}.{key}", "no msgflux equivalent; ignored")
        params = entry.get("litellm_params")
        if not isinstance(params, dict) or not isinstance(params.get("model"), str):
            self._unmapped(where, "no litellm_params.model; deployment not imported")
            return None
        if "*" in group or "*" in params["model"]:
            self._unmapped(
                where,
                "wildcard routing (model_name or model with `*`) is not supported; "
                "deployment not imported (list the models you serve instead)",
            )
            return None
        info = entry.get("model_info")
        if not isinstance(info, dict):
            if info is not None:
                self._unmapped(f"{where}.model_info", "not a mapping; ignored")
            info = {}
        source = {**params, **{k: entry[k] for k in ("rpm", "tpm") if k in entry}}
        for key in ("rpm", "tpm"):
            if key in info and key not in source:
                source[key] = info[key]
        model = str(params["model"])
        api_base = params.get("api_base", params.get("base_url"))
        provider, model_id, why = _provider(model, params.get("custom_llm_provider"), api_base)
        if provider is None:
            self._unmapped(where, f"litellm_params.model {model!r}: {why}; deployment not imported")
            return None
        kind = self._type(info, model_id, where)
        if kind is None:
            return None
        try:
            cls = lookup(kind, provider)
        except ValueError:
            self._unmapped(
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
            spec["base_url"] = self._base_url(provider, api_base, comments)
        for key, value in params.items():
            if key in ("model", "api_base", "base_url", "custom_llm_provider"):
                continue
            self._param(key, value, source, spec, accepted, f"{where}.litellm_params.{key}")
        for key in ("rpm", "tpm"):
            if key in spec:
                continue
            if key in entry:
                spec[key] = self._value(entry[key])
            elif key in info:
                spec[key] = self._value(info[key])
        for key, variable in _LITELLM_ENV.get(provider, {}).items():
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
            why = _WHY.get(key) or "LiteLLM model metadata; ignored"
            self._unmapped(f"{where}.model_info.{key}", why)
        return _Deployment(group, where, name or model_id, kind, spec, source, comments)

    def _type(self, info: Mapping[str, Any], model_id: str, where: str) -> str | None:
        mode = info.get("mode")
        if mode is not None:
            kind = _MODES.get(str(mode))
            if kind is None:
                self._unmapped(
                    f"{where}.model_info.mode",
                    f"msgflux serves no {mode!r} endpoint; deployment not imported",
                )
            elif mode == "completion":
                self._approximated(
                    f"{where}.model_info.mode",
                    "'completion': imported as a chat model (msgflux serves /v1/chat/completions)",
                )
            return kind
        for pattern, kind in _TYPE_BY_ID:
            if pattern.search(model_id):
                return kind
        return "chat_completion"

    def _base_url(self, provider: str, api_base: Any, comments: dict[str, list[str]]) -> Any:
        value = self._value(api_base)
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
        self,
        key: str,
        value: Any,
        source: dict[str, Any],
        spec: dict[str, Any],
        accepted: set[str],
        where: str,
    ) -> None:
        if value is None:
            return
        converted = self._value(value)
        if key in ("rpm", "tpm", "weight", "timeout"):
            spec[key] = converted
        elif key in ("max_retries", "num_retries"):
            spec.setdefault("max_retries", converted)
        elif key == "stream_timeout":
            spec["first_chunk_timeout"] = converted
            spec["idle_timeout"] = converted
            self._approximated(
                where,
                "first_chunk_timeout and idle_timeout (each wait for a stream's data, as the "
                "HTTP read timeout LiteLLM sets)",
            )
        elif key == "max_parallel_requests":
            spec["max_concurrency"] = converted
        elif key in accepted:
            spec[key] = converted
        else:
            self._unmapped(where, _WHY.get(key) or "not a parameter of the msgflux model; ignored")

    # -- fallbacks ----------------------------------------------------------------------------
    def _fallback_table(
        self, groups: set[str], by_id: Mapping[str, _Deployment]
    ) -> tuple[dict[str, list[str]], list[str]]:
        table: dict[str, list[str]] = {}
        raw, where = self._setting("fallbacks")
        if raw is not None:
            if not isinstance(raw, list):
                self._unmapped(where, "expected a list like [{group: [fallback, ...]}]; ignored")
            else:
                for i, item in enumerate(raw):
                    if not isinstance(item, dict) or not item:
                        self._unmapped(
                            f"{where}[{i}]", "expected {group: [fallback, ...]}; ignored"
                        )
                        continue
                    # LiteLLM reads only the first key of each item
                    (group, targets), *extra = item.items()
                    for other, _ in extra:
                        self._unmapped(
                            f"{where}[{i}].{other}",
                            "LiteLLM reads only the first group of each item; ignored",
                        )
                    if not isinstance(targets, list):
                        targets = [targets]
                    table.setdefault(str(group), []).extend(
                        self._targets(targets, groups, by_id, f"{where}[{i}].{group}")
                    )
        default, dwhere = self._setting("default_fallbacks")
        defaults: list[str] = []
        if default is not None:
            items = default if isinstance(default, list) else [default]
            defaults = self._targets(items, groups, by_id, dwhere)
        if "*" in table:
            defaults = table.pop("*")
        for group in table:
            if group not in groups:
                self._unmapped(
                    f"{where}: {group}", "no model_list entry has this model_name; ignored"
                )
        for name in ("context_window_fallbacks", "content_policy_fallbacks"):
            for section, settings in (
                ("router_settings", self.router),
                ("litellm_settings", self.litellm),
            ):
                if settings.get(name):
                    self._unmapped(f"{section}.{name}", _WHY[name])
        return table, defaults

    def _targets(
        self, targets: list[Any], groups: set[str], by_id: Mapping[str, _Deployment], where: str
    ) -> list[str]:
        out = []
        for target in targets:
            name = str(target)
            if name in groups or name in by_id:
                out.append(name)
            else:
                self._unmapped(
                    f"{where}: {name}",
                    "no model_list entry has this model_name or model_info.id; ignored",
                )
        return out

    def _chain(
        self, group: str, fallbacks: Mapping[str, list[str]], defaults: list[str]
    ) -> list[str]:
        """The groups LiteLLM tries after ``group``, in its order (``run_async_fallback``: each
        fallback group's own fallbacks right after it, while the depth is under
        ``max_fallbacks``); each group once."""
        limit, _ = self._setting("max_fallbacks")
        max_depth = limit if isinstance(limit, int) and limit >= 0 else _DEFAULT_MAX_FALLBACKS
        chain: list[str] = []
        seen = {group}

        def visit(current: str, depth: int) -> None:
            if depth >= max_depth:
                return
            targets = fallbacks.get(current, defaults)
            for target in targets:
                if target == current:
                    continue
                depth += 1
                if target not in seen:
                    seen.add(target)
                    chain.append(target)
                visit(target, depth)

        visit(group, 0)
        return chain

    # -- gateways -----------------------------------------------------------------------------
    def _gateway(
        self,
        group: str,
        own_all: list[_Deployment],
        by_group: Mapping[str, list[_Deployment]],
        by_id: Mapping[str, _Deployment],
        fallbacks: Mapping[str, list[str]],
        defaults: list[str],
    ) -> dict[str, Any]:
        path: Path = ("gateways", group)
        kind = own_all[0].type
        own = []
        for dep in own_all:
            if dep.type != kind:
                self._unmapped(
                    dep.where,
                    f"a {dep.type} deployment in a {kind} group (a msgflux gateway serves one "
                    "model type); deployment not imported",
                )
            else:
                own.append(dep)
        backups: list[tuple[str, _Deployment]] = []
        for target in self._chain(group, fallbacks, defaults):
            candidates = by_group.get(target, [])
            if target not in by_group and target in by_id:
                candidates = [by_id[target]]
            elif not candidates:
                self._unmapped(
                    f"fallbacks of {group}: {target}", "none of its deployments was imported"
                )
            for dep in candidates:
                if dep.type != kind:
                    self._unmapped(
                        f"fallbacks of {group}: {dep.where}",
                        f"a {dep.type} deployment cannot serve a {kind} gateway; ignored",
                    )
                elif all(dep is not d for d in own) and all(dep is not d for _, d in backups):
                    backups.append((target, dep))
        gateway: dict[str, Any] = {}
        if kind != "chat_completion":
            gateway["type"] = kind
        gateway.update(copy.deepcopy(self.options))
        strategy, weights = self._strategy(group, own, bool(backups), path)
        if strategy is not None:
            gateway["strategy"] = strategy
        models: list[dict[str, Any]] = []
        names: set[str] = set()
        for i, dep in enumerate(own):
            models.append(self._entry(dep, names, path, len(models), weights[i]))
        last_target = None
        for target, dep in backups:
            index = len(models)
            if target != last_target:
                self._comment(
                    (*path, "models", index),
                    f"fallback {target}: LiteLLM tries it once every {group} deployment has failed",
                )
                last_target = target
            weight = 0 if strategy is not None else None
            models.append(self._entry(dep, names, path, index, weight))
        gateway["models"] = models
        return gateway

    def _entry(
        self, dep: _Deployment, names: set[str], path: Path, index: int, weight: Any
    ) -> dict[str, Any]:
        name = dep.name
        n = 2
        while name in names:
            name = f"{dep.name}-{n}"
            n += 1
        names.add(name)
        spec = dict(dep.spec)
        if weight is _DROP:
            spec.pop("weight", None)
        elif weight is not None:
            spec["weight"] = weight
        for key, lines in dep.comments.items():
            self._comment((*path, "models", index, key), *lines)
        return {"model_name": name, **spec}

    def _options(self) -> dict[str, Any]:
        """The gateway options every gateway gets (LiteLLM's are router-wide); the header
        says where each comes from."""
        options: dict[str, Any] = {}
        header: list[str] = []
        retries, where = self._setting("num_retries")
        if retries is not None:
            options["max_retries"] = self._value(retries)
            header.append(
                f"{where}: {retries} -> max_retries: {retries} (LiteLLM retries the model "
                "group; msgflux retries a deployment on transient errors, then falls back)"
            )
        timeout, where = self._setting("timeout")
        if timeout is None:
            timeout, where = self._setting("request_timeout")
        if timeout is not None:
            options["timeout"] = self._value(timeout)
            header.append(f"{where}: {timeout} -> timeout: {timeout} (seconds per attempt)")
        stream_timeout, where = self._setting("stream_timeout")
        if stream_timeout is not None:
            options["first_chunk_timeout"] = self._value(stream_timeout)
            options["idle_timeout"] = self._value(stream_timeout)
            header.append(
                f"{where}: {stream_timeout} -> first_chunk_timeout and idle_timeout (each "
                "wait for a stream's data, like the HTTP read timeout LiteLLM sets)"
            )
        disabled, dwhere = self._setting("disable_cooldowns")
        allowed, awhere = self._setting("allowed_fails")
        cooldown, cwhere = self._setting("cooldown_time")
        if disabled is True:
            options["breaker"] = False
            header.append(f"{dwhere}: true -> breaker: false")
        elif allowed is not None or cooldown is not None:
            breaker: dict[str, Any] = {}
            if allowed is not None:
                value = self._value(allowed)
                if isinstance(value, int) and not isinstance(value, bool):
                    breaker["failure_threshold"] = value + 1
                    header.append(
                        f"{awhere}: {allowed} -> breaker.failure_threshold: {value + 1} "
                        f"(LiteLLM cools a deployment down after more than {allowed} failures)"
                    )
                else:
                    breaker["failure_threshold"] = value
                    self._approximated(
                        awhere, "breaker.failure_threshold is LiteLLM's value, not one more"
                    )
            if cooldown is not None:
                breaker["open_for"] = self._value(cooldown)
                header.append(
                    f"{cwhere}: {cooldown} -> breaker.open_for: {cooldown} (seconds a "
                    "cooled-down deployment is skipped)"
                )
            options["breaker"] = breaker
        if header:
            self._comment((), "Every gateway gets LiteLLM's router-wide settings:")
            self._comment((), *(f"  {line}" for line in header))
        return options

    def _strategy(
        self, group: str, own: list[_Deployment], has_backups: bool, path: Path
    ) -> tuple[str | None, list[Any]]:
        """(strategy, weight per own deployment): LiteLLM's routing within the group."""
        none: list[Any] = [None] * len(own)
        if len(own) < 2:
            return None, none
        raw, where = self._setting("routing_strategy")
        name = str(raw) if raw is not None else "simple-shuffle"
        where = where or "routing_strategy"
        n = len(own)
        lead = (
            f"LiteLLM load-balances the {n} deployments named {group} ({name}); msgflux "
            "would fail over in list order, so this gateway keeps LiteLLM's behaviour:"
        )
        tail = (
            ["The fallback deployments (weight 0) come only after all of them, in order."]
            if has_backups
            else []
        )
        if name in ("least-busy", "latency-based-routing", "usage-based-routing-v2") or (
            name == "usage-based-routing"
        ):
            ours = "least_latency" if name == "latency-based-routing" else "least_busy"
            if name.startswith("usage-based"):
                self._approximated(
                    f"{where}: {name}",
                    f"least_busy on {group} (LiteLLM sends each request to the deployment with "
                    "the lowest tokens used this minute; least_busy to the one with the fewest "
                    "requests in flight, and the rpm/tpm limits skip a saturated deployment)",
                )
            strategy = _GROUP_FIRST[ours] if has_backups else ours
            self._comment(
                (*path, "strategy"),
                lead,
                f"{ours}" + (" within the group." if has_backups else "."),
                *tail,
            )
            return strategy, [_DROP] * n
        if name != "simple-shuffle":
            self._unmapped(
                f"{where}: {name}",
                f"no msgflux equivalent; {group} uses LiteLLM's default simple-shuffle "
                "(strategy: weighted) instead",
            )
        weights, basis = _shuffle_weights([d.source for d in own])
        weights = [self._value(w) for w in weights]
        if basis is None or (
            all(isinstance(w, (int, float)) for w in weights) and len(set(weights)) == 1
        ):
            how = "a uniform random pick (no weight, rpm or tpm set)"
            if basis is not None:
                how = f"a uniform random pick (every deployment has the same {basis})"
            weights = [None] * n
        else:
            how = f"a random pick weighted by LiteLLM's {basis}" + (
                f" (weight = {basis})" if basis != "weight" else ""
            )
        self._comment((*path, "strategy"), lead, f"weighted, {how}.", *tail)
        return "weighted", weights

    def _aliases(self, gateways: dict[str, Any]) -> None:
        aliases, where = self._setting("model_group_alias")
        if aliases is None:
            return
        if not isinstance(aliases, dict):
            self._unmapped(where, "expected a mapping alias -> model_name; ignored")
            return
        for alias, target in aliases.items():
            here = f"{where}.{alias}"
            if isinstance(target, dict):
                for key in target:
                    if key == "hidden" and target[key]:
                        self._unmapped(
                            f"{here}.hidden", "every gateway is listed on /v1/models; ignored"
                        )
                    elif key not in ("model", "hidden"):
                        self._unmapped(f"{here}.{key}", "no msgflux equivalent; ignored")
                target = target.get("model")
            if str(target) not in gateways:
                self._unmapped(here, f"{target!r} was not imported; alias ignored")
                continue
            if str(alias) in gateways:
                self._unmapped(here, "a model_list entry already has this name; alias ignored")
                continue
            gateways[str(alias)] = copy.deepcopy(gateways[str(target)])
            for path, lines in list(self.out.comments.items()):
                if path[:2] == ("gateways", str(target)):
                    copied: Path = ("gateways", str(alias), *path[2:])
                    self.out.comments[copied] = list(lines)
            self._comment(("gateways", str(alias)), f"{where}: {alias} -> {target}")

    # -- server -------------------------------------------------------------------------------
    def _server(self) -> dict[str, Any]:
        server: dict[str, Any] = {}
        state = self._state()
        if state is not None:
            server["state"] = state
            self._comment(
                ("server", "state"),
                "router_settings.redis_*: breakers and rpm/tpm limits shared by every worker and "
                "instance (LiteLLM keeps its cooldowns and usage there)",
            )
        concurrency, _ = self._setting("default_max_parallel_requests")
        general_concurrency = self.general.get("max_parallel_requests")
        default = concurrency if concurrency is not None else general_concurrency
        if default is not None:
            for gateway in self.out.config.get("gateways", {}).values():
                for model in gateway["models"]:
                    model.setdefault("max_concurrency", self._value(default))
        master = self.general.get("master_key")
        if master is not None:
            value = self._value(master)
            if isinstance(value, str) and value.startswith("${"):
                server["keys"] = [{"name": "master", "key": value, "models": "*"}]
                self._comment(
                    ("server", "keys"), "general_settings.master_key (at least 8 characters)"
                )
            else:
                digest = hashlib.sha256(str(master).encode()).hexdigest()
                server["keys"] = [{"name": "master", "key_sha256": digest, "models": "*"}]
                self._comment(
                    ("server", "keys"),
                    "general_settings.master_key: its SHA-256 (the key itself is not copied)",
                )
        return server

    def _state(self) -> str | None:
        url, _ = self._setting("redis_url")
        if url is not None:
            return str(self._value(url))
        host, _ = self._setting("redis_host")
        if host is None:
            return None
        port, _ = self._setting("redis_port")
        password, _ = self._setting("redis_password")
        username, _ = self._setting("redis_username")
        db, _ = self._setting("redis_db")
        auth = ""
        if password is not None:
            user = self._url_part(username) if username is not None else ""
            auth = f"{user}:{self._url_part(password)}@"
        port_part = f":{self._value(port)}" if port is not None else ":6379"
        db_part = f"/{self._value(db)}" if db is not None else ""
        return f"redis://{auth}{self._value(host)}{port_part}{db_part}"

    def _url_part(self, value: Any) -> str:
        converted = self._value(value)
        if isinstance(converted, str) and converted.startswith("${"):
            return converted
        return quote(str(converted), safe="")

    # -- what is left -------------------------------------------------------------------------
    def _leftovers(self) -> None:
        for section, settings in (
            ("router_settings", self.router),
            ("litellm_settings", self.litellm),
        ):
            for key in settings:
                if key in _USED_SETTINGS or key in (
                    "context_window_fallbacks",
                    "content_policy_fallbacks",
                ):
                    continue
                self._unmapped(
                    f"{section}.{key}", _WHY.get(key) or "no msgflux equivalent; ignored"
                )
            if section == "litellm_settings":
                for key in _USED_SETTINGS & set(settings):
                    if self.router.get(key) is not None:
                        self._unmapped(
                            f"litellm_settings.{key}",
                            f"router_settings.{key} wins (as in LiteLLM); ignored",
                        )
        for key in self.general:
            if key in ("master_key", "max_parallel_requests"):
                continue
            self._unmapped(
                f"general_settings.{key}", _WHY.get(key) or "no msgflux equivalent; ignored"
            )
        for key in self.env_defaults:
            if key in self.used_env:
                continue
            self._unmapped(
                f"environment_variables.{key}",
                "msgflux does not set environment variables: export it before `msgflux serve`",
            )


def _provider(model: str, custom: Any, api_base: Any) -> tuple[str | None, str, str]:
    """(our provider or None, model id, why not) for a LiteLLM model string."""
    prefix, sep, rest = model.partition("/")
    if isinstance(custom, str) and custom:
        prefix, rest = custom, (rest if sep and prefix == custom else model)
    elif not sep:
        if _BARE_OPENAI.match(model):
            prefix, rest = "openai", model
        elif model.startswith("claude-"):
            prefix, rest = "anthropic", model
        else:
            return (
                None,
                model,
                "no provider prefix (LiteLLM infers it from its model list); write provider/model",
            )
    if prefix in _NO_EQUIVALENT:
        return None, rest, _NO_EQUIVALENT[prefix]
    ours = _PROVIDERS.get(prefix)
    if ours is None:
        return None, rest, f"no msgflux provider for LiteLLM's {prefix!r}"
    if ours == "openai" and api_base is not None:
        ours = "openai_compatible"
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


def _shuffle_weights(sources: list[Mapping[str, Any]]) -> tuple[list[Any], str | None]:
    """LiteLLM's ``simple_shuffle``: the first deployment's ``weight``, else ``rpm``, else
    ``tpm`` decides which one weighs every deployment (0 where a deployment lacks it)."""
    for key in ("weight", "rpm", "tpm"):
        if sources[0].get(key) is not None:
            return [s.get(key) or 0 for s in sources], key
    return [None] * len(sources), None


# -- rendering --------------------------------------------------------------------------------
def render(imported: Imported, source: str = "the LiteLLM config") -> str:
    """The config as YAML, with the comments above their keys and a header listing what was
    not imported."""
    lines = [
        f"# Imported from {source} by `msgflux config import-litellm`.",
        "# Check it with `msgflux config check FILE`; the comments say where LiteLLM's "
        "behaviour differs.",
    ]
    lines += [f"# {c}" for c in imported.comments.get((), [])]
    if imported.unmapped:
        lines.append(f"# Not imported ({len(imported.unmapped)}, also printed on stderr):")
        lines += [f"#   - {item}" for item in imported.unmapped]
    if imported.approximated:
        lines.append("# Approximated:")
        lines += [f"#   - {item}" for item in imported.approximated]
    _mapping(imported.config, (), 0, lines, imported.comments)
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    text: str = yaml.safe_dump(
        value, default_flow_style=True, width=math.inf, allow_unicode=True, sort_keys=False
    )
    if text.endswith("\n...\n"):
        text = text[: -len("\n...\n")]
    return text.strip()


def _block(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value)
    if isinstance(value, list):
        return any(isinstance(v, (dict, list)) for v in value)
    return False


def _comments(
    path: Path, indent: int, lines: list[str], comments: Mapping[Path, list[str]]
) -> None:
    lines += [" " * indent + f"# {c}" for c in comments.get(path, [])]


def _mapping(
    mapping: Mapping[Any, Any],
    path: Path,
    indent: int,
    lines: list[str],
    comments: Mapping[Path, list[str]],
) -> None:
    pad = " " * indent
    for key, value in mapping.items():
        here = (*path, key)
        _comments(here, indent, lines, comments)
        if _block(value):
            lines.append(f"{pad}{_scalar(key)}:")
            if isinstance(value, dict):
                _mapping(value, here, indent + 2, lines, comments)
            else:
                _sequence(value, here, indent + 2, lines, comments)
        else:
            lines.append(f"{pad}{_scalar(key)}: {_scalar(value)}")


def _sequence(
    items: Sequence[Any],
    path: Path,
    indent: int,
    lines: list[str],
    comments: Mapping[Path, list[str]],
) -> None:
    pad = " " * indent
    for i, item in enumerate(items):
        here = (*path, i)
        _comments(here, indent, lines, comments)
        if isinstance(item, dict) and item:
            inner: list[str] = []
            _mapping(item, here, indent + 2, inner, comments)
            first = next(j for j, line in enumerate(inner) if not line.lstrip().startswith("#"))
            inner[first] = f"{pad}- {inner[first][indent + 2 :]}"
            lines += inner
        elif _block(item):
            lines.append(f"{pad}-")
            _sequence(item, here, indent + 2, lines, comments)
        else:
            lines.append(f"{pad}- {_scalar(item)}")
