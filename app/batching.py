"""Dynamic batching of prediction requests, off the event loop.

Requests wait in one queue. A collector task takes the oldest and gathers whatever else
arrives within ``batch_timeout_ms`` of it (at once, if those requests already waited while
the previous batch ran), up to ``batch_max_size`` images. One dedicated inference thread
runs the batch: one forward pass per model in it. The event loop never runs a model.

Admission is bounded: at most ``predict_queue_size`` requests are accepted and not yet
answered (waiting or running); the next gets ``QueueFull`` (the API answers 503 with
``Retry-After``) instead of a growing queue and ever longer waits.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from core.config import Settings


class Classifier(Protocol):
    """What the batcher runs: ``model.serving.LoadedModel`` is one."""

    @property
    def id(self) -> str: ...

    def probabilities(self, pixels: np.ndarray) -> np.ndarray: ...


class QueueFull(Exception):
    """Too many requests are waiting; retry after ``retry_after`` seconds."""

    def __init__(self, waiting: int, retry_after: int) -> None:
        super().__init__(f"prediction queue is full ({waiting} requests waiting); retry later")
        self.retry_after = retry_after


class PredictorClosed(Exception):
    """The service is shutting down."""


@dataclass(frozen=True)
class BatchCounts:
    """What the batcher has run so far (a consistent snapshot of ``BatchStats``)."""

    batches: int
    images: int
    max_batch: int
    rejected: int
    recent_batch_sizes: list[int]


class BatchStats:
    """Sizes of the batches actually run (thread-safe; written by the inference thread)."""

    def __init__(self, recent: int = 256) -> None:
        self._lock = threading.Lock()
        self.batches = 0
        self.images = 0
        self.max_batch = 0
        self.rejected = 0
        self._recent: deque[int] = deque(maxlen=recent)

    def record(self, size: int) -> None:
        with self._lock:
            self.batches += 1
            self.images += size
            self.max_batch = max(self.max_batch, size)
            self._recent.append(size)

    def reject(self) -> None:
        with self._lock:
            self.rejected += 1

    def snapshot(self) -> BatchCounts:
        with self._lock:
            return BatchCounts(
                batches=self.batches,
                images=self.images,
                max_batch=self.max_batch,
                rejected=self.rejected,
                recent_batch_sizes=list(self._recent),
            )


@dataclass(eq=False)
class _Request:
    model: Classifier
    pixels: np.ndarray  # uint8 [n, 64, 64, 3]
    future: asyncio.Future[np.ndarray]
    arrived: float  # event loop time
    # Filled in by the inference thread: the probabilities or the error.
    outcome: Any = field(default=None)


class Predictor:
    """Runs classifiers on pixels for many concurrent requests, batching them.

    Args:
        batching: Gather concurrent requests into batches; False runs each request alone
            (still in the inference thread).
        max_batch: The most images in one forward pass.
        timeout_ms: How long the oldest waiting request waits for others to join it.
        queue_size: The most requests accepted and not yet answered.
        retry_after: Seconds a refused client is told to wait.
        on_batch: Called (in the inference thread) with the size of each forward pass run,
            e.g. a Prometheus histogram's ``observe``.
    """

    def __init__(
        self,
        *,
        batching: bool = True,
        max_batch: int = 32,
        timeout_ms: float = 5.0,
        queue_size: int = 256,
        retry_after: int = 1,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.batching = batching
        self.max_batch = max_batch
        self.timeout = timeout_ms / 1000.0
        self.queue_size = queue_size
        self.retry_after = retry_after
        self.stats = BatchStats()
        self._on_batch = on_batch
        self._waiting = 0
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._collector: asyncio.Task[None] | None = None
        self._batch: list[_Request] = []  # gathered or running now
        self._closed = False
        # One thread: TensorFlow already spreads one batch over every core, and a single
        # runner is what makes waiting requests pile up into the next batch.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")

    @classmethod
    def from_settings(
        cls, settings: Settings, on_batch: Callable[[int], None] | None = None
    ) -> Predictor:
        return cls(
            batching=settings.batching,
            max_batch=settings.batch_max_size,
            timeout_ms=settings.batch_timeout_ms,
            queue_size=settings.predict_queue_size,
            on_batch=on_batch,
        )

    @property
    def waiting(self) -> int:
        """Requests accepted and not yet answered."""
        return self._waiting

    def check_admission(self) -> None:
        """Raise ``QueueFull`` now if a request would be refused (before reading its body)."""
        if self._closed:
            raise PredictorClosed("the prediction service is shutting down")
        if self._waiting >= self.queue_size:
            self.stats.reject()
            raise QueueFull(self._waiting, self.retry_after)

    async def predict(self, model: Classifier, pixels: np.ndarray) -> np.ndarray:
        """Probabilities ``[n, classes]`` of ``pixels`` (uint8 ``[n, 64, 64, 3]``).

        Raises:
            QueueFull: ``queue_size`` requests are already waiting.
            PredictorClosed: The service is shutting down.
        """
        self.check_admission()
        loop = asyncio.get_running_loop()
        self._waiting += 1
        try:
            if not self.batching:
                return await loop.run_in_executor(self._executor, self._forward, model, pixels)
            self._start(loop)
            request = _Request(model, pixels, loop.create_future(), loop.time())
            self._queue.put_nowait(request)
            return await request.future
        finally:
            self._waiting -= 1

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._collector is None or self._collector.done():
            self._collector = loop.create_task(self._collect(), name="predict-batcher")

    async def close(self) -> None:
        """Stop: requests not answered yet get ``PredictorClosed``; a running batch finishes
        in its thread, unanswered."""
        self._closed = True
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)
        unanswered = list(self._batch)
        while not self._queue.empty():
            unanswered.append(self._queue.get_nowait())
        for request in unanswered:
            if not request.future.done():
                request.future.set_exception(PredictorClosed("the service is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._batch = []
            await self._gather(loop, self._batch)
            live = [r for r in self._batch if not r.future.done()]  # skip clients that left
            if not live:
                continue
            try:
                await loop.run_in_executor(self._executor, self._run_batch, live)
            except Exception as exc:  # the executor itself failed (shut down)
                for request in live:
                    request.outcome = exc
            for request in live:
                if request.future.done():
                    continue
                if isinstance(request.outcome, BaseException):
                    request.future.set_exception(request.outcome)
                else:
                    request.future.set_result(request.outcome)

    async def _gather(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        """Puts in ``batch`` the oldest request and those arriving within the timeout of it,
        up to ``max_batch`` images."""
        first = await self._queue.get()
        batch.append(first)
        size = len(first.pixels)
        deadline = first.arrived + self.timeout
        while size < self.max_batch:
            try:
                request = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    request = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            batch.append(request)
            size += len(request.pixels)

    def _run_batch(self, batch: Sequence[_Request]) -> None:
        """Inference thread: one forward pass per model over all its requests' images."""
        by_model: dict[int, list[_Request]] = {}
        for request in batch:
            by_model.setdefault(id(request.model), []).append(request)
        for requests in by_model.values():
            pixels = np.concatenate([r.pixels for r in requests])
            try:
                probabilities = self._forward(requests[0].model, pixels)
            except Exception as exc:
                for request in requests:
                    request.outcome = exc
                continue
            offsets = np.cumsum([len(r.pixels) for r in requests])[:-1]
            for request, part in zip(requests, np.split(probabilities, offsets), strict=True):
                request.outcome = part

    def _forward(self, model: Classifier, pixels: np.ndarray) -> np.ndarray:
        """Runs ``model`` in slices of at most ``max_batch`` images (a big batch request)."""
        parts = []
        for start in range(0, len(pixels), self.max_batch):
            chunk = pixels[start : start + self.max_batch]
            parts.append(model.probabilities(chunk))
            self.stats.record(len(chunk))
            if self._on_batch is not None:
                self._on_batch(len(chunk))
        return np.concatenate(parts)
