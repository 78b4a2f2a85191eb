"""A shard job's files in the store (``core/files.py``), so its pieces can run on any host.

The shard work (``worker.sharding``) reads and writes local files; this module moves them
between a host's data root and the store, under the keys of the data root's layout:

- the plan: ``datasets/<name>/.staging/plan.json``, published by the planner; a piece on
  another host reads it from the store and relocates it (its dataset folder and its
  source are this host's own local copies);
- each shard: ``datasets/<name>/<shard file>`` is published once written, then its sidecar
  ``datasets/<name>/.staging/<shard file>.json`` (so a sidecar in the store means its shard
  object was uploaded whole); the local copies are then scratch, and removed;
- the manifest, published LAST by the finalizer (whichever piece ends the job, on any
  host): it is built from the sidecars in the store (what each piece recorded, never a
  local ``stat`` of a file another host wrote), after every shard object was checked in
  the store to have the recorded size. Then the staging objects go.

With the local backend (``files.remote`` False) the store is the data root: every step
here is what the job did before the store existed, and nothing is copied or removed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import ValidationError

from core.files import Files
from core.manifest import MANIFEST_FILE, Manifest
from core.storage import ObjectNotFound, join_key
from worker import sharding
from worker.sharding.planning import Plan
from worker.sharding.staging import PLAN_FILE, STAGING, plan_path, sidecar_path, write_text_atomic
from worker.sharding.writer import WrittenShard


def dataset_key(name: str) -> str:
    return join_key("datasets", name)


def manifest_key(name: str) -> str:
    return join_key("datasets", name, MANIFEST_FILE)


def _plan_key(name: str) -> str:
    return join_key("datasets", name, STAGING, PLAN_FILE)


def _sidecar_key(name: str, shard_file: str) -> str:
    return join_key("datasets", name, STAGING, f"{shard_file}.json")


def stored_manifest(files: Files, name: str) -> Manifest | None:
    """The dataset's manifest in the store, or None while it has none."""
    try:
        return Manifest.from_json(files.get_bytes(manifest_key(name)))
    except ObjectNotFound:
        return None


def local_source(files: Files, key: str) -> Path:
    """A local copy of the source `key`: one object (an uploaded archive) or every object
    under the prefix (a folder). The local backend: the data root's own file or folder. A
    source that is not there gives a path that does not exist (the scan says so)."""
    if not files.remote or files.exists(key):
        return files.local(key) if files.remote else files.path_of(key)
    return files.local_tree(key)


# --------------------------------------------------------------------------- the plan


def fetch_plan(files: Files, dataset_dir: Path, source_path: Path | None = None) -> Plan | None:
    """The plan in the store, relocated to this host: its dataset folder is `dataset_dir`
    and, when given, its source is `source_path` (this host's copy of the source)."""
    if not files.remote:
        return None
    try:
        stored = Plan.model_validate_json(files.get_bytes(_plan_key(dataset_dir.name)))
    except (ObjectNotFound, ValidationError):
        return None
    update: dict[str, str] = {"dataset_dir": str(dataset_dir)}
    if source_path is not None:
        update["source_path"] = str(Path(source_path).resolve())
    return stored.model_copy(update=update)


def adopt_stored_plan(files: Files, dataset_dir: Path, source_path: Path) -> None:
    """Put the store's plan (if any) in the local staging folder, where ``sharding.plan``
    looks for it, so a planner on any host reuses the plan (and shards) of an earlier
    attempt."""
    stored = fetch_plan(files, dataset_dir, source_path)
    if stored is not None:
        path = plan_path(dataset_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, stored.model_dump_json())


def publish_plan(files: Files, plan: Plan) -> None:
    """Upload the plan the planner wrote; its local copy is scratch from then on."""
    if files.remote:
        path = plan_path(plan.dataset_dir)
        files.publish(path, _plan_key(plan.name))
        files.discard_local(path)


def load_job_plan(files: Files, dataset_dir: Path) -> Plan:
    """The plan of a dataset being sharded: the store's (its dataset folder relocated to
    this host; its source still the planner's: see `with_local_source`), or with the
    local backend the local one.

    Raises:
        PlanNotFoundError: There is none (never planned, or finalized since).
    """
    if not files.remote:
        return sharding.load_plan(dataset_dir)
    plan = fetch_plan(files, dataset_dir)
    if plan is None:
        raise sharding.PlanNotFoundError(f"no sharding plan for {dataset_dir.name} in the store")
    dataset_dir.mkdir(parents=True, exist_ok=True)
    return plan


def with_local_source(files: Files, plan: Plan, source_key: str) -> Plan:
    """The plan reading this host's copy of its source (fetched now, through the cache)."""
    if not files.remote:
        return plan
    source = local_source(files, source_key).resolve()
    return plan.model_copy(update={"source_path": str(source)})


# --------------------------------------------------------------------------- shards


def publish_shard(files: Files, plan: Plan, written: WrittenShard) -> None:
    """Upload a written shard, then its sidecar; then drop both local copies (scratch)."""
    if not files.remote:
        return
    shard = Path(plan.dataset_dir) / written.file
    sidecar = sidecar_path(plan.dataset_dir, written.file)
    files.publish(shard, join_key(dataset_key(plan.name), written.file))
    files.publish(sidecar, _sidecar_key(plan.name, written.file))
    files.discard_local(shard)
    files.discard_local(sidecar)


def stored_written(files: Files, plan: Plan) -> list[WrittenShard]:
    """The sidecars of this plan's shards in the store (a shard without one is not done)."""
    found = []
    for split, index in plan.all_shards():
        try:
            raw = files.get_bytes(_sidecar_key(plan.name, plan.shard_file(split, index)))
            written = WrittenShard.model_validate_json(raw)
        except (ObjectNotFound, ValidationError):
            continue
        if written.plan_id == plan.plan_id:
            found.append(written)
    return found


def finalize_in_store(files: Files, plan: Plan) -> Manifest:
    """``sharding.finalize`` over the store: every shard object checked against the bytes
    its sidecar recorded (`TruncatedObject` when they differ), the manifest published
    last, then the staging objects and the local scratch removed.

    Raises what ``sharding.finalize`` raises, and `StoreError`s.
    """
    if not files.remote:
        return sharding.finalize(plan)

    def present(shard: WrittenShard) -> bool:
        try:
            files.info(join_key(dataset_key(plan.name), shard.file), size=shard.bytes)
        except ObjectNotFound:
            return False
        return True

    Path(plan.dataset_dir).mkdir(parents=True, exist_ok=True)
    manifest = sharding.finalize(plan, stored_written(files, plan), present=present)
    publish_manifest(files, Path(plan.dataset_dir))
    return manifest


def publish_manifest(files: Files, dataset_dir: Path) -> None:
    """Upload the local manifest (last of the dataset's objects); drop the staging objects
    and the local scratch folder."""
    local = dataset_dir / MANIFEST_FILE
    files.publish(local, manifest_key(dataset_dir.name))
    files.store.delete(join_key(dataset_key(dataset_dir.name), STAGING))
    if files.remote:
        shutil.rmtree(dataset_dir, ignore_errors=True)


__all__ = [
    "adopt_stored_plan",
    "dataset_key",
    "finalize_in_store",
    "load_job_plan",
    "local_source",
    "manifest_key",
    "publish_plan",
    "publish_shard",
    "stored_manifest",
    "stored_written",
    "with_local_source",
]
