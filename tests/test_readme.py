"""Every Python example in the README and in docs/ runs when pasted into a ``.py`` file.

Each ```` ```python ```` block is written to a file of its own and run as a script
(``python example.py``, a fresh process: no top-level ``await``, no state from another
block), with every provider's base URL and key pointed at the test upstream through the
environment, so the examples' calls get real HTTP answers (Bedrock and Vertex examples: AWS
keys and a service account the fake clouds of :mod:`tests.upstream_cloud` know). Blocks whose
info string says ``fragment`` are excerpts and only have to parse. A block that builds a
``local/`` model needs llama.cpp and is skipped without it.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from msgflux.models.registry import model_registry
from tests.upstream import Upstream
from tests.upstream_cloud import example_env

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
    compile(code, line, "exec")  # what `python example.py` accepts: no top-level await


def providers() -> set[str]:
    return {provider for by_type in model_registry.values() for provider in by_type}


def environment(upstream: Upstream) -> dict[str, str]:
    """The process environment with every provider pointed at ``upstream``."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_BASE_URL", "_API_KEY"))}
    for provider in providers():
        prefix = provider.upper()
        env[f"{prefix}_BASE_URL"] = upstream.url if provider in NATIVE_ROOTS else upstream.base_url
        env[f"{prefix}_API_KEY"] = f"sk-readme-{provider}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT / "src"), env.get("PYTHONPATH"))))
    return env


@pytest.mark.parametrize("code,where", RUNNABLE, ids=[where for _, where in RUNNABLE])
def test_every_readme_example_runs_as_a_script(
    code: str, where: str, upstream: Upstream, tmp_path: Path
) -> None:
    if "local/" in code and importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("the [local] extra is not installed")
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = environment(upstream)
    env.update(example_env(upstream, tmp_path))  # Bedrock and Vertex: the fake clouds
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"
