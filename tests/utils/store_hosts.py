"""Several "hosts" on this machine sharing only the job store, the broker and the object
store: each process gets its own empty data root, nothing else in common.

    env = hosts.env(hosts.root("worker-a"))     # a worker process's environment
    files = hosts.files(hosts.root("api"))      # the store as that host sees it

Test modules import the fixture (with the SeaweedFS one it needs):

    from tests.utils.seaweed import seaweed_fixture  # noqa: F401
    from tests.utils.store_hosts import store_hosts_fixture  # noqa: F401
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import Settings
from core.files import Files
from tests.chaos.conftest import PrivateRedis
from tests.utils.seaweed import new_bucket
from tests.utils.services import service_env
from tools.seaweed import SeaweedServer


@dataclass
class StoreHosts:
    seaweed: SeaweedServer
    bucket: str
    broker_url: str
    workdir: Path

    @property
    def storage_url(self) -> str:
        return f"s3://{self.bucket}/tinyres"

    @property
    def database_url(self) -> str:
        """A SQLite job store outside every host's data root (PostgreSQL in production)."""
        return f"sqlite:///{self.workdir / 'jobs.sqlite'}"

    def root(self, host: str) -> Path:
        """The data root of `host` (created empty)."""
        path = self.workdir / host / "data"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def env(self, data_root: Path, **extra: str) -> dict[str, str]:
        return service_env(
            data_root,
            TINYRES_BROKER_URL=self.broker_url,
            TINYRES_DATABASE_URL=self.database_url,
            TINYRES_STORAGE_URL=self.storage_url,
            TINYRES_STORAGE_RETRY_SECONDS="20",
            **self.seaweed.env(),
            **extra,
        )

    def settings(self, data_root: Path, **extra: object) -> Settings:
        return Settings(
            data_root=data_root,
            broker_url=self.broker_url,
            database_url=self.database_url,
            storage_url=self.storage_url,
            s3_endpoint_url=self.seaweed.endpoint,
            storage_retry_seconds=20,
            **extra,  # type: ignore[arg-type]
        )

    def files(self, data_root: Path) -> Files:
        return Files(self.settings(data_root))


def files_under(root: Path) -> list[str]:
    """Every file below `root`, relative posix paths, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture(name="hosts")
def store_hosts_fixture(
    seaweed: SeaweedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StoreHosts]:
    """A fresh bucket on the session's SeaweedFS (its credentials in this process's
    environment too) and a private Redis (the broker), for the test's hosts."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield StoreHosts(seaweed, new_bucket(seaweed), redis.url, tmp_path)
    finally:
        redis.stop()
