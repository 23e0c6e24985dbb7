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
  (approximated; with fallbacks, ``least_busy_then_fallbacks`` / ``least_latency_then_fallbacks``),
  and a comment in the output says so.
* ``fallbacks`` (and ``default_fallbacks``, ``"*"``) append the fallback groups' deployments,
  in LiteLLM's order (a fallback group's own fallbacks follow it, up to ``max_fallbacks``),
  with ``weight: 0`` so that no strategy picks them before the group itself has failed.
* ``num_retries`` -> ``max_retries``, ``timeout``/``request_timeout`` -> ``timeout``,
  ``allowed_fails`` N -> ``breaker.failure_threshold`` N+1 (LiteLLM cools a deployment down
  after *more than* N failures), ``cooldown_time`` -> ``breaker.open_for``,
  ``disable_cooldowns`` -> ``breaker: false``, ``redis_*`` -> ``server.state``,
  ``model_group_alias`` -> a copy of the gateway under the alias,
  ``general_settings.master_key`` -> ``server.keys`` (its SHA-256 when written in the file),
  ``cache``/``cache_responses`` with ``cache_params`` -> each chat gateway's ``cache:``
  (:mod:`~msgflux.tools.litellm_cache`).

Everything else is listed in :attr:`Imported.unmapped` (``msgflux config import-litellm``
prints it on stderr and in the output's header), never dropped silently.

This module converts the config as a whole (model groups into gateways, fallbacks, routing,
router-wide settings, the server section); beside it, :mod:`~msgflux.tools.litellm_models`
converts each ``model_list`` entry, :mod:`~msgflux.tools.litellm_tables` holds what maps to
what, :mod:`~msgflux.tools.litellm_result` the result and the state the steps share, and
:mod:`~msgflux.tools.litellm_render` writes the YAML.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from msgflux.tools.litellm_cache import cache_option
from msgflux.tools.litellm_models import ImportedDeployment, read_deployments
from msgflux.tools.litellm_render import render
from msgflux.tools.litellm_result import Conversion, Imported, LiteLLMImportError, Path
from msgflux.tools.litellm_tables import (
    DEFAULT_MAX_FALLBACKS,
    GROUP_FIRST,
    TOP_KEYS,
    USED_SETTINGS,
    WHY,
)

__all__ = [
    "Imported",
    "LiteLLMImportError",
    "import_litellm",
    "parse_litellm",
    "render",
]

yaml: Any = importlib.import_module("yaml")

_DROP: Any = object()
"""``_entry``: remove the deployment's ``weight`` (LiteLLM ignores it under this strategy)."""


def parse_litellm(text: str) -> Any:
    """LiteLLM's YAML as LiteLLM reads it (``yaml.safe_load``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LiteLLMImportError(f"not valid YAML: {exc}") from None


def import_litellm(data: Any) -> Imported:
    """Convert a LiteLLM proxy config (already parsed, see :func:`parse_litellm`)."""
    return _Importer(data).run()


class _Importer(Conversion):
    """The steps of one import, in :meth:`run`'s order."""

    # -- the whole config ---------------------------------------------------------------------
    def run(self) -> Imported:
        for key in self.data:
            if key not in TOP_KEYS:
                self.unmapped(str(key), "no msgflux equivalent; ignored")
        deployments, groups_seen = read_deployments(self)
        by_group: dict[str, list[ImportedDeployment]] = {}
        for dep in deployments:
            by_group.setdefault(dep.group, []).append(dep)
        by_id = {dep.name: dep for dep in deployments if dep.source.get("_id")}
        fallbacks, default_fallbacks = self._fallback_table(groups_seen, by_id)
        for group in fallbacks:
            if group in groups_seen and group not in by_group:
                self.unmapped(
                    f"fallbacks of {group}", "none of its deployments was imported; ignored"
                )
        self.options = self._options()
        self.cache, header = cache_option(self, self._state())
        if header:
            self.comment((), *header)
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

    # -- fallbacks ----------------------------------------------------------------------------
    def _fallback_table(
        self, groups: set[str], by_id: Mapping[str, ImportedDeployment]
    ) -> tuple[dict[str, list[str]], list[str]]:
        table: dict[str, list[str]] = {}
        raw, where = self.setting("fallbacks")
        if raw is not None:
            if not isinstance(raw, list):
                self.unmapped(where, "expected a list like [{group: [fallback, ...]}]; ignored")
            else:
                for i, item in enumerate(raw):
                    if not isinstance(item, dict) or not item:
                        self.unmapped(f"{where}[{i}]", "expected {group: [fallback, ...]}; ignored")
                        continue
                    # LiteLLM reads only the first key of each item
                    (group, targets), *extra = item.items()
                    for other, _ in extra:
                        self.unmapped(
                            f"{where}[{i}].{other}",
                            "LiteLLM reads only the first group of each item; ignored",
                        )
                    if not isinstance(targets, list):
                        targets = [targets]
                    table.setdefault(str(group), []).extend(
                        self._targets(targets, groups, by_id, f"{where}[{i}].{group}")
                    )
        default, dwhere = self.setting("default_fallbacks")
        defaults: list[str] = []
        if default is not None:
            items = default if isinstance(default, list) else [default]
            defaults = self._targets(items, groups, by_id, dwhere)
        if "*" in table:
            defaults = table.pop("*")
        for group in table:
            if group not in groups:
                self.unmapped(
                    f"{where}: {group}", "no model_list entry has this model_name; ignored"
                )
        for name in ("context_window_fallbacks", "content_policy_fallbacks"):
            for section, settings in (
                ("router_settings", self.router),
                ("litellm_settings", self.litellm),
            ):
                if settings.get(name):
                    self.unmapped(f"{section}.{name}", WHY[name])
        return table, defaults

    def _targets(
        self,
        targets: list[Any],
        groups: set[str],
        by_id: Mapping[str, ImportedDeployment],
        where: str,
    ) -> list[str]:
        out = []
        for target in targets:
            name = str(target)
            if name in groups or name in by_id:
                out.append(name)
            else:
                self.unmapped(
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
        limit, _ = self.setting("max_fallbacks")
        max_depth = limit if isinstance(limit, int) and limit >= 0 else DEFAULT_MAX_FALLBACKS
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
        own_all: list[ImportedDeployment],
        by_group: Mapping[str, list[ImportedDeployment]],
        by_id: Mapping[str, ImportedDeployment],
        fallbacks: Mapping[str, list[str]],
        defaults: list[str],
    ) -> dict[str, Any]:
        path: Path = ("gateways", group)
        kind = own_all[0].type
        own = []
        for dep in own_all:
            if dep.type != kind:
                self.unmapped(
                    dep.where,
                    f"a {dep.type} deployment in a {kind} group (a msgflux gateway serves one "
                    "model type); deployment not imported",
                )
            else:
                own.append(dep)
        backups: list[tuple[str, ImportedDeployment]] = []
        for target in self._chain(group, fallbacks, defaults):
            candidates = by_group.get(target, [])
            if target not in by_group and target in by_id:
                candidates = [by_id[target]]
            elif not candidates:
                self.unmapped(
                    f"fallbacks of {group}: {target}", "none of its deployments was imported"
                )
            for dep in candidates:
                if dep.type != kind:
                    self.unmapped(
                        f"fallbacks of {group}: {dep.where}",
                        f"a {dep.type} deployment cannot serve a {kind} gateway; ignored",
                    )
                elif all(dep is not d for d in own) and all(dep is not d for _, d in backups):
                    backups.append((target, dep))
        gateway: dict[str, Any] = {}
        if kind != "chat_completion":
            gateway["type"] = kind
        gateway.update(copy.deepcopy(self.options))
        if kind == "chat_completion" and self.cache is not None:
            gateway["cache"] = dict(self.cache)
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
                self.comment(
                    (*path, "models", index),
                    f"fallback {target}: LiteLLM tries it once every {group} deployment has failed",
                )
                last_target = target
            weight = 0 if strategy is not None else None
            models.append(self._entry(dep, names, path, index, weight))
        gateway["models"] = models
        return gateway

    def _entry(
        self, dep: ImportedDeployment, names: set[str], path: Path, index: int, weight: Any
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
            self.comment((*path, "models", index, key), *lines)
        return {"model_name": name, **spec}

    def _options(self) -> dict[str, Any]:
        """The gateway options every gateway gets (LiteLLM's are router-wide); the header
        says where each comes from."""
        options: dict[str, Any] = {}
        header: list[str] = []
        retries, where = self.setting("num_retries")
        if retries is not None:
            options["max_retries"] = self.value(retries)
            header.append(
                f"{where}: {retries} -> max_retries: {retries} (LiteLLM retries the model "
                "group; msgflux retries a deployment on transient errors, then falls back)"
            )
        timeout, where = self.setting("timeout")
        if timeout is None:
            timeout, where = self.setting("request_timeout")
        if timeout is not None:
            options["timeout"] = self.value(timeout)
            header.append(f"{where}: {timeout} -> timeout: {timeout} (seconds per attempt)")
        stream_timeout, where = self.setting("stream_timeout")
        if stream_timeout is not None:
            options["first_chunk_timeout"] = self.value(stream_timeout)
            options["idle_timeout"] = self.value(stream_timeout)
            header.append(
                f"{where}: {stream_timeout} -> first_chunk_timeout and idle_timeout (each "
                "wait for a stream's data, like the HTTP read timeout LiteLLM sets)"
            )
        disabled, dwhere = self.setting("disable_cooldowns")
        allowed, awhere = self.setting("allowed_fails")
        cooldown, cwhere = self.setting("cooldown_time")
        if disabled is True:
            options["breaker"] = False
            header.append(f"{dwhere}: true -> breaker: false")
        elif allowed is not None or cooldown is not None:
            breaker: dict[str, Any] = {}
            if allowed is not None:
                value = self.value(allowed)
                if isinstance(value, int) and not isinstance(value, bool):
                    breaker["failure_threshold"] = value + 1
                    header.append(
                        f"{awhere}: {allowed} -> breaker.failure_threshold: {value + 1} "
                        f"(LiteLLM cools a deployment down after more than {allowed} failures)"
                    )
                else:
                    breaker["failure_threshold"] = value
                    self.approximated(
                        awhere, "breaker.failure_threshold is LiteLLM's value, not one more"
                    )
            if cooldown is not None:
                breaker["open_for"] = self.value(cooldown)
                header.append(
                    f"{cwhere}: {cooldown} -> breaker.open_for: {cooldown} (seconds a "
                    "cooled-down deployment is skipped)"
                )
            options["breaker"] = breaker
        if header:
            self.comment((), "Every gateway gets LiteLLM's router-wide settings:")
            self.comment((), *(f"  {line}" for line in header))
        return options

    def _strategy(
        self, group: str, own: list[ImportedDeployment], has_backups: bool, path: Path
    ) -> tuple[str | None, list[Any]]:
        """(strategy, weight per own deployment): LiteLLM's routing within the group."""
        none: list[Any] = [None] * len(own)
        if len(own) < 2:
            return None, none
        raw, where = self.setting("routing_strategy")
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
                self.approximated(
                    f"{where}: {name}",
                    f"least_busy on {group} (LiteLLM sends each request to the deployment with "
                    "the lowest tokens used this minute; least_busy to the one with the fewest "
                    "requests in flight, and the rpm/tpm limits skip a saturated deployment)",
                )
            strategy = GROUP_FIRST[ours] if has_backups else ours
            self.comment(
                (*path, "strategy"),
                lead,
                f"{ours}" + (" within the group." if has_backups else "."),
                *tail,
            )
            return strategy, [_DROP] * n
        if name != "simple-shuffle":
            self.unmapped(
                f"{where}: {name}",
                f"no msgflux equivalent; {group} uses LiteLLM's default simple-shuffle "
                "(strategy: weighted) instead",
            )
        weights, basis = _shuffle_weights([d.source for d in own])
        weights = [self.value(w) for w in weights]
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
        self.comment((*path, "strategy"), lead, f"weighted, {how}.", *tail)
        return "weighted", weights

    def _aliases(self, gateways: dict[str, Any]) -> None:
        aliases, where = self.setting("model_group_alias")
        if aliases is None:
            return
        if not isinstance(aliases, dict):
            self.unmapped(where, "expected a mapping alias -> model_name; ignored")
            return
        for alias, target in aliases.items():
            here = f"{where}.{alias}"
            if isinstance(target, dict):
                for key in target:
                    if key == "hidden" and target[key]:
                        self.unmapped(
                            f"{here}.hidden", "every gateway is listed on /v1/models; ignored"
                        )
                    elif key not in ("model", "hidden"):
                        self.unmapped(f"{here}.{key}", "no msgflux equivalent; ignored")
                target = target.get("model")
            if str(target) not in gateways:
                self.unmapped(here, f"{target!r} was not imported; alias ignored")
                continue
            if str(alias) in gateways:
                self.unmapped(here, "a model_list entry already has this name; alias ignored")
                continue
            gateways[str(alias)] = copy.deepcopy(gateways[str(target)])
            for path, lines in list(self.out.comments.items()):
                if path[:2] == ("gateways", str(target)):
                    copied: Path = ("gateways", str(alias), *path[2:])
                    self.out.comments[copied] = list(lines)
            self.comment(("gateways", str(alias)), f"{where}: {alias} -> {target}")

    # -- server -------------------------------------------------------------------------------
    def _server(self) -> dict[str, Any]:
        server: dict[str, Any] = {}
        state = self._state()
        if state is not None:
            server["state"] = state
            self.comment(
                ("server", "state"),
                "router_settings.redis_*: breakers and rpm/tpm limits shared by every worker and "
                "instance (LiteLLM keeps its cooldowns and usage there)",
            )
        concurrency, _ = self.setting("default_max_parallel_requests")
        general_concurrency = self.general.get("max_parallel_requests")
        default = concurrency if concurrency is not None else general_concurrency
        if default is not None:
            for gateway in self.out.config.get("gateways", {}).values():
                for model in gateway["models"]:
                    model.setdefault("max_concurrency", self.value(default))
        master = self.general.get("master_key")
        if master is not None:
            value = self.value(master)
            if isinstance(value, str) and value.startswith("${"):
                server["keys"] = [{"name": "master", "key": value, "models": "*"}]
                self.comment(
                    ("server", "keys"), "general_settings.master_key (at least 8 characters)"
                )
            else:
                digest = hashlib.sha256(str(master).encode()).hexdigest()
                server["keys"] = [{"name": "master", "key_sha256": digest, "models": "*"}]
                self.comment(
                    ("server", "keys"),
                    "general_settings.master_key: its SHA-256 (the key itself is not copied)",
                )
        return server

    def _state(self) -> str | None:
        url, _ = self.setting("redis_url")
        if url is not None:
            return str(self.value(url))
        host, _ = self.setting("redis_host")
        if host is None:
            return None
        port, _ = self.setting("redis_port")
        password, _ = self.setting("redis_password")
        username, _ = self.setting("redis_username")
        db, _ = self.setting("redis_db")
        auth = ""
        if password is not None:
            user = self._url_part(username) if username is not None else ""
            auth = f"{user}:{self._url_part(password)}@"
        port_part = f":{self.value(port)}" if port is not None else ":6379"
        db_part = f"/{self.value(db)}" if db is not None else ""
        return f"redis://{auth}{self.value(host)}{port_part}{db_part}"

    def _url_part(self, value: Any) -> str:
        converted = self.value(value)
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
                if key in USED_SETTINGS or key in (
                    "context_window_fallbacks",
                    "content_policy_fallbacks",
                ):
                    continue
                self.unmapped(f"{section}.{key}", WHY.get(key) or "no msgflux equivalent; ignored")
            if section == "litellm_settings":
                for key in USED_SETTINGS & set(settings):
                    if self.router.get(key) is not None:
                        self.unmapped(
                            f"litellm_settings.{key}",
                            f"router_settings.{key} wins (as in LiteLLM); ignored",
                        )
        for key in self.general:
            if key in ("master_key", "max_parallel_requests"):
                continue
            self.unmapped(
                f"general_settings.{key}", WHY.get(key) or "no msgflux equivalent; ignored"
            )
        for key in self.env_defaults:
            if key in self.used_env:
                continue
            self.unmapped(
                f"environment_variables.{key}",
                "msgflux does not set environment variables: export it before `msgflux serve`",
            )


def _shuffle_weights(sources: list[Mapping[str, Any]]) -> tuple[list[Any], str | None]:
    """LiteLLM's ``simple_shuffle``: the first deployment's ``weight``, else ``rpm``, else
    ``tpm`` decides which one weighs every deployment (0 where a deployment lacks it)."""
    for key in ("weight", "rpm", "tpm"):
        if sources[0].get(key) is not None:
            return [s.get(key) or 0 for s in sources], key
    return [None] * len(sources), None
