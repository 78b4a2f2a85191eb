"""Private Redis and PostgreSQL servers for tests that need their own (never the machine's).

Each runs from a temporary folder on a given address and port, without persistence beyond
that folder, and is stopped (its process group killed) when the context ends. The address
can be a bridge address that test hosts in network namespaces reach (``tools.netns``).

PostgreSQL refuses to run as root: when this process is root, the cluster is made and run
as the ``postgres`` user (``runuser``), in a folder that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.processes import stop_process_group


def _wait_for_port(address: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing answers on {address}:{port}") from None
            time.sleep(0.2)


@contextmanager
def redis_server(folder: Path, address: str, port: int) -> Iterator[str]:
    """A ``redis-server`` on ``address:port``; yields its URL (database 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "redis.log"
    command = ["redis-server", "--bind", address, "--port", str(port), "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder), "--protected-mode", "no"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_port(address, port, process, log)
        yield f"redis://{address}:{port}/0"
    finally:
        stop_process_group(process)


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _pg_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"PostgreSQL's {name} is not installed")


@contextmanager
def postgres_server(folder: Path, address: str, port: int) -> Iterator[str]:
    """A fresh PostgreSQL cluster on ``address:port`` (trust auth); yields a SQLAlchemy URL
    of its ``postgres`` database."""
    folder.mkdir(parents=True, exist_ok=True)
    # Its own folder under /tmp: the postgres user may not traverse the caller's folder.
    data = Path(tempfile.mkdtemp(prefix="tinyres-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(data, user.pw_uid, user.pw_gid)
    log = folder / "postgres.log"
    init = subprocess.run(
        _as_postgres([_pg_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        capture_output=True,
        text=True,
    )
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed: {init.stderr[-2000:]}")
    # Test hosts connect from their namespace addresses: trust them (nothing is routed out).
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write("host all all 0.0.0.0/0 trust\n")
    command = [_pg_binary("postgres"), "-D", str(data), "-h", address, "-p", str(port)]
    command += ["-k", str(data), "-c", "fsync=off", "-c", "max_connections=200"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            _as_postgres(command), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_port(address, port, process, log)
        url = f"postgresql+psycopg://postgres@{address}:{port}/postgres"
        _wait_until_accepting(url)
        yield url
    finally:
        stop_process_group(process)
        shutil.rmtree(data, ignore_errors=True)


def _wait_until_accepting(url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                with engine.connect() as connection:
                    connection.execute(sqlalchemy.text("select 1"))
                return
            except sqlalchemy.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    finally:
        engine.dispose()
