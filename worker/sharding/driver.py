"""Sharding a whole dataset in this process: the shard job's own steps, one after another.

A shard job (``worker.shard_job``) runs ``plan``, then ``write_shard`` once per shard in
parallel tasks, then ``finalize``; ``shard_dataset`` runs exactly those functions in a
loop, for tests, benchmarks and tools.
"""

from __future__ import annotations

from os import PathLike

from core.manifest import Manifest
from worker.sharding.manifest import finalize
from worker.sharding.planning import plan
from worker.sharding.writer import Progress, StopCheck, write_shard


def shard_dataset(
    source_path: str | PathLike[str],
    dataset_dir: str | PathLike[str],
    *,
    num_shards: int = 10,
    compression: str = "GZIP",
    seed: int = 0,
    source_label: str | None = None,
    on_progress: Progress | None = None,
    should_stop: StopCheck | None = None,
) -> Manifest:
    """Plan, write every shard and finalize. Returns the manifest.

    ``on_progress(done, total)`` counts images over all shards. Raises what ``plan``,
    ``write_shard`` and ``finalize`` raise (a finished dataset: ``DatasetExistsError``).
    """
    the_plan = plan(
        source_path,
        dataset_dir,
        num_shards=num_shards,
        compression=compression,
        seed=seed,
        source_label=source_label,
    )
    total = the_plan.total_images
    finished = 0
    written = []
    for split, index in the_plan.all_shards():

        def shard_progress(done: int, _: int, base: int = finished) -> None:
            if on_progress is not None:
                on_progress(base + done, total)

        written.append(
            write_shard(the_plan, split, index, on_progress=shard_progress, should_stop=should_stop)
        )
        finished += len(the_plan.records(split, index))
    return finalize(the_plan, written)
