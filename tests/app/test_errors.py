"""app.errors: each domain exception's status, and 4xx answers that stay valid JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import Settings
from tests.app.hostile import running

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "body",
    [
        b'{"source": "sources/real", "dataset": "\\ud800"}',
        b'{"source": "\\udfff", "dataset": "d"}',
        b'{"source": "sources/real", "dataset": "d", "seed": NaN}',
        b'{"source": "sources/real", "dataset": "d", "num_shards": Infinity}',
        b'{"source": "sources/real", "dataset": "d", "num_shards": 1e999999}',
        b'{"source": "sources/real", "dataset": -Infinity}',
        b'{"source": "sources/real", "dataset": "d", "seed": 1' + b"0" * 5000 + b"}",
        b'{"source": "sources/real", "dataset": "d", "\\ud800": 1}',
        b"\xff\xfe\x00{",
    ],
)
async def test_json_that_cannot_be_echoed_back_is_still_a_clean_4xx(
    trapped_root: Path, body: bytes
) -> None:
    """FastAPI's 422 echoes the input; NaN or a lone surrogate in it made that a 500."""
    settings = Settings(data_root=trapped_root)
    async with running(settings) as (_, client):
        answer = await client.post(
            "/jobs/shard", content=body, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code in (400, 422), answer.text
    json.loads(answer.text)  # strict JSON: no NaN token, no lone surrogate
    assert "detail" in answer.json()


def test_each_domain_error_has_its_status_and_retry_after() -> None:
    from app.batching import PredictorClosed, QueueFull
    from app.broker import BrokerUnavailable
    from app.errors import STATUS_CODES, headers_of, status_code_of
    from app.model_registry import ModelNotFound, NoModelYet
    from app.multipart import BodyTooLarge, FormFieldInvalid, MalformedBody
    from core.jobs import JobNotFound
    from model.serving import BadImage, ImageTooLarge, ModelBroken

    expected = {
        MalformedBody("x"): 400,
        BadImage("x"): 400,
        JobNotFound("x"): 404,
        ModelNotFound("x"): 404,
        NoModelYet("x"): 409,
        BodyTooLarge("x"): 413,
        ImageTooLarge("x"): 413,
        FormFieldInvalid("x"): 422,
        ModelBroken("x"): 500,
        BrokerUnavailable("x"): 503,
        QueueFull(3, retry_after=2): 503,
        PredictorClosed("x"): 503,
        RuntimeError("not a domain error"): 500,
    }
    assert {type(e).__name__: status_code_of(e) for e in expected} == {
        type(e).__name__: code for e, code in expected.items()
    }
    assert all(not issubclass(kind, (KeyError,)) or kind is JobNotFound for kind in STATUS_CODES)
    assert headers_of(QueueFull(3, retry_after=2)) == {"Retry-After": "2"}
    assert headers_of(BrokerUnavailable("x")) == {"Retry-After": "5"}
    assert headers_of(ModelNotFound("x")) is None
