"""The ``msgflux`` command, run as a user would: a subprocess with no API key and no network."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from msgflux.cli import app
from tests.upstream import Reply, Upstream, closed_port_url

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="needs the [local] extra"
)
LOCAL = "local/smollm2-135m-instruct"
CLOUD = "openai/gpt-4.1-nano"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script (or ``python -m msgflux.cli``) without any API key.

    ``OPENAI_BASE_URL`` points at a closed local port so that nothing can reach the internet
    even if a key leaks in; wide ``COLUMNS`` keeps rich from wrapping the lines we look for.
    """
    clean = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    clean.update({"COLUMNS": "160", "OPENAI_BASE_URL": closed_port_url()})
    clean.update(env or {})
    script = Path(sys.executable).with_name("msgflux")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "msgflux.cli"]
    return subprocess.run(
        [*command, *args], env=clean, capture_output=True, text=True, timeout=120, check=False
    )


def test_help_documents_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output and "models" in result.output
    demo_help = CliRunner().invoke(app, ["demo", "--help"])
    assert demo_help.exit_code == 0
    for option in ("--stream", "--max-tokens", "--cloud", "--local", "--cloud-timeout"):
        assert option in demo_help.output


def test_models_lists_providers_types_and_local_models() -> None:
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "chat_completion" in result.output
    assert "text_embedder" in result.output
    assert "local/smollm2-135m-instruct" in result.output
    for provider in ("anthropic", "gemini", "azure"):  # the native providers are listed
        assert provider in result.output


@pytest.mark.local
@needs_llama
def test_demo_without_key_falls_back_to_the_local_model() -> None:
    result = run_cli("demo", "Who was Frank Rosenblatt?", "--max-tokens", "24")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    answer = out.split("A:", 1)[1].split("Attempts", 1)[0]
    assert answer.strip()
    assert "Attempts" in out
    assert CLOUD in out and "AuthenticationError" in out and "OPENAI_API_KEY" in out
    assert LOCAL in out and "answered" in out
    assert f"Answered by {LOCAL}" in out
    assert "Traceback" not in result.stderr


@pytest.mark.local
@needs_llama
def test_demo_streams_the_answer() -> None:
    result = run_cli("demo", "What is a perceptron?", "--stream", "--max-tokens", "24")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("A:", 1)[1].split("Attempts", 1)[0].strip()
    assert "AuthenticationError" in result.stdout and "answered" in result.stdout


@pytest.mark.local
@needs_llama
def test_demo_with_a_key_and_a_failing_cloud(upstream: Upstream) -> None:
    upstream.set_default(Reply(status=500, error="the cloud is on fire"))
    env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": upstream.base_url}
    result = run_cli("demo", "Hi", "--max-tokens", "8", env=env)
    assert result.returncode == 0, result.stderr
    assert "InternalServerError" in result.stdout and "the cloud is on fire" in result.stdout
    assert "answered" in result.stdout
    assert upstream.count("chat") >= 1


def test_demo_exits_1_when_every_deployment_fails(tmp_path: Path) -> None:
    result = run_cli("demo", "Hi", "--local", f"local/{tmp_path}/missing.gguf")
    assert result.returncode == 1
    assert "Every deployment failed" in result.stdout
    assert "AuthenticationError" in result.stdout and "FileNotFoundError" in result.stdout
    assert "All 2 available models failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_rejects_an_unknown_provider() -> None:
    result = run_cli("demo", "Hi", "--cloud", "nosuch/model")
    assert result.returncode == 2
    assert "valid providers" in result.stderr
