"""Prometheus metrics of the API, served as text at ``GET /metrics``.

Every app (``app.main.create_app``) has its own ``CollectorRegistry``: tests build many
apps in one process, and nothing here touches prometheus_client's global registry.

HTTP, recorded per request by prometheus-fastapi-instrumentator; ``handler`` is the route
template (``/jobs/{job_id}``, never the raw path; ``none`` for paths matching no route), and
``GET /metrics`` itself is not recorded:

- ``http_requests_total{method,status,handler}`` counter; ``status`` is the exact code.
- ``http_request_duration_seconds{method,handler}`` histogram of latencies.
- ``http_request_duration_highr_seconds`` histogram of latencies, no labels, fine buckets.
- ``http_request_size_bytes{handler}`` / ``http_response_size_bytes{handler}`` summaries of
  the Content-Length headers.

Prediction, recorded by the batcher (``app.batching.Predictor``):

- ``tinyres_predict_batch_size`` histogram: images per forward pass (one observation per
  pass the inference thread runs; concurrent requests gathered into one pass make sizes
  above 1). Its ``_count`` and ``_sum`` equal ``batches`` and ``images`` of
  ``GET /predict/stats``.
- ``tinyres_predict_waiting`` gauge: requests accepted and not yet answered.
- ``tinyres_predict_queue_limit`` gauge: ``TINYRES_PREDICT_QUEUE_SIZE``, the most of them.
- ``tinyres_predict_rejected_total`` counter: requests refused with 503 (queue full).

Jobs, read from the job store at scrape time (two cheap queries, at most
``STORE_TIMEOUT`` seconds; a store that does not answer gives ``tinyres_job_store_up 0``
and none of the others):

- ``tinyres_job_store_up`` gauge: 1 when the job store answered this scrape.
- ``tinyres_jobs{kind,state}`` gauge: jobs of each kind in each state (every pair is
  present, 0 included).
- ``tinyres_running_jobs`` gauge: jobs in state ``running``.
- ``tinyres_job_lease_seconds_remaining{job_id,kind}`` gauge, one per running job: seconds
  until its lease expires. The worker running the job renews the lease with each heartbeat,
  so a healthy job stays near ``TINYRES_LEASE_SECONDS``; a value at or below 0 means its
  worker stopped heartbeating (died) and the job is due to be sent again.
- ``tinyres_orphaned_jobs`` gauge: running jobs whose lease has expired (or is missing).

Broker, asked at scrape time through the app's own Celery connection (at most
``BROKER_TIMEOUT`` seconds; a broker that does not answer gives ``tinyres_broker_up 0``
and no queue depth, never an error):

- ``tinyres_broker_up`` gauge: 1 when the broker answered this scrape.
- ``tinyres_queue_depth{queue}`` gauge: messages waiting in each Celery queue, not yet
  delivered to a worker (Redis: ``LLEN`` of the queue's lists; the embedded SQLAlchemy
  broker: visible rows of ``kombu_message`` in that ``kombu_queue``).

Process (prometheus_client's standard collectors): ``process_resident_memory_bytes``,
``process_cpu_seconds_total``, ``process_open_fds`` and the other ``process_*``;
``python_gc_*``; ``python_info``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar, get_args

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as instrumentator_metrics

from app.broker import queue_depths
from core.job_records import JobKind, JobState, RunningLease, utcnow

if TYPE_CHECKING:
    from celery import Celery
    from fastapi import FastAPI

    from app.batching import Predictor
    from core.config import Settings
    from core.jobs import JobStore

METRICS_PATH = "/metrics"
STORE_TIMEOUT = 2.0
BROKER_TIMEOUT = 2.0  # above app.broker.REDIS_SOCKET_TIMEOUT

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

T = TypeVar("T")


class _Bounded:
    """Runs a blocking call in a daemon thread and waits for it at most ``timeout`` s.

    A call still running from an earlier scrape (a hung connection) is not started twice:
    the next scrape gets no answer at once instead of piling up threads.
    """

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        self._busy = threading.Lock()

    def __call__(self, function: Callable[[], T]) -> T | None:
        if not self._busy.acquire(blocking=False):
            return None
        box: list[T] = []

        def run() -> None:
            try:
                box.append(function())
            except Exception:
                pass  # unanswered: the caller reports the service as down
            finally:
                self._busy.release()

        thread = threading.Thread(target=run, name=f"metrics-{self.name}", daemon=True)
        thread.start()
        thread.join(self.timeout)
        return box[0] if box else None


def _gauge(name: str, documentation: str, value: float | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class JobStoreCollector(Collector):
    """``tinyres_job_store_up``, ``tinyres_jobs``, running jobs and their leases."""

    KINDS: tuple[str, ...] = get_args(JobKind)

    def __init__(self, store: Callable[[], JobStore | None], timeout: float = STORE_TIMEOUT):
        self._store = store
        self._bounded = _Bounded("job-store", timeout)

    @staticmethod
    def _query(store: JobStore) -> tuple[dict[tuple[str, str], int], list[RunningLease]]:
        return store.count_by_kind_state(), store.running_leases()

    def collect(self) -> Iterator[Metric]:
        store = self._store()
        answer = self._bounded(lambda: self._query(store)) if store is not None else None
        yield _gauge(
            "tinyres_job_store_up",
            "1 when the job store answered this scrape, else 0.",
            1 if answer is not None else 0,
        )
        if answer is None:
            return
        by_state, leases = answer
        jobs = GaugeMetricFamily(
            "tinyres_jobs", "Jobs in the job store by kind and state.", labels=["kind", "state"]
        )
        counts = {(kind, state.value): 0 for kind in self.KINDS for state in JobState}
        for pair, count in by_state.items():
            counts[pair] = counts.get(pair, 0) + count
        for (kind, state), count in sorted(counts.items()):
            jobs.add_metric([kind, state], count)
        yield jobs
        now = utcnow()
        remaining = GaugeMetricFamily(
            "tinyres_job_lease_seconds_remaining",
            "Seconds until the lease of a running job expires; the worker running it renews "
            "the lease with each heartbeat, so <= 0 means its worker stopped heartbeating.",
            labels=["job_id", "kind"],
        )
        orphaned = 0
        for lease in leases:
            expires = lease.expires
            seconds = (expires - now).total_seconds() if expires is not None else 0.0
            remaining.add_metric([lease.job_id, lease.kind], seconds)
            orphaned += seconds <= 0
        yield remaining
        yield _gauge("tinyres_running_jobs", "Jobs in state running.", len(leases))
        yield _gauge(
            "tinyres_orphaned_jobs",
            "Running jobs whose lease expired: their worker stopped heartbeating.",
            orphaned,
        )


class BrokerCollector(Collector):
    """``tinyres_broker_up`` and ``tinyres_queue_depth`` through the app's Celery app."""

    def __init__(self, celery: Celery, settings: Settings, timeout: float = BROKER_TIMEOUT):
        self._celery = celery
        self._embedded = settings.broker_is_embedded
        self._bounded = _Bounded("broker", timeout)

    def depths(self) -> dict[str, int]:
        return queue_depths(self._celery, self._embedded)

    def collect(self) -> Iterator[Metric]:
        depths = self._bounded(self.depths)
        yield _gauge(
            "tinyres_broker_up",
            "1 when the Celery broker answered this scrape, else 0.",
            1 if depths is not None else 0,
        )
        if depths is None:
            return
        family = GaugeMetricFamily(
            "tinyres_queue_depth",
            "Messages waiting in a Celery queue, not yet delivered to a worker.",
            labels=["queue"],
        )
        for name, depth in sorted(depths.items()):
            family.add_metric([name], depth)
        yield family


class PredictorCollector(Collector):
    """Admission state of the batcher: waiting requests, the limit, refusals."""

    def __init__(self, predictor: Callable[[], Predictor | None]) -> None:
        self._predictor = predictor

    def collect(self) -> Iterable[Metric]:
        predictor = self._predictor()
        if predictor is None:
            return
        yield _gauge(
            "tinyres_predict_waiting",
            "Prediction requests accepted and not yet answered.",
            predictor.waiting,
        )
        yield _gauge(
            "tinyres_predict_queue_limit",
            "The most prediction requests accepted at once (TINYRES_PREDICT_QUEUE_SIZE).",
            predictor.queue_size,
        )
        rejected = CounterMetricFamily(
            "tinyres_predict_rejected",
            "Prediction requests refused with 503 because the queue was full.",
            value=predictor.stats.snapshot().rejected,
        )
        yield rejected


class Metrics:
    """One app's registry and the metrics recorded outside scrapes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.batch_sizes = Histogram(
            "tinyres_predict_batch_size",
            "Images per forward pass of the prediction batcher.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def install(self, app: FastAPI, settings: Settings) -> None:
        """Instruments ``app``'s requests and registers the scrape-time collectors; the
        route is ``app.api.routes.metrics``."""
        state = app.state
        self.registry.register(JobStoreCollector(lambda: getattr(state, "store", None)))
        self.registry.register(BrokerCollector(state.celery, settings))
        self.registry.register(PredictorCollector(lambda: getattr(state, "predictor", None)))
        instrumentator = Instrumentator(
            should_group_status_codes=False,
            should_ignore_untemplated=False,
            should_group_untemplated=True,
            excluded_handlers=[f"^{METRICS_PATH}$"],
            registry=self.registry,
        )
        # Made here, once per app: the middleware would otherwise make them when the
        # middleware stack is built, in whichever registry state it finds.
        instrumentator.add(
            instrumentator_metrics.default(
                latency_lowr_buckets=LATENCY_BUCKETS, registry=self.registry
            )
        )
        instrumentator.instrument(app)

    def scrape(self) -> bytes:
        """The text exposition of every metric (blocking: collectors query the store and
        the broker, each for a bounded time)."""
        return generate_latest(self.registry)
