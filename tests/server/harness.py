"""A real ``msgflux serve`` process for tests: started from a config dict, on a free port.

The server runs as a user runs it (``msgflux serve --config FILE --port 0``) in a subprocess
with no API key in its environment; its stderr goes to a file, from which the port it picked
is read. Upstreams are :class:`tests.upstream.Upstream` servers in the test process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import yaml

SERVER_KEY = "sk-msgflux-client-key-0001"
UPSTREAM_KEY = "sk-upstream-secret-key-9876"
_LISTENING = re.compile(r"listening on http://([^\s]+):(\d+)")


def chat_gateway(*base_urls: str, **options: Any) -> dict[str, Any]:
    """A chat gateway over OpenAI-compatible upstreams, in fallback order (model ids m0, m1...)."""
    models = [
        {
            "model_name": f"d{i}",
            "model": f"openai_compatible/m{i}",
            "base_url": url,
            "api_key": "${UPSTREAM_KEY}",
        }
        for i, url in enumerate(base_urls)
    ]
    return {**options, "models": models}


def typed_gateway(kind: str, base_url: str, model_id: str = "m0") -> dict[str, Any]:
    return {
        "type": kind,
        "models": [
            {"model_name": "d0", "model": f"openai_compatible/{model_id}", "base_url": base_url}
        ],
    }


class Served:
    """A running server process (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, port: int) -> None:
        self.proc = proc
        self.log_path = log
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30), **kwargs)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc.poll() is None:
            self.terminate()
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env.update({"UPSTREAM_KEY": UPSTREAM_KEY, "CLIENT_KEY": SERVER_KEY, "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def command() -> list[str]:
    script = Path(sys.executable).with_name("msgflux")
    return [str(script)] if script.exists() else [sys.executable, "-m", "msgflux.cli"]


def write_config(directory: Path, config: dict[str, Any] | str, name: str = "config.yaml") -> Path:
    path = directory / name
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    return path


def start(
    directory: Path,
    config: dict[str, Any] | str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> Served:
    """Start ``msgflux serve`` and wait until it answers ``/health/liveness``."""
    path = write_config(directory, config)
    log = directory / f"server-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command(), "serve", "--config", str(path), "--port", "0", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env(env),
        )
    deadline = time.monotonic() + timeout
    port = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        match = _LISTENING.search(log.read_text(errors="replace"))
        if match:
            port = int(match.group(2))
            break
        time.sleep(0.02)
    if port is None:
        proc.kill()
        raise RuntimeError(f"server did not start:\n{log.read_text()}")
    served = Served(proc, log, port)
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{served.url}/health/liveness", timeout=1).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    served.stop()
    raise RuntimeError(f"server never became live:\n{served.log()}")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess.run(
        [*command(), *args],
        env=server_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
