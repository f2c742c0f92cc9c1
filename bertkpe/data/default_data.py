"""The default data set: Inspec in the KP20K layout.

Taken from `data/dataset/kp20k/` if there, else from a shared datasets folder, else
rewritten from the published LIAAD `Inspec.zip` by the rule the shared copy follows:
documents sorted by numeric id, the first 1000 for training, the next 500 for
validation, the last 500 for testing; title = the first line, abstract = the rest,
whitespace collapsed; keyword = the non-empty key lines joined by ";".
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import urllib.request
import zipfile
from pathlib import Path

from bertkpe.dataset_classes import DATASET_CLASSES
from bertkpe.files import replaced

logger = logging.getLogger("bertkpe")

LIAAD_URL = "https://github.com/LIAAD/KeywordExtractor-Datasets/raw/master/datasets/{name}.zip"
INSPEC_URL = LIAAD_URL.format(name="Inspec")
KP20K_FILES = tuple(DATASET_CLASSES["kp20k"].source_files[split] for split in ("train", "dev", "eval"))
SPLIT_SIZES = (1000, 500, 500)


def collapse(text: str) -> str:
    return " ".join(text.split())


def inspec_records(zip_path: str | os.PathLike) -> list[dict[str, str]]:
    """KP20K-layout records of a LIAAD Inspec archive, in ascending numeric file id."""
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        docs = {Path(name).stem: name for name in names if "/docsutf8/" in f"/{name}" and name.endswith(".txt")}
        keys = {Path(name).stem: name for name in names if "/keys/" in f"/{name}" and name.endswith(".key")}
        records = []
        for doc_id in sorted(docs, key=int):
            lines = archive.read(docs[doc_id]).decode("utf-8").split("\n")
            key_lines = archive.read(keys[doc_id]).decode("utf-8").split("\n") if doc_id in keys else []
            records.append({"title": collapse(lines[0]), "abstract": collapse(" ".join(lines[1:])),
                            "keyword": ";".join(collapse(line) for line in key_lines if line.strip())})
    return records


def write_kp20k_layout(records: list[dict[str, str]], out_dir: Path) -> None:
    if len(records) != sum(SPLIT_SIZES):
        raise ValueError(f"expected {sum(SPLIT_SIZES)} Inspec documents, found {len(records)}")
    start = 0
    for name, size in zip(KP20K_FILES, SPLIT_SIZES):
        with replaced(out_dir / name) as out:
            for record in records[start:start + size]:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        start += size


def ensure_default_data(data_dir: Path, shared_datasets: Path | None) -> tuple[Path, str]:
    """A folder holding `kp20k/kp20k_*.json`, and a sentence saying where it came from."""
    local = data_dir / "kp20k"
    if all((local / name).is_file() for name in KP20K_FILES):
        return data_dir, f"local copy in {local}"
    if shared_datasets is not None and all((shared_datasets / "kp20k" / name).is_file() for name in KP20K_FILES):
        return shared_datasets, f"shared datasets folder {shared_datasets / 'kp20k'}"
    archive, _ = download_liaad("Inspec", data_dir)
    write_kp20k_layout(inspec_records(archive), local)
    return data_dir, f"LIAAD Inspec.zip ({INSPEC_URL}) rewritten into {local}"


def download_liaad(name: str, data_dir: Path) -> tuple[Path, str]:
    """`data_dir/NAME.zip`, downloaded from the LIAAD repository unless already there."""
    archive = data_dir / f"{name}.zip"
    url = LIAAD_URL.format(name=name)
    if not archive.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        logger.info("downloading %s", url)
        with urllib.request.urlopen(url, timeout=120) as response, replaced(archive, "wb") as out:
            shutil.copyfileobj(response, out)
    return archive, url


def ensure_liaad_corpus(name: str, data_dir: Path, shared_datasets: Path | None) -> tuple[Path, str]:
    """A published LIAAD archive NAME.zip (local copy, shared datasets folder, or downloaded),
    and a sentence saying where it came from."""
    for folder in (data_dir, shared_datasets / "liaad" if shared_datasets is not None else None):
        if folder is not None and (folder / f"{name}.zip").is_file():
            return folder / f"{name}.zip", f"{folder / name}.zip"
    archive, url = download_liaad(name, data_dir)
    return archive, f"{url}, downloaded to {archive}"
