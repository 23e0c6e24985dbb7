"""Every Python example in the README and in docs/ runs as printed.

Each ```` ```python ```` block is executed on its own (a fresh namespace; top-level ``await``
allowed) with every provider's base URL pointed at the test upstream, so the examples' calls
get real HTTP answers. Blocks whose info string says ``fragment`` are excerpts and only have
to parse. A block that builds a ``local/`` model needs llama.cpp and is skipped without it.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
from pathlib import Path
from typing import Any

import pytest

from msgflux.models.gateway import ModelGateway
from msgflux.models.registry import model_registry
from tests.upstream import Upstream

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(python[^\n]*)\n(.*?)^```$", re.S | re.M)
NATIVE_ROOTS = ("anthropic", "gemini", "azure")
"""Providers whose base URL is the API root (their paths carry the version)."""


def blocks() -> list[tuple[str, str, str]]:
    """``(info string, code, "file:line")`` of every python block."""
    found = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((match.group(1).strip(), match.group(2), f"{path.name}:{line}"))
    return found


BLOCKS = blocks()
RUNNABLE = [(code, where) for info, code, where in BLOCKS if "fragment" not in info.split()]


def test_the_readme_has_runnable_examples() -> None:
    in_readme = [where for _, where in RUNNABLE if where.startswith("README.md:")]
    assert len(in_readme) >= 10, in_readme


@pytest.mark.parametrize("info,code,line", BLOCKS, ids=[b[2] for b in BLOCKS])
def test_every_python_block_parses(info: str, code: str, line: str) -> None:
    if "fragment" in info.split():
        code = code.replace("{...", "{").replace("...}", "}")  # `{..., "weight": 3}` excerpts
        try:
            ast.parse(code)
        except SyntaxError:
            pytest.skip("an excerpt that is not a whole statement")  # shown, not run
        return
    compile(code, line, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def providers() -> set[str]:
    return {provider for by_type in model_registry.values() for provider in by_type}


@pytest.fixture
def everything_points_at(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> Upstream:
    for provider in providers():
        prefix = provider.upper()
        base = upstream.url if provider in NATIVE_ROOTS else upstream.base_url
        monkeypatch.setenv(f"{prefix}_BASE_URL", base)
        monkeypatch.setenv(f"{prefix}_API_KEY", f"sk-readme-{provider}")
    return upstream


def run(code: str, where: str) -> dict[str, Any]:
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    if compiled.co_flags & inspect.CO_COROUTINE:

        async def main() -> None:
            await eval(compiled, namespace)

        asyncio.run(main())
    else:
        exec(compiled, namespace)
    return namespace


@pytest.mark.parametrize("code,where", RUNNABLE, ids=[where for _, where in RUNNABLE])
def test_every_readme_example_runs_as_printed(
    code: str, where: str, everything_points_at: Upstream
) -> None:
    if "local/" in code:
        pytest.importorskip("llama_cpp", reason="the [local] extra is not installed")
    saved = dict(os.environ)  # an example's set_envs and registrations stay in the example
    registered = {kind: dict(by_provider) for kind, by_provider in model_registry.items()}
    try:
        namespace = run(code, where)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for kind, by_provider in model_registry.items():
            for name in set(by_provider) - set(registered.get(kind, {})):
                dict.__delitem__(by_provider, name)
    for value in namespace.values():
        if isinstance(value, ModelGateway):
            value.close()
