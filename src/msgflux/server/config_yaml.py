"""Reading a config file: the file, strict YAML, and ``${VAR}`` expansion.

Strict YAML refuses a duplicated key (plain YAML would keep the last one silently).
``${VAR}`` and ``${VAR:-default}`` in a value read the environment (``$${`` is a literal
``${``); a missing variable fails naming it. A value that is a single reference comes out as
:class:`~msgflux.server.config_checks.FromEnv`, so the checks can give it the type YAML would
give the variable's text.

Separate from the checks and the specs: this is the only part that knows the config is YAML
text with environment references; what comes out is plain data for
:func:`msgflux.server.config_build.build_config`.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msgflux.server.config_checks import ConfigError, FromEnv, join, kind_of

__all__ = ["expand", "load_yaml", "missing_variables", "read_file", "yaml"]

yaml: Any = importlib.import_module("yaml")


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that refuses duplicate keys (YAML would keep the last one silently)."""


def _construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            line = key_node.start_mark.line + 1
            raise ConfigError("", f"line {line}: duplicate key {key!r}")
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def read_file(path: str | os.PathLike[str]) -> str:
    """The text of the config file at ``path`` (raises :class:`ConfigError`)."""
    file = Path(path)
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {str(file)!r}: {exc.strerror or exc}") from None


def load_yaml(text: str, source: str = "<config>") -> dict[Any, Any]:
    """The mapping a config's YAML text holds (empty text: an empty mapping); a syntax error
    names ``source`` (the file) and the line."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        where = str(exc).replace('"<unicode string>"', f'"{source}"')
        raise ConfigError("", f"not valid YAML: {where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", f"the config must be a mapping, got {kind_of(data)}")
    return data


# -- ${VAR} expansion -------------------------------------------------------------------------
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_WHOLE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-.*?)?\}")


def expand(value: Any, path: str, env: Mapping[str, str]) -> Any:
    """``value`` with every ``${VAR}`` in its text replaced from ``env``, recursively."""
    if isinstance(value, str):
        return _expand_text(value, path, env)
    if isinstance(value, dict):
        return {k: expand(v, join(path, str(k)), env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


def missing_variables(value: Any, path: str, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every ``(path, NAME)`` whose ``${NAME}`` (without a default) ``env`` lacks, all at
    once (``msgflux config check`` reports them in one run)."""
    if isinstance(value, str):
        return [
            (path, match.group(1))
            for match in _REFERENCE.finditer(value)
            if match.group(1) and match.group(2) is None and env.get(match.group(1)) is None
        ]
    if isinstance(value, dict):
        return [m for k, v in value.items() for m in missing_variables(v, join(path, str(k)), env)]
    if isinstance(value, list):
        return [m for i, v in enumerate(value) for m in missing_variables(v, f"{path}[{i}]", env)]
    return []


def _expand_text(text: str, path: str, env: Mapping[str, str]) -> Any:
    if "$" not in text:
        return text

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(
                    path,
                    f"environment variable {name} is not set "
                    f"(set it, or give a default: ${{{name}:-value}})",
                )
            return default
        return value

    expanded = _REFERENCE.sub(sub, text)
    if _WHOLE.fullmatch(text):
        return FromEnv(expanded)
    return expanded
