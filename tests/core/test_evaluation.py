"""The evaluation contract and the requests of evaluate and predict jobs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.evaluation import BatchPredictRequest, EvaluateRequest, Evaluation, class_mismatch

EVALUATION = {
    "model": "m1",
    "dataset": "digits",
    "split": "val",
    "count": 4,
    "top1": 0.5,
    "top5": 1.0,
    "loss": 0.7,
    "macro": {"precision": 0.25, "recall": 0.5, "f1": 0.33},
    "per_class": [
        {"class_index": 0, "wnid": "a", "label": "A", "precision": 0.5, "recall": 1.0,
         "f1": 0.67, "support": 2},
        {"class_index": 1, "wnid": "b", "label": "B", "precision": 0.0, "recall": 0.0,
         "f1": 0.0, "support": 2},
    ],
    "confusion": {"wnids": ["a", "b"], "matrix": [[2, 0], [2, 0]]},
    "most_confused": [{"true": "b", "predicted": "a", "count": 2}],
    "worst": [
        {"file": "val/1.jpg", "true": "b", "predicted": "a", "probability": 0.1,
         "predicted_probability": 0.9}
    ],
}  # fmt: skip


def test_evaluation_round_trips_as_the_contract_names_it() -> None:
    evaluation = Evaluation.model_validate(EVALUATION)
    assert Evaluation.model_validate_json(evaluation.model_dump_json()) == evaluation
    dumped = evaluation.model_dump()
    assert set(dumped) == {
        "model", "dataset", "split", "count", "top1", "top5", "loss", "macro",
        "per_class", "confusion", "most_confused", "worst",
    }  # fmt: skip
    assert set(dumped["per_class"][0]) == {
        "class_index", "wnid", "label", "precision", "recall", "f1", "support"
    }  # fmt: skip
    assert set(dumped["most_confused"][0]) == {"true", "predicted", "count"}
    assert {"file", "true", "predicted", "probability"} <= set(dumped["worst"][0])


def test_micro_averages_are_documented_as_top1() -> None:
    import core.evaluation

    assert "micro precision = micro recall = micro F1 = ``top1``" in (core.evaluation.__doc__ or "")
    assert "micro" in (Evaluation.model_fields["top1"].description or "")


def test_evaluate_request_defaults_and_refusals() -> None:
    request = EvaluateRequest(model="digits-best")
    assert (request.dataset, request.split) == (None, "val")
    for body in (
        {},  # the model is required
        {"model": ""},
        {"model": "m", "split": "test"},
        {"model": "m", "dataset": "../etc"},
        {"model": "m", "extra": 1},
    ):
        with pytest.raises(ValidationError):
            EvaluateRequest.model_validate(body)


def test_batch_predict_request_defaults_and_refusals() -> None:
    request = BatchPredictRequest(source="sources/test/images")
    assert (request.model, request.top_k) == (None, 5)
    for body in (
        {"source": ""},
        {"source": "x", "top_k": 0},
        {"source": "x", "top_k": 1001},
        {"source": "x", "colour": "red"},
        {},
    ):
        with pytest.raises(ValidationError):
            BatchPredictRequest.model_validate(body)


def test_class_mismatch_says_what_differs() -> None:
    assert class_mismatch(["a", "b"], ["a", "b"]) is None
    assert "3 classes, the model 2" in (class_mismatch(["a", "b"], ["a", "b", "c"]) or "")
    assert "another order" in (class_mismatch(["a", "b"], ["b", "a"]) or "")
    assert "class 1 is 'c'" in (class_mismatch(["a", "b"], ["a", "c"]) or "")
