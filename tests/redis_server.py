"""A real, throwaway ``redis-server`` for the ``@pytest.mark.redis`` tests.

Each server listens on a free 127.0.0.1 port, keeps nothing on disk (``--save ""``,
``--appendonly no``, its own temp dir) and is killed when the test ends. ``kill()`` and
``start()`` let a test take Redis away mid-run and bring it back on the same port, which is
how the gateway's fallback to local state and its recovery are tested.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["RedisServer", "free_port", "redis_server", "redis_url", "running_redis"]


def free_port() -> int:
    """A port nobody listens on right now (the kernel's pick for an ephemeral bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process on a fixed port; restartable on that same port."""

    def __init__(
        self, directory: Path, port: int | None = None, args: tuple[str, ...] = ()
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (`make redis` installs it)")
        self.binary = binary
        self.directory = directory
        self.port = port or free_port()
        self.args = args
        """Extra redis-server options (``--requirepass x``, ``--unixsocket path`` ...)."""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        if self.proc is not None and self.proc.poll() is None:
            return
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / "redis.log"),
            "--daemonize",
            "no",
            *self.args,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log}")
            if self.ping():
                return
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # up, maybe locked
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server (an abrupt outage, not a clean shutdown); data is lost."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        self.kill()
        self.start()


@contextlib.contextmanager
def running_redis(port: int | None = None, args: tuple[str, ...] = ()) -> Iterator[RedisServer]:
    """A started server in a temp dir, killed (and its dir removed) on exit."""
    with tempfile.TemporaryDirectory(prefix="msgflux-redis-") as tmp:
        server = RedisServer(Path(tmp), port, args)
        server.start()
        try:
            yield server
        finally:
            server.kill()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server per test (``.url``, ``.kill()``, ``.start()``, ``.restart()``)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed; `make redis` installs Debian's package")
    with running_redis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a fresh redis-server, for tests that never need to kill it."""
    return redis_server.url
