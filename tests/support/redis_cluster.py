"""A private Redis Cluster for tests: three masters with one replica each, on free ports.

Each node is a ``redis-server --cluster-enabled yes`` subprocess with its files in a temporary
directory and no persistence (a killed node loses its data; its replica holds the copy).
``cluster-node-timeout`` is short (1000 ms) so that a killed master's replica is promoted in
about two seconds. Every wait is bounded and fails with a message saying what did not happen.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support.servers import free_port, server_unreachable

__all__ = ["RedisCluster", "running_cluster"]

MASTERS = 3
NODE_TIMEOUT_MS = 1000
# Bounded waits: a node answering PING, the cluster reaching cluster_state:ok, a failover.
READY_SECONDS = 20.0
CLUSTER_OK_SECONDS = 30.0
FAILOVER_SECONDS = 30.0
POLL_SECONDS = 0.05


class RedisCluster:
    """Six redis-server processes forming one cluster; ``kill``/``restart`` act on one node."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ports = [self._free_cluster_port() for _ in range(2 * MASTERS)]
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    @staticmethod
    def _free_cluster_port() -> int:
        # A cluster node also listens on port + 10000 (the bus): both must fit and be free.
        while True:
            port = free_port()
            if port + 10000 < 65536 and _free(port + 10000):
                return port

    @staticmethod
    def available() -> bool:
        """Whether the redis-server and redis-cli binaries are on the PATH."""
        return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> None:
        """Start every node, create the cluster, and return once every node says it is ok."""
        for port in self.ports:
            self._start_node(port)
        for port in self.ports:
            self._wait(lambda port=port: _ping(port), READY_SECONDS,  # type: ignore[misc]
                       f"redis-server on port {port} never answered PING")
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "1",
             "--cluster-yes"],
            capture_output=True, timeout=60, check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed: {created.stdout[-2000:]!r} "
                f"{created.stderr[-2000:]!r}"
            )
        self.wait_ok(self.ports)
        self.wait_linked(self.ports)

    def _start_node(self, port: int) -> None:
        node_dir = self.directory / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        self._processes[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--dir", str(node_dir),
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--logfile", str(node_dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def wait_ok(self, ports: list[int]) -> None:
        """Wait (bounded) until every node of ``ports`` reports ``cluster_state:ok``."""
        for port in ports:
            self._wait(
                lambda port=port: b"cluster_state:ok" in _command(port, "CLUSTER", "INFO"),  # type: ignore[misc]
                CLUSTER_OK_SECONDS,
                f"node {port} never reported cluster_state:ok",
            )

    def wait_linked(self, ports: list[int]) -> None:
        """Wait (bounded) until every replica among ``ports`` has its link to its master up."""
        for port in ports:
            self._wait(
                lambda port=port: _role(port) != b"slave"  # type: ignore[misc]
                or b"master_link_status:up" in _command(port, "INFO", "replication"),
                CLUSTER_OK_SECONDS,
                f"replica {port} never had its link to its master up",
            )

    def masters(self) -> list[int]:
        """The ports of the live nodes that are masters now."""
        return [port for port in self.live() if _role(port) == b"master"]

    def live(self) -> list[int]:
        """The ports of the nodes whose process runs."""
        return [port for port, process in self._processes.items() if process.poll() is None]

    def master_of(self, replica: int) -> int | None:
        """The port of the master ``replica`` follows, or None if it is a master itself."""
        info = _command(replica, "INFO", "replication")
        for line in info.splitlines():
            if line.startswith(b"master_port:"):
                return int(line.split(b":")[1])
        return None

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a crash would, and wait until its process is gone."""
        process = self._processes[port]
        process.kill()
        process.wait()

    def wait_promoted(self, killed: int) -> int:
        """Wait (bounded) until a replica of the killed master is a master; return its port."""
        replicas = [port for port in self.live() if self.master_of(port) == killed]
        if not replicas:
            raise AssertionError(f"no live replica followed the killed master {killed}")

        def promoted() -> bool:
            return any(_role(port) == b"master" for port in replicas)

        self._wait(promoted, FAILOVER_SECONDS,
                   f"no replica of the killed master {killed} was promoted")
        self.wait_ok(self.live())
        return next(port for port in replicas if _role(port) == b"master")

    def restart(self, port: int) -> None:
        """Start a killed node again, with its old node id (nodes.conf), and wait for PING."""
        self._start_node(port)
        self._wait(lambda: _ping(port), READY_SECONDS,
                   f"restarted redis-server on port {port} never answered PING")

    def wait_replica_of(self, port: int, master: int) -> None:
        """Wait (bounded) until ``port`` is a replica of ``master`` with its link up."""
        def following() -> bool:
            info = _command(port, "INFO", "replication")
            return (f"master_port:{master}".encode() in info
                    and b"master_link_status:up" in info)

        self._wait(following, FAILOVER_SECONDS,
                   f"the restarted node {port} never became a replica of {master}")

    def stop(self) -> None:
        """Kill every node and wait for each (no data is kept, so no clean shutdown needed)."""
        for process in self._processes.values():
            if process.poll() is None:
                process.kill()
        for process in self._processes.values():
            process.wait()
        self._processes.clear()

    @staticmethod
    def _wait(condition: Callable[[], bool], seconds: float, failure: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(POLL_SECONDS)
        raise AssertionError(f"{failure} within {seconds:g} s")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _command(port: int, *args: str) -> bytes:
    """One command through redis-cli; empty output if the node does not answer."""
    try:
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True, timeout=5, check=False,
        )
    except subprocess.TimeoutExpired:
        return b""
    return done.stdout


def _ping(port: int) -> bool:
    return _command(port, "PING").strip() == b"PONG"


def _role(port: int) -> bytes:
    info = _command(port, "INFO", "replication")
    for line in info.splitlines():
        if line.startswith(b"role:"):
            return line.split(b":")[1].strip()
    return b""


def running_cluster(directory: Path) -> Iterator[RedisCluster]:
    """Start a cluster in ``directory`` for a fixture, and stop it afterwards.

    Without the binaries: skip with the reason, or fail under ``KVSTORE_REQUIRE_SERVERS=1``.
    """
    if not RedisCluster.available():
        server_unreachable("redis-server or redis-cli is not installed: no Redis Cluster to test")
    cluster = RedisCluster(directory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
