"""The batcher (app.batching) on its own, with a stand-in classifier: batches, admission,
shutdown."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from app.batching import Predictor, PredictorClosed, QueueFull

pytestmark = pytest.mark.anyio


class _Zeros:
    """A stand-in classifier for batcher-only tests."""

    id = "zeros"

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return np.zeros((len(pixels), 2), np.float32)


async def test_shutdown_answers_waiting_requests() -> None:
    predictor = Predictor(batching=True, timeout_ms=1000, queue_size=4)
    waiting = asyncio.create_task(predictor.predict(_Zeros(), np.zeros((1, 64, 64, 3), np.uint8)))
    await asyncio.sleep(0.05)
    assert predictor.waiting == 1
    await predictor.close()
    with pytest.raises(PredictorClosed):
        await waiting
    with pytest.raises(PredictorClosed):
        await predictor.predict(_Zeros(), np.zeros((1, 64, 64, 3), np.uint8))
    assert predictor.waiting == 0


async def test_requests_arriving_together_share_a_forward_pass() -> None:
    sizes: list[int] = []
    predictor = Predictor(batching=True, timeout_ms=200, max_batch=8, on_batch=sizes.append)
    pixels = np.zeros((1, 64, 64, 3), np.uint8)
    model = _Zeros()  # one model: its requests share a pass
    answers = await asyncio.gather(*(predictor.predict(model, pixels) for _ in range(3)))
    await predictor.close()
    assert [a.shape for a in answers] == [(1, 2)] * 3
    assert sizes == [3]
    counts = predictor.stats.snapshot()
    assert (counts.batches, counts.images, counts.max_batch) == (1, 3, 3)


async def test_a_full_queue_refuses_before_anything_runs() -> None:
    predictor = Predictor(batching=True, timeout_ms=1000, queue_size=1, retry_after=7)
    waiting = asyncio.create_task(predictor.predict(_Zeros(), np.zeros((1, 64, 64, 3), np.uint8)))
    await asyncio.sleep(0.05)
    with pytest.raises(QueueFull) as refused:
        predictor.check_admission()
    assert refused.value.retry_after == 7 and predictor.stats.snapshot().rejected == 1
    await predictor.close()
    with pytest.raises(PredictorClosed):
        await waiting
