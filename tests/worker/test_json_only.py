"""The Celery worker takes JSON messages only: a pickled task is refused, never run.

A pickle in a message body is code execution for whoever can write to the broker, so the
worker must refuse it before unpickling anything. Here a real worker process, over the
embedded broker under a temporary data root, gets two pickled `tinyres.shard` messages:
one for a real queued job (running it would move the job out of `queued`), and one whose
body creates a file when unpickled. Then a JSON one, which is processed: the worker went
past both pickles, the job is still queued and the file was never created.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from kombu import Exchange, Producer

from core.config import Settings
from core.jobs import JobState, JobStore
from core.tasks import DATASETS_QUEUE, SHARD_TASK
from tests.utils.services import service_env, wait_for, worker_process
from worker.celery_app import create_celery


class Canary:
    """Unpickling it opens (creates) `path`: the proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def test_pickled_tasks_are_refused_and_json_ones_still_run(data_root: Path, tmp_path: Path) -> None:
    settings = Settings(data_root=data_root)
    store = JobStore(settings.effective_database_url)
    store.create_schema()
    # Would fail at once if it ran (no such source): its state would leave `queued`.
    target = store.create("shard", {"source": "missing", "dataset": "d", "num_shards": 1})
    # The JSON message's job: already cancelled, so the worker only looks it up and logs.
    marker = store.create("shard", {"source": "missing", "dataset": "e", "num_shards": 1})
    store.request_cancel(marker.id)

    canary = tmp_path / "unpickled"
    celery = create_celery(settings, include_tasks=False)
    pickled_ids = [f"pickled-{uuid.uuid4()}", f"canary-{uuid.uuid4()}"]
    json_id = f"json-{uuid.uuid4()}"
    messages = [
        celery.amqp.as_task_v2(pickled_ids[0], SHARD_TASK, args=[target.id]),
        celery.amqp.as_task_v2(pickled_ids[1], SHARD_TASK, args=[Canary(canary)]),
    ]
    with celery.connection_for_write() as connection:
        producer = Producer(connection.default_channel)
        for message in messages:
            producer.publish(
                message.body,
                serializer="pickle",
                headers=message.headers,
                exchange=Exchange(DATASETS_QUEUE, "direct"),
                routing_key=DATASETS_QUEUE,
                declare=[celery.amqp.queues[DATASETS_QUEUE]],
                **message.properties,
            )
    # Published behind it, on the same queue: JSON, as every message tinyres sends.
    celery.send_task(SHARD_TASK, args=[marker.id], task_id=json_id)

    log = tmp_path / "worker.log"
    with worker_process(service_env(data_root), queues=DATASETS_QUEUE, log=log):
        wait_for(lambda: f"Task {SHARD_TASK}[{json_id}] succeeded" in log.read_text(), 60)
    text = log.read_text()
    refusal = "Refusing to deserialize untrusted content of type pickle"
    assert text.count(refusal) >= 2, text[-3000:]
    assert all(f"[{task_id}] received" not in text for task_id in pickled_ids)
    assert not canary.exists()
    assert store.get(target.id).state == JobState.QUEUED
    assert store.get(target.id).attempts == 0
    store.engine.dispose()
