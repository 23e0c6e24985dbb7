"""A real, throwaway Redis Cluster (3 primaries, 3 replicas) for the ``@pytest.mark.redis`` tests.

Six :class:`~tests.redis_server.RedisServer` processes with ``--cluster-enabled yes`` on free
127.0.0.1 ports, joined by ``redis-cli --cluster create ... --cluster-replicas 1``. A short
``cluster-node-timeout`` makes a failover (kill a primary: its replica is promoted) take
seconds, which :meth:`RedisCluster.kill_primary_of` uses.

``running_cluster(tls=True)``: the same cluster speaking only TLS, to clients, between nodes
(``--tls-cluster yes``) and to replicas (``--tls-replication yes``), with certificates of a CA
made for the test (:func:`tests.redis_tls.make_ca`); its URL is ``rediss+cluster://``.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import hiredis
import pytest

from msgflux.models.gateway.redis.cluster import key_slot
from tests.redis_server import RedisServer

__all__ = ["RedisCluster", "running_cluster", "skip_without_redis"]

NODE_TIMEOUT_MS = 1000


def skip_without_redis() -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server/redis-cli are not installed; `make redis` installs them")


def _command(port: int, *args: str, ca: Path | None = None) -> str:
    """One command to a node (over TLS when ``ca`` is given, trusting it); its reply as text
    ('' when the node does not answer)."""
    reader = hiredis.Reader()
    try:
        with contextlib.ExitStack() as stack:
            s = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=1))
            if ca is not None:
                context = ssl.create_default_context(cafile=str(ca))
                s = stack.enter_context(context.wrap_socket(s, server_hostname="127.0.0.1"))
            s.sendall(hiredis.pack_command(args))
            while (reply := reader.gets()) is False:
                data = s.recv(65536)
                if not data:
                    return ""
                reader.feed(data)
    except OSError:
        return ""
    return reply.decode() if isinstance(reply, bytes) else ""


class _TLSNode(RedisServer):
    """A cluster node that listens only on its TLS port."""

    def __init__(self, directory: Path, port: int, args: tuple[str, ...], ca: Path) -> None:
        super().__init__(directory, port, args)
        self.ca = ca

    def ping(self) -> bool:
        return _command(self.port, "PING", ca=self.ca) == "PONG"


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, under the ephemeral range
    (a node's port must be 55535 or less)."""
    for _ in range(1000):
        port = random.randrange(20000, 30000)
        if _free(port) and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class RedisCluster:
    """Six nodes joined into one cluster (see the module docstring)."""

    def __init__(self, directory: Path, tls: bool = False) -> None:
        self.nodes: list[RedisServer] = []
        self.ca: Path | None = None
        tls_args: tuple[str, ...] = ()
        if tls:
            from tests.redis_tls import make_ca

            self.ca, cert, key = make_ca(directory)
            tls_args = (
                "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no",
                "--tls-cluster", "yes", "--tls-replication", "yes",
            )  # fmt: skip
        for i in range(6):
            node_dir = directory / f"node{i}"
            node_dir.mkdir()
            args = (
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(node_dir / "nodes.conf"),
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--cluster-replica-validity-factor",
                "0",  # a replica may always take over (it is in sync in these tests)
                "--repl-diskless-sync-delay",
                "0",  # replicas sync at once, not 5 s after the cluster forms
            )
            port = cluster_port()
            if self.ca is None:
                self.nodes.append(RedisServer(node_dir, port, args))
            else:
                tls_port = ("--port", "0", "--tls-port", str(port))
                self.nodes.append(_TLSNode(node_dir, port, (*args, *tls_port, *tls_args), self.ca))

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming two of the nodes (``rediss+cluster://`` trusting
        the test CA, over TLS)."""
        nodes = f"127.0.0.1:{self.nodes[0].port},127.0.0.1:{self.nodes[1].port}"
        if self.ca is None:
            return f"redis+cluster://{nodes}"
        return f"rediss+cluster://{nodes}?ssl_ca_certs={self.ca}"

    def command(self, node: RedisServer, *args: str) -> str:
        """One command to ``node`` (over TLS on a TLS cluster); its reply as text."""
        return _command(node.port, *args, ca=self.ca)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        create = ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "1"]
        if self.ca is not None:
            create += ["--tls", "--cacert", str(self.ca)]
        subprocess.run(
            [*create, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok()

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok`` and agrees on the primaries."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [n for n in self.nodes if n.proc is not None]
            infos = [self.command(n, "CLUSTER", "INFO") for n in live]
            ready = all("cluster_state:ok" in info for info in infos) and self._agreed(live)
            if ready and all(self._synced(n) for n in live):
                return
            time.sleep(0.05)
        raise RuntimeError("the Redis Cluster did not become ready")

    def _synced(self, node: RedisServer) -> bool:
        """A primary, or a replica whose link to its primary is up."""
        info = self.command(node, "INFO", "replication")
        return "role:master" in info or "master_link_status:up" in info

    def _agreed(self, live: list[RedisServer]) -> bool:
        views = {self._primary_ports(n) for n in live}
        return len(views) == 1 and len(next(iter(views))) == 3

    def _primary_ports(self, node: RedisServer) -> frozenset[int]:
        text = self.command(node, "CLUSTER", "NODES")
        ports = set()
        for line in text.splitlines():
            fields = line.split()
            if len(fields) > 8 and "master" in fields[2] and "fail" not in fields[2]:
                ports.add(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        return frozenset(ports)

    def primary_of(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot now."""
        slot = key_slot(key)
        for node in self.nodes:
            if node.proc is None:
                continue
            text = self.command(node, "CLUSTER", "NODES")
            for line in text.splitlines():
                fields = line.split()
                if "master" not in fields[2] or "fail" in fields[2]:
                    continue
                for part in fields[8:]:
                    first, _, last = part.partition("-")
                    if first.isdigit() and int(first) <= slot <= int(last or first):
                        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                        return next(n for n in self.nodes if n.port == port)
        raise RuntimeError(f"no live primary serves the slot of {key!r}")

    def kill_primary_of(self, key: str) -> RedisServer:
        """SIGKILL the primary of ``key``'s slot (its replica takes over within seconds)."""
        node = self.primary_of(key)
        node.kill()
        return node

    def wait_promoted(self, key: str, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Until a replica serves ``key``'s slot in place of the killed ``old`` primary."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                node = self.primary_of(key)
                if node is not old:
                    self.wait_ok(deadline - time.monotonic())
                    return node
            time.sleep(0.05)
        raise RuntimeError(f"no replica took over the slot of {key!r}")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


@contextlib.contextmanager
def running_cluster(tls: bool = False) -> Iterator[RedisCluster]:
    """A started cluster in a temp dir (speaking only TLS with ``tls``), killed (and its dir
    removed) on exit."""
    skip_without_redis()
    with tempfile.TemporaryDirectory(prefix="msgflux-cluster-") as tmp:
        cluster = RedisCluster(Path(tmp), tls)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
