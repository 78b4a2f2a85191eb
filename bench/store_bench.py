"""Benchmark of the object store against local disk, in one run (issue 14's figures).

    python -m bench.store_bench [--shards 8 --shard-mb 16] [--out bench/out/store_bench.md]

On a real SeaweedFS S3 server on loopback (``tools/seaweed.py``, with credentials, so every
request is signed as in production), with shard-sized files of random bytes:

a. reading shards through the per-host cache, warm (every shard cached; its size and ETag
   as the manifest would record them, so no request reaches the store) vs reading the same
   files from local disk (target >= 0.9x);
b. the same with a HEAD per shard (no ETag recorded): reported, a diagnostic;
c. reading with a cold cache (each shard downloaded, then read) vs local disk (>= 0.5x);
d. writing shards: locally then uploaded (``Store.put_file``), as a shard job on a store
   would, vs written to local disk the way sharding commits today (a temporary file
   renamed into place) (target >= 0.7x).

Both sides read from the page cache once warm; each timing is the best of ``--repeats``.
The ratio is throughput ours / baseline (above 1: ours is faster).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.harness import Row, best_of, emit, logger, render_table, verdict
from core.config import Settings
from core.storage import ObjectInfo, open_store
from core.store_cache import StoreCache
from core.store_local import temp_beside
from tools.seaweed import seaweed_server

log = logger("store_bench")
CHUNK = 4 * 2**20


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="store-"))
    try:
        rows = run(args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    title = f"Object store vs local disk ({args.shards} shards of {args.shard_mb} MB, loopback)"
    emit(render_table(title, rows), args.out, append=args.append)
    return 1 if any(row.failed for row in rows) else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.store_bench", description=__doc__)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--shard-mb", type=int, default=16, help="size of one shard file")
    parser.add_argument("--repeats", type=int, default=5, help="timings keep the best run")
    parser.add_argument("--out", help="write the markdown table to this file too")
    parser.add_argument("--append", action="store_true", help="append to --out")
    parser.add_argument("--workdir", help="where the server and the files go (temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir")
    return parser.parse_args(argv)


def read_whole(path: Path) -> int:
    total = 0
    with path.open("rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK):
            total += len(chunk)
    return total


def run(args: argparse.Namespace, workdir: Path) -> list[Row]:
    payloads = [os.urandom(args.shard_mb * 2**20) for _ in range(args.shards)]
    total_mb = args.shards * args.shard_mb
    keys = [
        f"datasets/bench/train-{i:05d}-of-{args.shards:05d}.tfrecord" for i in range(args.shards)
    ]
    with seaweed_server(workdir / "seaweed", credentials=("bench", "bench-secret")) as server:
        server.create_bucket("bench")
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret")
        local_root = workdir / "local"
        local = open_store(Settings(data_root=local_root))
        s3 = open_store(
            Settings(
                data_root=workdir / "data",
                storage_url="s3://bench/tinyres",
                s3_endpoint_url=server.endpoint,
            )
        )
        scratch = workdir / "scratch"
        scratch.mkdir()

        def write_local() -> None:
            for key, data in zip(keys, payloads, strict=True):
                target = local_root / key
                target.parent.mkdir(parents=True, exist_ok=True)
                temporary = temp_beside(target)
                temporary.write_bytes(data)
                os.replace(temporary, target)

        def write_store() -> list[ObjectInfo]:
            infos = []
            for key, data in zip(keys, payloads, strict=True):
                shard = scratch / Path(key).name
                temporary = temp_beside(shard)
                temporary.write_bytes(data)
                os.replace(temporary, shard)
                infos.append(s3.put_file(shard, key))
                shard.unlink()
            return infos

        log(f"writing {total_mb} MB: local disk, then the store")
        local_write, _ = best_of(args.repeats, write_local)
        store_write, infos = best_of(args.repeats, write_store)

        cache = StoreCache(s3, workdir / "cache", max_bytes=4 * total_mb * 2**20)

        def read_local() -> int:
            return sum(read_whole(local.local_path(key) or Path()) for key in keys)

        def read_cached(recorded: bool) -> Callable[[], int]:
            def read() -> int:
                return sum(
                    read_whole(
                        cache.fetch(info.key, size=info.size, etag=info.etag if recorded else None)
                    )
                    for info in infos
                )

            return read

        def read_cold() -> int:
            shutil.rmtree(cache.root, ignore_errors=True)
            return read_cached(True)()

        log("reading: local disk, warm cache, warm cache with HEAD, cold cache")
        read_local()  # the page cache holds both sides
        read_cached(True)()
        # Interleaved, so that a busy moment of a shared machine hits both sides alike.
        local_read = warm_read = head_read = cold_read = float("inf")
        for _ in range(args.repeats):
            local_read = min(local_read, best_of(1, read_local)[0])
            warm_read = min(warm_read, best_of(1, read_cached(True))[0])
            head_read = min(head_read, best_of(1, read_cached(False))[0])
        for _ in range(args.repeats):
            cold_read = min(cold_read, best_of(1, read_cold)[0])
        log("a checkpoint of the writeup preset: saving it, then uploading it")
        checkpoint = writeup_checkpoint(scratch / "epoch-0001.keras")
        upload, _ = best_of(
            args.repeats, lambda: s3.put_file(checkpoint, "jobs/bench/checkpoints/epoch-0001.keras")
        )
        checkpoint_mb = checkpoint.stat().st_size / 2**20

    def row(figure: str, ours: float, base: float, target: float | None) -> Row:
        ratio = base / ours
        passed = target is None or ratio >= target
        return Row(
            figure=figure,
            ours=f"{total_mb / ours:.0f} MB/s",
            baseline=f"{total_mb / base:.0f} MB/s",
            ratio=ratio,
            target=f">= {target}x" if target else "report",
            result=verdict(passed) if target else "-",
        )

    def checkpoint_row(epoch_seconds: float, epoch: str) -> Row:
        return Row(
            figure=f"e. writeup checkpoint upload ({checkpoint_mb:.0f} MB) per epoch of {epoch}",
            ours=f"{upload:.2f} s",
            baseline=f"{epoch_seconds:g} s",
            ratio=upload / epoch_seconds,
            target="report (fraction of an epoch)",
            result="-",
        )

    return [
        row("a. read shards, warm cache (manifest's ETag)", warm_read, local_read, 0.9),
        row("b. read shards, warm cache + HEAD each", head_read, local_read, None),
        row("c. read shards, cold cache (download + read)", cold_read, local_read, 0.5),
        row("d. write shards (local, then upload)", store_write, local_write, 0.7),
        checkpoint_row(5.0, "the H200 target (5 s)"),
        checkpoint_row(686.0, "the write-up (686 s)"),
    ]


def writeup_checkpoint(path: Path) -> Path:
    """A whole-model checkpoint of the `writeup` preset (200 classes), optimizer included,
    saved as a train job saves one."""
    import numpy as np

    from core.train_config import TrainConfig
    from worker.recipes import build_model, compile_model

    config = TrainConfig(dataset="bench")
    classes = [{"index": i, "wnid": f"n{i:08d}", "label": str(i)} for i in range(200)]
    model = build_model(config, classes)
    model(np.zeros((1, 64, 64, 3), np.uint8))  # build it, as its first batch would
    compile_model(model, config, Settings(data_root=path.parent))
    model.optimizer.build(model.trainable_variables)
    model.save(path)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
