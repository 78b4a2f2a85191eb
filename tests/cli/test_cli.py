"""The `tinyres` command against a real API process and a real worker: its progress bar
under a real pseudo-terminal, piped --json, and each exit status."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.utils.datasets import make_digits_tiny_imagenet
from tests.utils.services import REPO, api_process, service_env, worker_process

TINY = ["--width", "8", "--levels", "1,1", "--batch-size", "8", "--l2", "0.0001"]


def tinyres(base: str | None, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cli.main"]
    command += ["--url", base] if base else []
    env = {"PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=300, cwd=REPO
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from worker import sharding

    root = tmp_path_factory.mktemp("cli") / "data"
    source = make_digits_tiny_imagenet(
        root / "src", classes=4, train_per_class=24, val_per_class=4, seed=2
    )
    sharding.shard_dataset(source, root / "datasets" / "digits", num_shards=2, seed=0)
    env = service_env(root, TINYRES_LEASE_SECONDS="3", TINYRES_PROGRESS_INTERVAL="0.2")
    logs = root.parent
    with (
        api_process(env, log=logs / "api.log") as base,
        worker_process(env, log=logs / "worker.log"),
    ):
        yield base


def test_bad_usage_is_2(tmp_path: Path) -> None:
    assert tinyres(None, "train", home=tmp_path).returncode == 2  # no --dataset
    bad = tinyres(None, "train", "--dataset", "d", "--levels", "4,x", home=tmp_path)
    assert bad.returncode == 2 and "4,x" in bad.stderr
    assert tinyres(None, "nosuchcommand", home=tmp_path).returncode == 2


def test_unreachable_is_3(tmp_path: Path) -> None:
    answer = tinyres("http://127.0.0.1:9", "jobs", home=tmp_path)
    assert answer.returncode == 3 and "cannot reach" in answer.stderr


@pytest.mark.slow
def test_refusals_are_3_with_the_reason(service: str, tmp_path: Path) -> None:
    unknown = tinyres(service, "job", "nosuchjob", home=tmp_path)
    assert unknown.returncode == 3 and "404" in unknown.stderr and "nosuchjob" in unknown.stderr
    missing = tinyres(service, "train", "--dataset", "nosuchset", home=tmp_path)
    assert missing.returncode == 3 and "422" in missing.stderr


@pytest.mark.slow
@pytest.mark.heavy
def test_follow_under_a_terminal_shows_an_advancing_bar(service: str, tmp_path: Path) -> None:
    """A real pseudo-terminal: the live bar's percentage rises while the job trains."""
    args = ["-m", "cli.main", "--url", service, "train", "--dataset", "digits"]
    args += ["--epochs", "6", *TINY, "--follow"]
    env = {"PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path), "TERM": "xterm-256color"}
    child = pexpect.spawn(
        sys.executable, args, env=env, cwd=str(REPO), timeout=300, dimensions=(40, 160)
    )
    child.expect(pexpect.EOF)
    child.close()
    screen = child.before.decode("utf-8", "replace")
    percents = [int(p) for p in re.findall(r"(\d{1,3})%", screen)]
    assert child.exitstatus == 0, screen[-3000:]
    assert "\x1b[" in screen, "no live display on a terminal"
    assert len(set(percents)) >= 3 and percents == sorted(percents), percents
    assert percents[-1] == 100 and "succeeded" in screen
    assert re.search(r"epoch \d+/6", screen) and "loss" in screen


@pytest.mark.slow
def test_piped_json_parses_and_a_cancelled_job_exits_1(service: str, tmp_path: Path) -> None:
    submitted = tinyres(
        service, "--json", "train", "--dataset", "digits", "--epochs", "500", *TINY, home=tmp_path
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    listed = tinyres(service, "--json", "jobs", home=tmp_path)
    assert job_id in [job["id"] for job in json.loads(listed.stdout)["jobs"]]
    assert tinyres(service, "cancel", job_id, home=tmp_path).returncode == 0
    followed = tinyres(service, "--json", "job", job_id, "--follow", home=tmp_path)
    assert followed.returncode == 1, followed.stderr
    assert json.loads(followed.stdout)["state"] == "cancelled"
    plain = tinyres(service, "job", job_id, home=tmp_path)
    assert plain.returncode == 0 and "cancelled" in plain.stdout
