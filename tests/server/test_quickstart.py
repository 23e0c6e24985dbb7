"""The README's "A server in 30 seconds, offline" section, run as written: its YAML served by
``msgflux serve`` with only ``MSGFLUX_KEY`` set (no API key, no network), then its curl
command and its openai SDK snippet, each answered by the embedded model after the cloud
deployment failed."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.server.harness import start

pytestmark = [
    pytest.mark.local,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None, reason="needs the [local] extra"
    ),
]

README = Path(__file__).resolve().parents[2] / "README.md"
KEY = "sk-my-first-key"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start_at = text.index("## A server in 30 seconds, offline")
    return text[start_at : text.index("\n## ", start_at + 1)]


def blocks(text: str) -> list[tuple[str, str]]:
    """``(info string, code)`` of each fenced block, in order."""
    out: list[tuple[str, str]] = []
    info: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if info is None and line.startswith("```"):
            info, lines = line[3:].strip(), []
        elif info is not None and line == "```":
            out.append((info, "\n".join(lines)))
            info = None
        elif info is not None:
            lines.append(line)
    return out


def block(text: str, info: str, index: int = 0) -> str:
    return [code for kind, code in blocks(text) if kind == info][index]


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    text = section()
    config: Any = yaml.safe_load(block(text, "yaml"))
    shell = block(text, "", 0)
    assert f"export MSGFLUX_KEY={KEY}" in shell
    server = start(tmp_path, config, env={"MSGFLUX_KEY": KEY}, timeout=180)
    try:
        here = f"127.0.0.1:{server.port}"
        if shutil.which("curl") is not None:
            curl = block(text, "", 1).replace("127.0.0.1:4000", here)
            env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
            done = subprocess.run(
                ["bash", "-c", curl],
                env={**env, "MSGFLUX_KEY": KEY},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            assert '"model":"chat"' in done.stdout and '"content":' in done.stdout
        snippet = block(text, "python fragment").replace("127.0.0.1:4000", here)
        printed: list[str] = []
        exec(snippet, {"print": lambda *a: printed.append(" ".join(map(str, a)))})
        assert printed[0].strip()  # the offline model's answer
        assert printed[1] == "offline cloud"  # answered by, after the cloud deployment failed
    finally:
        server.stop()
