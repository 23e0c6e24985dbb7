"""An :class:`~msgflux.tools.litellm_result.Imported` config written as commented YAML.

The header says where it came from and lists what was not imported or only approximated; each
comment goes right above the key it is about. Separate from the conversion, which only builds
data: this is the one part that writes text.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from msgflux.tools.litellm_result import Imported, Path

__all__ = ["render"]

yaml: Any = importlib.import_module("yaml")


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
