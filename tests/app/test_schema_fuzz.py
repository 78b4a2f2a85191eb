"""Schemathesis against the app's own OpenAPI schema, in process (ASGI).

Every operation gets generated requests, valid and invalid ones, and every answer is
checked: never a 5xx, a documented status code, the documented content type, a body that
matches the documented schema, the API key enforced where the schema says it is needed,
invalid requests refused and valid ones accepted (or refused for a documented reason).

The app runs with an API key and a data root that holds something to answer with: a
(random-weights) model as a succeeded train job with a history, a queued and a failed
job, and a dataset manifest. Requests for those known ids are checked too (random ids
almost never hit them). Hypothesis then sends what the schema cannot describe: arbitrary
JSON bodies, NaN and infinities, lone surrogates.

`POST /jobs/*` may be accepted and published to the embedded broker under the temporary
data root; no worker runs here.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from core import layout
from core.config import Settings
from core.jobs import JobState, JobStore
from tests.app.conftest import class_names, register_model

API_KEY = "fuzz-key"
EXAMPLES = 30  # per operation; the whole module runs in well under 30 s


def _openapi() -> dict[str, Any]:
    """The schema the app serves (create_app starts nothing; its data root is thrown away)."""
    with tempfile.TemporaryDirectory() as folder:
        return create_app(Settings(data_root=Path(folder))).openapi()


CONFIG = schemathesis.Config.from_dict(
    {
        # The key goes where the schema declares it; the checks also try without it.
        "auth": {"openapi": {"ApiKey": {"api_key": API_KEY}}},
        "operations": [
            {
                # GET /events never ends by itself (an in-process client reads the body to
                # its end): tests/app/test_events.py tests it over real HTTP.
                "include-path-regex": "^/events$",
                "enabled": False,
            },
            {
                # Job event and log streams end with their job: a few examples suffice.
                "include-path-regex": "^/jobs/\\{job_id\\}/(events|logs)$",
                "generation": {"max-examples": 3},
            },
            {
                # tus: a header's schema cannot say "exactly 1.0.0" (412), "within the
                # size limit" (413), the body's content type (415) or an offset (409).
                "include-path-regex": "^/uploads",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": [
                            "2xx",
                            "400",
                            "401",
                            "404",
                            "409",
                            "412",
                            "413",
                            "415",
                            "422",
                        ]
                    }
                },
            },
            {
                # What JSON Schema cannot say: the source must exist, the dataset must have
                # been sharded, resume_from must be a train job with a checkpoint (422); a
                # model must exist (404), or any model at all for `model: null` (409).
                "include-path-regex": "^/jobs/(shard|train|evaluate|predict)$",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "401", "404", "409", "422"]
                    }
                },
            },
            {
                # Neither can "an image file" nor its pixel count (400, 413), nor a form
                # that grows over the part or byte limits while it streams in (413).
                "include-path-regex": "^/predict(/batch)?$",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["200", "400", "401", "404", "409", "413"]
                    },
                    # Multipart cannot carry every type violation: an "invalid" empty array
                    # for `model` is sent as no `model` part at all, a valid request. The
                    # form's own rules (unknown or repeated fields: 422) are tested in
                    # tests/app/test_predict.py and test_hostile_input.py.
                    "negative_data_rejection": {"enabled": False},
                },
            },
        ],
    }
)
SCHEMA = schemathesis.openapi.from_dict(_openapi(), config=CONFIG)


def _manifest(name: str) -> dict[str, Any]:
    classes = [{"index": i, "wnid": f"n{i:08d}", "label": f"class {i}"} for i in range(3)]
    split = {
        "count": 6,
        "per_class": {c["wnid"]: 2 for c in classes},
        "shards": [{"file": "train-00000-of-00001.tfrecord.gz", "records": 6, "bytes": 100}],
        "bytes": 100,
        "skipped": [{"file": "bad.jpg", "reason": "not an image"}],
    }
    return {
        "name": name,
        "source": "sources/x",
        "layout": "tiny-imagenet",
        "seed": 0,
        "num_shards": 1,
        "compression": "GZIP",
        "created_at": "2024-01-01T00:00:00+00:00",
        "image_size": 64,
        "classes": classes,
        "splits": {"train": split},
        "count": 6,
        "bytes": 100,
        "skipped_total": 1,
    }


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory, model_file: Path) -> dict[str, str]:
    """A data root with one of each thing the API reports on; returns their ids."""
    root = tmp_path_factory.mktemp("fuzz") / "data"
    root.mkdir()
    settings = Settings(data_root=root, api_key=API_KEY)
    model_id = register_model(settings, model_file)
    layout.classes_path(settings, model_id).write_text(json.dumps(class_names(3)))
    store = JobStore(settings.effective_database_url)
    try:
        history = [
            {"epoch": e, "loss": 1.0 / e, "accuracy": 0.3 * e, "val_loss": 1.2 / e} for e in (1, 2)
        ]
        store.update_job(model_id, history=history, metrics=history[-1])
        queued = store.create("shard", {"source": "sources/x", "dataset": "other"}).id
        failed = store.create("train", {"dataset": "fuzzset", "width": 8, "levels": [1]}).id
        store.finish(failed, JobState.FAILED, error="boom")
    finally:
        store.engine.dispose()
    manifest = layout.manifest_path(settings, "fuzzset")
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps(_manifest("fuzzset")))
    return {"root": str(root), "model": model_id, "queued": queued, "failed": failed}


@pytest.fixture(scope="module")
def fuzz_app(known: dict[str, str]) -> Iterator[FastAPI]:
    app = create_app(Settings(data_root=Path(known["root"]), api_key=API_KEY))
    yield app
    # schemathesis started the app's lifespan on its first request; end it here.
    schemathesis_asgi.shutdown_lifespans()


@pytest.mark.slow  # about 10 s on 2 cores, most of it the first model load
@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_as_documented(case: schemathesis.Case, fuzz_app: FastAPI) -> None:
    case.call_and_validate(app=fuzz_app)


CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _known_cases(known: dict[str, str]) -> list[tuple[str, str, dict[str, str], int]]:
    return [
        ("GET", "/jobs/{job_id}", {"job_id": known["model"]}, 200),
        ("GET", "/jobs/{job_id}", {"job_id": known["queued"]}, 200),
        ("GET", "/jobs/{job_id}/history.png", {"job_id": known["model"]}, 200),
        ("GET", "/jobs/{job_id}/history.png", {"job_id": known["failed"]}, 409),
        ("GET", "/jobs/{job_id}/history.png", {"job_id": known["queued"]}, 404),
        ("GET", "/models/{model_id}", {"model_id": known["model"]}, 200),
        ("GET", "/models/{model_id}", {"model_id": known["failed"]}, 404),
        ("GET", "/datasets/{name}", {"name": "fuzzset"}, 200),
        ("POST", "/jobs/{job_id}/cancel", {"job_id": known["failed"]}, 409),
        ("POST", "/jobs/{job_id}/cancel", {"job_id": known["queued"]}, 202),
    ]


def test_known_resources_answer_as_documented(fuzz_app: FastAPI, known: dict[str, str]) -> None:
    """The 200 (and 409) bodies of real jobs, models and datasets match the schema too."""
    for method, path, parameters, expected in _known_cases(known):
        case = SCHEMA[path][method].Case(path_parameters=parameters)
        response = case.call(app=fuzz_app, headers={"X-API-Key": API_KEY})
        assert response.status_code == expected, (method, path, response.text)
        case.validate_response(response, checks=CONFORMANCE)
    for path in ("/jobs", "/models", "/datasets"):
        case = SCHEMA[path]["GET"].Case()
        response = case.call(app=fuzz_app)
        assert response.status_code == 200, response.text
        case.validate_response(response, checks=CONFORMANCE)
        assert response.json()[path[1:]], f"{path} lists nothing: the fixture is not seen"


# JSON the schema generator never sends: any shape, NaN and infinities (Python's parser
# takes them), lone surrogates (a JSON "\ud800" escape), huge integers.
_text = st.text(st.characters(codec=None), max_size=20) | st.sampled_from(
    ["\ud800", "a\udfffb", "../..", "/etc/passwd", "..%2f", "x" * 300, "a\x00b"]
)
_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _text
)
_json = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=8,
)
_fields = {
    "/jobs/shard": ["source", "dataset", "num_shards", "compression", "seed", "overwrite"],
    "/jobs/train": ["dataset", "width", "levels", "epochs", "learning_rate", "resume_from"],
}


@pytest.mark.parametrize("path", ["/jobs/shard", "/jobs/train"])
@settings(max_examples=40, deadline=None, database=None)
@given(data=st.data())
def test_arbitrary_json_bodies_never_get_a_5xx(
    fuzz_app: FastAPI, path: str, data: st.DataObject
) -> None:
    keyed = st.fixed_dictionaries({}, optional=dict.fromkeys(_fields[path], _json))
    body = data.draw(keyed | _json, label="body")
    raw = json.dumps(body, allow_nan=True)  # NaN, Infinity; "\ud800" stays an escape
    with schemathesis_asgi.get_client(fuzz_app) as client:  # type: ignore[arg-type]
        response = client.post(
            path,
            data=raw.encode(),
            headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
        )
    case = SCHEMA[path]["POST"].Case(body=body, media_type="application/json")
    assert response.status_code < 500, (body, response.status_code, response.text)
    case.validate_response(response, checks=CONFORMANCE)
    json.loads(response.text)  # strict JSON: no NaN token, no lone surrogate
