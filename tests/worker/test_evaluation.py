"""Evaluation metrics on a real tiny model and a real sharded dataset, against scikit-learn
computed from the serving path image by image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as sk

from core.manifest import load_manifest
from model.serving import LoadedModel, decode_upload, load_model
from tests.utils.datasets import make_class_folders, make_digits_tiny_imagenet
from tests.utils.models import build_model_file, train_model_file
from worker import sharding
from worker.evaluation import EvaluationError, EvaluationMetrics, evaluate

pytestmark = pytest.mark.slow

CLASSES = 6


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with the sharded dataset datasets/digits (and its source in src/)."""
    root = tmp_path_factory.mktemp("evaluation")
    source = make_digits_tiny_imagenet(
        root / "src", classes=CLASSES, train_per_class=16, val_per_class=7, seed=3
    )
    sharding.shard_dataset(source, root / "datasets" / "digits", num_shards=3, seed=0)
    return root


@pytest.fixture(scope="module")
def model(digits: Path) -> LoadedModel:
    path = train_model_file(digits / "model.keras", digits / "datasets" / "digits", epochs=4)
    return load_model("digits-model", path)


def _reference(model: LoadedModel, source: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """File names, true labels and probabilities of the val split, one image at a time
    through /predict's decoder."""
    wnids = (source / "wnids.txt").read_text().split()
    files, labels, rows = [], [], []
    for line in (source / "val" / "val_annotations.txt").read_text().splitlines():
        name, wnid = line.split("\t")[:2]
        pixels = decode_upload((source / "val" / "images" / name).read_bytes(), 10**7)
        files.append(f"val/images/{name}")
        labels.append(wnids.index(wnid))
        rows.append(model.probabilities(pixels[np.newaxis])[0])
    return files, np.array(labels), np.array(rows, np.float64)


def test_metrics_match_scikit_learn(digits: Path, model: LoadedModel) -> None:
    files, labels, probs = _reference(model, digits / "src")
    evaluation = evaluate(model, digits / "datasets" / "digits", "val", batch_size=8)
    predicted = probs.argmax(axis=1)
    every = list(range(CLASSES))

    assert evaluation.count == len(labels) == CLASSES * 7
    assert evaluation.top1 == pytest.approx(sk.accuracy_score(labels, predicted))
    assert evaluation.top5 == pytest.approx(
        sk.top_k_accuracy_score(labels, probs, k=5, labels=every)
    )
    # float32 softmax rows sum to 1 within 1e-7: more than log_loss tolerates unscaled.
    normalized = probs / probs.sum(axis=1, keepdims=True)
    assert evaluation.loss == pytest.approx(sk.log_loss(labels, normalized, labels=every), abs=1e-5)
    matrix = sk.confusion_matrix(labels, predicted, labels=every)
    assert evaluation.confusion.matrix == matrix.tolist()
    assert evaluation.confusion.wnids == [c.wnid for c in model.class_names]
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        labels, predicted, labels=every, zero_division=0
    )
    for i, entry in enumerate(evaluation.per_class):
        assert (entry.class_index, entry.wnid) == (i, model.class_names[i].wnid)
        assert entry.precision == pytest.approx(precision[i])
        assert entry.recall == pytest.approx(recall[i])
        assert entry.f1 == pytest.approx(f1[i])
        assert entry.support == support[i]
    macro = sk.precision_recall_fscore_support(
        labels, predicted, labels=every, average="macro", zero_division=0
    )
    assert (evaluation.macro.precision, evaluation.macro.recall, evaluation.macro.f1) == (
        pytest.approx(macro[0]),
        pytest.approx(macro[1]),
        pytest.approx(macro[2]),
    )
    # Micro averages are top-1 for single-label classification, as documented.
    micro = sk.precision_recall_fscore_support(labels, predicted, average="micro")
    assert micro[:3] == (pytest.approx(evaluation.top1),) * 3

    wrong = [i for i in range(len(labels)) if predicted[i] != labels[i]]
    worst = sorted(wrong, key=lambda i: probs[i, labels[i]])
    assert [w.file for w in evaluation.worst] == [files[i] for i in worst][:50]
    for entry in evaluation.worst:
        i = files.index(entry.file)
        assert entry.probability == pytest.approx(probs[i, labels[i]], abs=1e-6)
        assert entry.true == model.class_names[labels[i]].wnid != entry.predicted
    off = matrix - np.diag(np.diag(matrix))
    assert [p.count for p in evaluation.most_confused] == sorted(off[off > 0].tolist())[::-1]


def test_batches_stream_to_the_same_result(digits: Path, model: LoadedModel) -> None:
    dataset = digits / "datasets" / "digits"
    small = evaluate(model, dataset, "val", batch_size=5)
    large = evaluate(model, dataset, "val", batch_size=256)
    assert small.confusion == large.confusion
    assert small.loss == pytest.approx(large.loss, abs=1e-5)
    assert [w.file for w in small.worst] == [w.file for w in large.worst]
    train = evaluate(model, dataset, "train")
    assert train.count == CLASSES * 16


def test_worst_files_stay_bounded(digits: Path, model: LoadedModel) -> None:
    files, labels, probs = _reference(model, digits / "src")
    bounded = EvaluationMetrics(model.class_names, worst_limit=3)
    whole = EvaluationMetrics(model.class_names, worst_limit=1000)
    for start in range(0, len(labels), 4):
        part = slice(start, start + 4)
        bounded.update(probs[part], labels[part], files[part])
        assert len(bounded._worst) <= 3
    whole.update(probs, labels, files)
    bounded_result = bounded.result("m", "digits", "val")
    assert [w.file for w in bounded_result.worst] == [
        w.file for w in whole.result("m", "digits", "val").worst
    ][:3]
    assert bounded_result.confusion == whole.result("m", "digits", "val").confusion


def test_a_dataset_without_val_split_uses_the_training_hold_out(tmp_path: Path) -> None:
    source = make_class_folders(tmp_path / "src", per_class=30)
    dataset = tmp_path / "folders"
    sharding.shard_dataset(source, dataset, num_shards=2, seed=0)
    manifest = load_manifest(dataset)
    assert manifest.split("val") is None
    model = load_model("m", build_model_file(tmp_path / "m.keras", list(manifest.classes)))
    val = evaluate(model, dataset, "val")
    train = evaluate(model, dataset, "train")
    assert val.count > 0 and train.count > 0
    assert val.count + train.count == manifest.splits["train"].count
    assert not {w.file for w in val.worst} & {w.file for w in train.worst}


def test_other_classes_are_refused(digits: Path, tmp_path: Path) -> None:
    manifest = load_manifest(digits / "datasets" / "digits")
    other = [c.model_copy(update={"wnid": f"x{c.index}"}) for c in manifest.classes]
    model = load_model("other", build_model_file(tmp_path / "other.keras", other))
    with pytest.raises(EvaluationError, match="other classes than model other"):
        evaluate(model, digits / "datasets" / "digits", "val")
