"""What a LiteLLM import produces (:class:`Imported`) and the state every step of one import
shares (:class:`Conversion`): the LiteLLM config's sections, the notes on what was not carried
over or only approximated, and LiteLLM's ``os.environ/X`` values turned into ``${X}``.

Separate so that the steps (:mod:`msgflux.tools.litellm_models` for ``model_list``,
:mod:`msgflux.tools.litellm_import` for the rest) and the output
(:mod:`msgflux.tools.litellm_render`) share it without importing one another.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from msgflux.tools.litellm_tables import ENV_REFERENCE

__all__ = ["Conversion", "Imported", "LiteLLMImportError", "Path"]

Path = tuple[str | int, ...]
"""Where a comment goes: the keys (and list indexes) leading to a value of the output."""


class LiteLLMImportError(ValueError):
    """The input is not a LiteLLM config this importer can read (or nothing could be imported)."""


@dataclasses.dataclass
class Imported:
    """The result of :func:`~msgflux.tools.litellm_import.import_litellm`."""

    config: dict[str, Any]
    """Our config (``gateways``, and ``server`` when there is something to put there)."""
    comments: dict[Path, list[str]] = dataclasses.field(default_factory=dict)
    """Comment lines to print above the value at each path (``()``: the file's header)."""
    unmapped: list[str] = dataclasses.field(default_factory=list)
    """``"where: what happened and why"`` for every LiteLLM setting that was not carried over."""
    approximated: list[str] = dataclasses.field(default_factory=list)
    """Settings carried over with a different mechanism than LiteLLM's (also in comments)."""


class Conversion:
    """One import in progress: the LiteLLM config, the :class:`Imported` being built, and the
    notes every step adds to it."""

    def __init__(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise LiteLLMImportError("a LiteLLM config is a mapping with a `model_list:`")
        if not isinstance(data.get("model_list"), list) or not data["model_list"]:
            raise LiteLLMImportError("`model_list:` is missing or empty: nothing to import")
        self.data = data
        self.out = Imported({})
        self.router = self.section("router_settings")
        self.litellm = self.section("litellm_settings")
        self.general = self.section("general_settings")
        self.env_defaults = self.section("environment_variables")
        self.used_env: set[str] = set()

    def section(self, name: str) -> dict[str, Any]:
        """A top-level section (a mapping; anything else is noted and read as empty)."""
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.unmapped(name, f"expected a mapping, got {type(value).__name__}; ignored")
            return {}
        return value

    def unmapped(self, where: str, why: str) -> None:
        """Note a setting that was not carried over, and why."""
        self.out.unmapped.append(f"{where}: {why}")

    def approximated(self, where: str, how: str) -> None:
        """Note a setting carried over by a different mechanism than LiteLLM's."""
        self.out.approximated.append(f"{where}: {how}")

    def comment(self, path: Path, *lines: str) -> None:
        """Comment lines to print above the output's value at ``path``."""
        self.out.comments.setdefault(path, []).extend(lines)

    def setting(self, name: str) -> tuple[Any, str]:
        """A router setting: ``router_settings`` wins over ``litellm_settings`` (as in LiteLLM)."""
        if self.router.get(name) is not None:
            return self.router[name], f"router_settings.{name}"
        if self.litellm.get(name) is not None:
            return self.litellm[name], f"litellm_settings.{name}"
        return None, ""

    def value(self, value: Any) -> Any:
        """``os.environ/X`` -> ``${X}``; a literal ``${`` escaped; containers recursively."""
        if isinstance(value, str):
            match = ENV_REFERENCE.fullmatch(value.strip())
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
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value
