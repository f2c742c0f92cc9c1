"""The layout `bertkpe preprocess` writes, as training, testing and featurizing read it:
`{folder}/{name}/{name}.{split}.json` (records), `{name}.{split}_candidate.json` (the
scoring references of dev and eval), and the stemmer the records were matched with."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPLITS = ("train", "dev", "eval")
STATS_NAME = "preprocess_stats.json"


@dataclass(frozen=True)
class PreprocessedData:
    folder: Path
    name: str
    dataset_class: str

    def split_file(self, split: str) -> Path:
        return Path(self.folder) / self.name / f"{self.name}.{split}.json"

    def reference_file(self, split: str) -> Path:
        return Path(self.folder) / self.name / f"{self.name}.{split}_candidate.json"

    def stemmer(self, split: str) -> str:
        """The stemmer the split's records were matched with (each record carries it)."""
        with open(self.split_file(split), encoding="utf-8") as handle:
            first = handle.readline()
        return json.loads(first).get("stemmer", "none") if first.strip() else "none"

    def stats(self) -> dict[str, Any]:
        """What `bertkpe preprocess` recorded about the corpus (empty for data written otherwise)."""
        path = Path(self.folder) / self.name / STATS_NAME
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, ValueError) as error:
            raise SystemExit(f"error: cannot read {path}: {error}") from None

    def language(self) -> str | None:
        """The corpus language preprocessing recorded (LIAAD corpora), else None: the class's own."""
        return self.stats().get("language")

    def text_kind(self) -> str | None:
        """papers, news or pages: as preprocessing recorded it (`--text_kind`), else the dataset
        class's; None where neither says."""
        from bertkpe.dataset_classes import DATASET_CLASSES

        kind = DATASET_CLASSES.get(self.dataset_class)
        return self.stats().get("text_kind") or (kind.text_kind if kind is not None else None)

    @classmethod
    def named(cls, folder: str | Path, spec: str) -> "PreprocessedData":
        """A preprocessed corpus under `folder` by `NAME` or `CLASS:NAME`: without a class, the
        one its preprocess_stats.json records, else NAME itself where it is a dataset class."""
        from bertkpe.dataset_classes import DATASET_CLASSES as dataset_classes

        dataset_class, _, name = spec.rpartition(":")
        if not name:
            raise SystemExit(f"error: {spec!r} names no corpus: give NAME or CLASS:NAME")
        if not dataset_class:
            dataset_class = cls(Path(folder), name, "").stats().get("dataset_class") or name
            if dataset_class not in dataset_classes:
                raise SystemExit(f"error: corpus {name!r}: {Path(folder) / name / STATS_NAME} does not say its "
                                 f"dataset class: preprocess it with `bertkpe preprocess --dataset_name {name}` "
                                 f"or give CLASS:{name}")
        if dataset_class not in dataset_classes:
            raise SystemExit(f"error: {spec!r}: unknown dataset class {dataset_class!r} (choose from "
                             f"{sorted(dataset_classes)}; a corpus preprocessed by bertkpe records its own)")
        return cls(Path(folder), name, dataset_class)

    def require(self, split: str) -> Path:
        """The split's file, or an error that says how to make it."""
        path = self.split_file(split)
        if not path.is_file():
            raise SystemExit(f"error: {path} not found: run `bertkpe preprocess --dataset_class "
                             f"{self.dataset_class} --output_path {self.folder}` first")
        return path
