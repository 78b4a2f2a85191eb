"""The manifest of a sharded dataset: the one typed record of what a shard job produced.

A dataset exists exactly when its ``manifest.json`` does; it is written last, atomically,
and read only through ``Manifest`` (never by string keys). No TensorFlow here: the API
reads manifests too.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_FILE = "manifest.json"


class ClassEntry(BaseModel):
    """One class, the same shape in sources, manifests, ``/datasets`` and ``/models``."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0, description="position in the model's output")
    wnid: str = Field(description="class id (a WordNet id in Tiny ImageNet, else the folder)")
    label: str = Field(description="human-readable name")


class SkippedFile(BaseModel):
    """A source file that could not be stored, with the reason."""

    file: str
    reason: str


class ShardInfo(BaseModel):
    """One written shard file of a split."""

    file: str = Field(description="file name inside the dataset folder")
    records: int = Field(ge=0)
    bytes: int = Field(ge=0)


class SplitInfo(BaseModel):
    """One split (``train`` or ``val``) of a dataset."""

    count: int = Field(ge=0)
    per_class: dict[str, int] = Field(description="images per wnid")
    shards: list[ShardInfo]
    bytes: int = Field(ge=0)
    skipped: list[SkippedFile] = []


class Manifest(BaseModel):
    """``<dataset>/manifest.json``."""

    name: str
    source: str
    layout: str
    seed: int
    num_shards: int
    compression: str
    created_at: str
    image_size: int
    classes: list[ClassEntry]
    splits: dict[str, SplitInfo]
    count: int
    bytes: int
    skipped_total: int

    def split(self, name: str) -> SplitInfo | None:
        """The split called ``name``, or None when the dataset has none."""
        return self.splits.get(name)

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        return cls.model_validate_json(text)
