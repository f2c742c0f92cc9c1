import json
from pathlib import Path

import pytest

from bertkpe.data.default_data import KP20K_FILES, ensure_default_data, inspec_records, write_kp20k_layout


def test_inspec_zip_rewrite_equals_the_shared_kp20k_files(datasets, tmp_path):
    write_kp20k_layout(inspec_records(datasets / "liaad" / "Inspec.zip"), tmp_path / "kp20k")
    for name in KP20K_FILES:
        ours = (tmp_path / "kp20k" / name).read_text(encoding="utf-8").splitlines()
        shared = (datasets / "kp20k" / name).read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in ours] == [json.loads(line) for line in shared]


def test_inspec_records_are_the_kp20k_lines_of_the_same_documents(fixtures, tmp_path):
    """The fixture Inspec.zip holds the first ten documents by id, the first ten KP20K training lines."""
    records = inspec_records(fixtures / "liaad" / "Inspec.zip")
    lines = (fixtures / "kp20k" / "kp20k_training.json").read_text(encoding="utf-8").splitlines()
    assert records == [json.loads(line) for line in lines[:10]]
    assert records[0]["title"] == "Waiting for the wave to crest [wavelength services]"
    assert records[0]["keyword"].split(";")[3] == "PointEast Research"
    with pytest.raises(ValueError, match="expected 2000 Inspec documents, found 10"):
        write_kp20k_layout(records, tmp_path / "kp20k")


def test_default_data_prefers_local_then_shared(fixtures, tmp_path):
    source, where = ensure_default_data(tmp_path / "dataset", fixtures)
    assert source == fixtures and "shared" in where
    local = tmp_path / "dataset" / "kp20k"
    local.mkdir(parents=True)
    for name in KP20K_FILES:
        (local / name).write_text((fixtures / "kp20k" / name).read_text(encoding="utf-8"), encoding="utf-8")
    source, where = ensure_default_data(tmp_path / "dataset", fixtures)
    assert source == tmp_path / "dataset" and "local" in where


def test_rewrite_from_an_archive_in_the_data_folder(datasets, tmp_path):
    data_dir = tmp_path / "dataset"
    data_dir.mkdir()
    (data_dir / "Inspec.zip").write_bytes((datasets / "liaad" / "Inspec.zip").read_bytes())
    source, where = ensure_default_data(data_dir, shared_datasets=Path(tmp_path / "missing"))
    assert source == data_dir and "Inspec.zip" in where
    first = json.loads((data_dir / "kp20k" / "kp20k_training.json").read_text(encoding="utf-8").splitlines()[0])
    assert first["title"] == "Waiting for the wave to crest [wavelength services]"
    assert first["keyword"].split(";")[3] == "PointEast Research"
