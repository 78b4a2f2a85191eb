"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the compose file
against the Compose specification, and every command they run against `make run`'s."""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _supervised() -> dict[str, list[str]]:
    """The command of each program `make run` starts (deploy/supervisord.conf)."""
    config = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    config.read(REPO / "deploy" / "supervisord.conf")
    return {
        section.removeprefix("program:"): shlex.split(config[section]["command"].replace("%%", "%"))
        for section in config.sections()
        if section.startswith("program:")
    }


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_file_follows_the_compose_specification() -> None:
    check = [
        str(Path(sys.executable).with_name("check-jsonschema")),
        "--builtin-schema",
        "vendor.compose-spec",
        str(REPO / "docker-compose.yml"),
        str(REPO / "docker-compose.objectstore.yml"),
    ]
    result = subprocess.run(check, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_the_commands_of_make_run() -> None:
    services = _compose()["services"]
    supervised = _supervised()
    assert services["api"]["command"] == supervised["api"]
    assert services["datasets-worker"]["command"] == supervised["datasets"]
    assert services["worker"]["command"] == supervised["training"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^run:.*\n(\t.*\n)*\t.*supervisord --nodaemon", makefile, re.M)
    assert "--configuration deploy/supervisord.conf" in makefile


def test_compose_shape() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"api", "worker", "redis", "postgres"} <= set(services)
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    # Redis: persistent (AOF on a volume), password, not published; same for PostgreSQL.
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "--requirepass" in redis["command"]
    assert any(v.endswith(":/data") for v in redis["volumes"])
    for name in ("redis", "postgres"):
        assert "ports" not in services[name], f"{name} must not be published"
        assert "healthcheck" in services[name]
    for name in ("api", "worker", "datasets-worker"):
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert "healthcheck" in services[name]
        env = services[name]["environment"]
        assert env["TINYRES_BROKER_URL"].startswith("redis://:")
        assert env["TINYRES_DATABASE_URL"].startswith("postgresql+psycopg://")


def test_dockerfile_runs_the_api_as_non_root() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd is not None
    assert yaml.safe_load(cmd.group(1)) == _supervised()["api"]
    assert re.search(r"^USER tinyres$", dockerfile, re.M)
    assert "'.[gpu]'" in dockerfile
    # Every package folder the code imports is copied into the image.
    for package in ("app", "core", "model", "worker"):
        assert f"COPY {package} ./{package}" in dockerfile


def test_compose_object_store_variant() -> None:
    """SeaweedFS under the `objectstore` profile (the default stack is unchanged), and the
    override file that gives every app service the store and a scratch volume of its own."""
    services = _compose()["services"]
    seaweedfs = services["seaweedfs"]
    assert seaweedfs["image"].startswith("chrislusf/seaweedfs")
    assert seaweedfs["command"][:1] == ["server"] and "-s3" in seaweedfs["command"]
    assert "ports" not in seaweedfs and "healthcheck" in seaweedfs
    assert seaweedfs["profiles"] == services["seaweedfs-init"]["profiles"] == ["objectstore"]
    for name in ("api", "worker", "datasets-worker", "redis", "postgres"):
        assert "profiles" not in services[name]

    override = yaml.safe_load((REPO / "docker-compose.objectstore.yml").read_text())["services"]
    assert set(override) == {"api", "worker", "datasets-worker"}
    sources = set()
    for name, service in override.items():
        env = service["environment"]
        assert env["TINYRES_STORAGE_URL"].startswith("s3://")
        assert env["TINYRES_S3_ENDPOINT_URL"] == "http://seaweedfs:8333"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
        # Compose merges volumes by target: /data is replaced, the shared `data` is gone.
        [volume] = service["volumes"]
        source, target = volume.split(":")
        assert target == "/data" and source != "data", name
        sources.add(source)
        assert service["depends_on"]["seaweedfs-init"]["condition"] == (
            "service_completed_successfully"
        )
        assert set(services[name]["volumes"]) == {"data:/data"}
    assert len(sources) == 3  # no two services share one
