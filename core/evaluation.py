"""The evaluation of a model on a dataset split, and the requests of evaluate and predict jobs.

One typed record per contract (``../shared/API.md``, "Evaluation" and "Batch prediction
jobs"): the worker writes an ``Evaluation`` (as a job's result and as a model's
``evaluation.json``), the API reads it back through the same class. No TensorFlow here.

Averages. Every image has exactly one true class and one predicted class (the most
probable), so the *micro* averages (pooling every image before dividing) all collapse to
one number: micro precision = micro recall = micro F1 = ``top1``, the plain accuracy. That
is why an Evaluation reports ``top1`` and the *macro* averages (the unweighted mean over
classes of each class's precision, recall and F1), which weigh a rare class as much as a
frequent one. A class never predicted has precision 0, a class with no images recall 0
(scikit-learn's ``zero_division=0``); the macro means count every class of the model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.names import NAME_PATTERN

SplitName = Literal["val", "train"]


class ClassMetrics(BaseModel):
    """One class's precision, recall and F1, and how many images of it the split holds."""

    class_index: int = Field(ge=0)
    wnid: str
    label: str
    precision: float = Field(
        description="Of the images predicted as this class, the share that are."
    )
    recall: float = Field(description="Of the images of this class, the share predicted as it.")
    f1: float = Field(description="Harmonic mean of precision and recall (0 when both are 0).")
    support: int = Field(ge=0, description="Images of this class in the split.")


class MacroAverages(BaseModel):
    """Unweighted means over the classes. The micro averages all equal ``top1``."""

    precision: float
    recall: float
    f1: float


class Confusion(BaseModel):
    """Counts of (true, predicted) pairs: ``matrix[i][j]`` images of class ``wnids[i]``
    were predicted as ``wnids[j]`` (rows: true, columns: predicted; model class order)."""

    wnids: list[str]
    matrix: list[list[int]]


class ConfusedPair(BaseModel):
    """A (true, predicted) pair of different classes and how many images it holds."""

    true: str = Field(description="wnid of the true class")
    predicted: str = Field(description="wnid of the class predicted instead")
    count: int = Field(ge=1)


class WorstFile(BaseModel):
    """A misclassified image: among them, those whose true class got the lowest probability."""

    file: str = Field(description="The image's path in its source (the shard record's filename).")
    true: str = Field(description="wnid of the true class")
    predicted: str = Field(description="wnid of the most probable class")
    probability: float = Field(description="The probability the model gave the true class.")
    predicted_probability: float = Field(description="The probability of the predicted class.")


class Evaluation(BaseModel):
    """A model's scores on one split of a dataset (``GET /models/{id}/evaluation``, and the
    result of an evaluate job)."""

    model: str = Field(description="The model id (its train job's id).")
    dataset: str
    split: str
    count: int = Field(ge=0, description="Images evaluated.")
    top1: float = Field(
        description="Share of images whose most probable class is the true one: what "
        "POST /predict ranks first. Also the micro precision, recall and F1."
    )
    top5: float = Field(description="Share whose true class is among the 5 most probable.")
    loss: float = Field(
        description="Mean cross-entropy of the probabilities (-log p(true), p clipped at "
        "1e-7); unlike training's val_loss, without the L2 penalty."
    )
    macro: MacroAverages
    per_class: list[ClassMetrics]
    confusion: Confusion
    most_confused: list[ConfusedPair] = Field(description="Largest off-diagonal counts first.")
    worst: list[WorstFile] = Field(
        description="Misclassified images, lowest probability of the true class first (bounded)."
    )


class EvaluateRequest(BaseModel):
    """POST /jobs/evaluate."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200, description="A model id or an alias.")
    dataset: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="A dataset whose classes (by wnid, in order) are the model's; default: "
        "the dataset the model was trained on.",
    )
    split: SplitName = Field(
        default="val",
        description="For a dataset without a val split, the images training held out as "
        "validation (val) or the others (train).",
    )


class BatchPredictRequest(BaseModel):
    """POST /jobs/predict."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="A model id or an alias; default: the newest model, as /predict.",
    )
    source: str = Field(
        min_length=1,
        max_length=1024,
        description="Path relative to TINYRES_DATA_ROOT: a folder of images (searched "
        "recursively, e.g. Tiny ImageNet's test/images) or a .zip, .tar or .tar.gz of them.",
    )
    top_k: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Rows per image in the CSV; more than the model's classes gives every "
        "class (as /predict does).",
    )


def class_mismatch(model_wnids: list[str], dataset_wnids: list[str]) -> str | None:
    """Why a dataset's classes are not a model's outputs (wnid for wnid, in order), or None.

    Labels in shards are indices into the dataset's classes; the model's output ``i`` is its
    class ``i``: only identical lists make the two agree.
    """
    if model_wnids == dataset_wnids:
        return None
    if len(model_wnids) != len(dataset_wnids):
        return f"the dataset has {len(dataset_wnids)} classes, the model {len(model_wnids)}"
    i = next(i for i, (a, b) in enumerate(zip(model_wnids, dataset_wnids, strict=True)) if a != b)
    if sorted(model_wnids) == sorted(dataset_wnids):
        return (
            f"the same wnids in another order (class {i} is {dataset_wnids[i]!r}, "
            f"the model's is {model_wnids[i]!r})"
        )
    return f"class {i} is {dataset_wnids[i]!r}, the model's is {model_wnids[i]!r}"
