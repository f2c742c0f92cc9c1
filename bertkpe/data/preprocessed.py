"""The layout `bertkpe preprocess` writes, as training, testing and featurizing read it:
`{folder}/{name}/{name}.{split}.json` (records), `{name}.{split}_candidate.json` (the
scoring references of dev and eval), and the stemmer the records were matched with."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "dev", "eval")


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

    def require(self, split: str) -> Path:
        """The split's file, or an error that says how to make it."""
        path = self.split_file(split)
        if not path.is_file():
            raise SystemExit(f"error: {path} not found: run `bertkpe preprocess --dataset_class "
                             f"{self.dataset_class} --output_path {self.folder}` first")
        return path
