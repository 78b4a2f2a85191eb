"""Test hosts on this machine: Linux network namespaces joined by veth pairs to a bridge.

``HostNetwork`` makes a bridge in the root namespace (the "switch", with the address
``10.<n>.0.1``) and one namespace per host, each with its own veth pair and address
``10.<n>.0.<10+i>``. Services the hosts share (Redis, PostgreSQL, the object store) listen
on the bridge address; a host's processes run under ``ip netns exec`` and reach them over
the veth network. Nothing is routed off this machine: the bridge has no uplink.

Each host also gets its own scratch folder, so nothing is shared on disk unless a test
shares it. ``close`` kills every process started in a host namespace and removes the
namespaces and the bridge, also after a failure (the class is a context manager).

Needs root (``ip netns`` and ``ip link``); ``available()`` says whether it can run here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


def available() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"trprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Host:
    """One test host: a network namespace, its address and its own scratch folder."""

    name: str
    namespace: str
    address: str
    scratch: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(
        self, command: list[str], *, env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` inside this host's namespace, in its own process group, with
        its own host name (a UTS namespace named after the host), so worker identities and
        lease owners say which host they are."""
        named = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.name]
        with log.open("ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, *named, *command],
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def run(self, command: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def kill_all(self) -> None:
        """SIGKILL every process started on this host (as a power cut or OOM kill would)."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        # Anything left in the namespace (children that left the group) goes too.
        pids = subprocess.run(
            ["ip", "netns", "pids", self.namespace], capture_output=True, text=True
        ).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        self.processes.clear()


class HostNetwork:
    """A bridge and ``names`` hosts on it; see the module docstring."""

    def __init__(self, names: list[str], scratch: Path, subnet: int | None = None) -> None:
        tag = secrets.token_hex(2)
        self.subnet = subnet if subnet is not None else 100 + int(tag, 16) % 100
        self.bridge = f"trb{tag}"
        self.gateway = f"10.{self.subnet}.0.1"
        self.hosts: dict[str, Host] = {}
        self._made_bridge = False
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made_bridge = True
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for index, name in enumerate(names):
                self._add_host(name, index, tag, scratch)
        except BaseException:
            self.close()
            raise

    def _add_host(self, name: str, index: int, tag: str, scratch: Path) -> None:
        namespace = f"tr{tag}{name}"
        outside, inside = f"trv{tag}{index}", f"trp{tag}{index}"
        address = f"10.{self.subnet}.0.{10 + index}"
        _ip("netns", "add", namespace)
        folder = scratch / name
        folder.mkdir(parents=True, exist_ok=True)
        self.hosts[name] = Host(name, namespace, address, folder)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")

    def __enter__(self) -> HostNetwork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Kill every host's processes, then remove the namespaces and the bridge."""
        for host in self.hosts.values():
            host.kill_all()
            # Deleting the namespace also deletes its end of the veth pair, and so the pair.
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
        self.hosts.clear()
        if self._made_bridge:
            for _ in range(20):
                gone = subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
                if gone.returncode == 0:
                    break
                time.sleep(0.1)
            self._made_bridge = False
