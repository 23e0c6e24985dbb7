"""Helpers shared by the benchmark scripts: a local upstream process and BENCHMARKS.md."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from msgflux.models.base import BaseModel
from msgflux.models.response import ModelResponse
from msgflux.models.types import ChatCompletionModel

ROOT = Path(__file__).resolve().parent.parent


def start_upstream() -> tuple[subprocess.Popen[str], str]:
    """Start tests/upstream.py in its own process (no shared GIL); returns (process, base_url)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.upstream", "--no-record"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    if not base_url.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"upstream did not start: {base_url!r}")
    return proc, base_url


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
        if q < 100
        else max(values)
    )


def write_section(section: str, text: str) -> None:
    """Replace (or append) the ``## section`` of BENCHMARKS.md with ``text``."""
    path = ROOT / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text + "\n", current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    path.write_text(updated.rstrip("\n") + "\n")


class Instant(BaseModel, ChatCompletionModel):
    """A chat model that answers at once: isolates the gateway's own cost."""

    provider = "bench"

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def __call__(self, **kwargs: Any) -> ModelResponse:
        resp = ModelResponse()
        resp.set_response_type("text_generation")
        resp.add("ok")
        return resp

    async def acall(self, **kwargs: Any) -> ModelResponse:
        return self(**kwargs)
