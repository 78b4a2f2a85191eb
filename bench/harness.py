"""What the benchmarks share: result rows and tables, timing, a server, registered models.

Nothing here imports TensorFlow at module level; the model helpers import it when called.
"""

from __future__ import annotations

import io
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tools.processes import REPO, free_port, http_server

# --------------------------------------------------------------------------------- tables


@dataclass
class Row:
    """One figure of a ratio table: ours against a baseline, and whether it meets its target.

    ``result`` is PASS or FAIL for a target, ``-`` for a figure that is only reported, and
    (pass) or (fail) for a diagnostic that does not decide the exit status.
    """

    figure: str
    ours: str
    baseline: str
    ratio: float | None
    target: str
    result: str

    @property
    def failed(self) -> bool:
        return self.result == "FAIL"


def verdict(passed: bool, *, diagnostic: bool = False) -> str:
    if diagnostic:
        return "(pass)" if passed else "(fail)"
    return "PASS" if passed else "FAIL"


def render_table(title: str, rows: list[Row], notes: list[str] | None = None) -> str:
    """A markdown table of ``rows`` under a ``###`` title, with notes as a list below."""
    lines = [
        f"### {title}",
        "",
        "| figure | ours | baseline | ratio | target | result |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.3f}x"
        lines.append(
            f"| {row.figure} | {row.ours} | {row.baseline} | {ratio} | {row.target} "
            f"| {row.result} |"
        )
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines)


def emit(table: str, out: str | None, *, append: bool = False) -> None:
    """Print the table, and write it to ``out`` too when given."""
    print(table)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w") as handle:
            handle.write(table + "\n")


# --------------------------------------------------------------------------------- timing


def best_of(repeats: int, work: Callable[[], Any]) -> tuple[float, Any]:
    """The shortest of ``repeats`` runs of ``work``, in seconds, and its last result."""
    best, result = math.inf, None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def logger(name: str) -> Callable[[str], None]:
    """A function that prints ``[name] message`` to stderr (stdout holds the table)."""

    def log(message: str) -> None:
        print(f"[{name}] {message}", file=sys.stderr, flush=True)

    return log


def rss_mb(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


# --------------------------------------------------------------------------------- models


def class_names(count: int) -> list[dict[str, Any]]:
    return [{"index": i, "wnid": f"n{i:08d}", "label": f"class {i}"} for i in range(count)]


def register_model(settings: Any, classes: int, arch: Any, seed: int = 0) -> str:
    """Save an untrained ResNet of ``arch`` as a succeeded train job's model; its id."""
    import keras

    from core import layout
    from core.jobs import JobState, JobStore
    from model.resnet import build_resnet

    keras.utils.set_random_seed(seed)
    network = build_resnet(classes, arch, class_names=class_names(classes))
    store = JobStore(settings.effective_database_url)
    store.create_schema()
    job = store.create("train", {"dataset": "bench", "width": arch.width, "levels": arch.levels})
    path = layout.model_path(settings, job.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    network.save(path)
    store.finish(job.id, JobState.SUCCEEDED, result={"model": job.id})
    store.engine.dispose()
    return job.id


def make_images(folder: Path, count: int) -> list[bytes]:
    """``count`` 64x64 JPEGs of smooth random images (they compress like photos)."""
    from PIL import Image

    from model.config import IMAGE_SIZE

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
        (folder / f"{i:03d}.jpg").write_bytes(buffer.getvalue())
    return images


# --------------------------------------------------------------------------------- server


@contextmanager
def server(
    data_root: Path, log: Path, factory: str | None = None, **env: str
) -> Iterator[tuple[int, int]]:
    """The API (``python -m app``), or the uvicorn app ``factory``, on a free port in its
    own process, with default settings but ``TINYRES_*`` = ``env``; yields (port, pid)."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TINYRES_")}
    environment.update(
        TINYRES_DATA_ROOT=str(data_root),
        TINYRES_PORT=str(port),
        PYTHONPATH=str(REPO),
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
        **env,
    )
    command = [sys.executable, "-m", "app"]
    if factory:
        command = [sys.executable, "-m", "uvicorn", "--factory", factory, "--port", str(port)]
        command += ["--log-level", "warning"]
    with http_server(command, environment, port, log=log) as process:
        yield port, process.pid


# ------------------------------------------------------------------- checks and requests


CHECK_HEADER = ["| target | measured | verdict |", "| --- | --- | --- |"]


def check_row(target: str, measured: str, ok: bool | None) -> str:
    """One row of a target/measured/verdict table; ``ok=None`` for a figure only reported."""
    return f"| {target} | {measured} | {'' if ok is None else verdict(ok)} |"


BOUNDARY = "tinyresbenchboundary"


def multipart_body(image: bytes, model: str | None) -> bytes:
    """A ``POST /predict`` form: the image, and the model's id when given."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + image
        + b"\r\n"
    ]
    if model:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\n'
            f"{model}\r\n".encode()
        )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def post_request(host: str, port: int, path: str, body: bytes) -> bytes:
    """The raw HTTP/1.1 bytes of a multipart POST (keep-alive)."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
