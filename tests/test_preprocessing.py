"""`bertkpe preprocess` end to end: real corpora, output format, counts, bad input, atomic writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bertkpe.cli import run_command
from bertkpe.data.matching import normalize_words

ROOT = Path(__file__).resolve().parents[1]
RECORD_KEYS = {"url", "doc_words", "keyphrases", "start_end_pos", "absent_keyphrases", "stemmer"}
LIAAD_SIZES = {"110-PT-BN-KP": 110, "500N-KPCrowd-v1.1": 500, "Inspec": 2000, "SemEval2010": 243,
               "SemEval2017": 493, "WikiNews": 100, "kdd": 755, "pak2018": 50}
LIAAD_FIXTURE_SIZES = {"110-PT-BN-KP": 10, "Inspec": 10, "WikiNews": 10, "pak2018": 10}
LIAAD_RUNS = [("fixtures", name, size) for name, size in sorted(LIAAD_FIXTURE_SIZES.items())] + \
             [("datasets", name, size) for name, size in sorted(LIAAD_SIZES.items())]


def preprocess(*argv: str | Path) -> int:
    return run_command("preprocess", [str(a) for a in argv])


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def check_records(records: list[dict]) -> None:
    """Every span holds its keyphrase (after normalisation) and every keyphrase is listed once."""
    for record in records:
        words = normalize_words(record["doc_words"], record["stemmer"])
        assert len(record["keyphrases"]) == len(record["start_end_pos"])
        for phrase, spans in zip(record["keyphrases"], record["start_end_pos"]):
            assert spans, phrase
            target = normalize_words(phrase, record["stemmer"])
            assert all(words[start:end + 1] == target for start, end in spans)
            assert all(end - start + 1 == len(phrase) for start, end in spans)


# Statistics of `bertkpe preprocess` over the in-repo fixtures and over the full shared corpora.
# The KP20K training fixture ends with one document too short, one too long and one
# without a present keyphrase (see tests/fixtures/README.md).
KP20K_TRAIN_STATS = {
    "fixtures": {"documents_read": 27, "documents_kept": 24, "dropped_too_short": 1, "dropped_too_long": 1,
                 "dropped_no_present_keyphrase": 1, "bad_lines_skipped": 0, "keyphrases_present": 176,
                 "keyphrases_absent": 97, "keyphrases_longer_than_max": 1,
                 "gold_keyphrases": {"read": 293, "duplicates_merged": 20, "altered_by_bracket_removal": 0,
                                     "dropped": {"empty": 0, "odd_punctuation": 0, "too_many_tokens": 0,
                                                 "stray_punctuation": 0, "classification_code": 0}},
                 "reference_keyphrases_written": 0},
    "datasets": {"documents_read": 1000, "documents_kept": 972, "dropped_too_short": 2, "dropped_too_long": 23,
                 "dropped_no_present_keyphrase": 3, "bad_lines_skipped": 0, "keyphrases_present": 8283,
                 "keyphrases_absent": 5346, "keyphrases_longer_than_max": 49,
                 "gold_keyphrases": {"read": 14150, "duplicates_merged": 459, "altered_by_bracket_removal": 52,
                                     "dropped": {"empty": 0, "odd_punctuation": 2, "too_many_tokens": 51,
                                                 "stray_punctuation": 9, "classification_code": 0}},
                 "reference_keyphrases_written": 0},
}
KP20K_TEST_SIZES = {"fixtures": {"dev": 12, "eval": 24}, "datasets": {"dev": 500, "eval": 500}}
OPENKP_SIZES = {"fixtures": [24, 12, 12], "datasets": [350, 75, 75]}
OPENKP_DEV_KEYPHRASES = {"fixtures": (449, 264), "datasets": (3717, 654)}  # present, absent


@pytest.fixture(scope="module", params=["fixtures", "datasets"])
def out(request, tmp_path_factory) -> tuple[str, Path, Path]:
    """(corpora, their folder, the preprocessed folder): kp20k and openkp over each."""
    source = request.getfixturevalue(request.param)
    path = tmp_path_factory.mktemp("prepro")
    assert preprocess("--dataset_class", "kp20k", "--source_dataset_dir", source, "--output_path", path) == 0
    assert preprocess("--dataset_class", "openkp", "--source_dataset_dir", source / "openkp",
                      "--output_path", path) == 0
    return request.param, source, path


def test_kp20k_full_run(out):
    corpora, _, path = out
    folder = path / "kp20k"
    assert sorted(p.name for p in folder.iterdir()) == [
        "kp20k.dev.json", "kp20k.dev_candidate.json", "kp20k.eval.json", "kp20k.eval_candidate.json",
        "kp20k.train.json", "preprocess_stats.json"]
    stats = json.loads((folder / "preprocess_stats.json").read_text())["splits"]
    assert stats["train"] == KP20K_TRAIN_STATS[corpora]
    for split, size in KP20K_TEST_SIZES[corpora].items():
        assert stats[split]["documents_read"] == stats[split]["documents_kept"] == size
        records = read_lines(folder / f"kp20k.{split}.json")
        references = read_lines(folder / f"kp20k.{split}_candidate.json")
        assert [r["url"] for r in records] == [r["url"] for r in references] == [str(i) for i in range(size)]
        check_records(records)
        for record, reference in zip(records, references):
            gold = reference["KeyPhrases"]
            assert sorted(map(tuple, gold)) == sorted(map(tuple, record["keyphrases"] + record["absent_keyphrases"]))
    first = read_lines(folder / "kp20k.eval.json")[0]
    assert set(first) == RECORD_KEYS and first["stemmer"] == "porter"
    assert first["keyphrases"] == [["data", "mining"], ["productivity"], ["efficiency"]]
    assert first["start_end_pos"] == [[[0, 1], [27, 28], [55, 56]], [[5, 5]], [[7, 7]]]
    assert read_lines(folder / "kp20k.eval_candidate.json")[0] == {
        "url": "0", "KeyPhrases": [["data", "mining"], ["productivity"], ["efficiency"]]}
    train = read_lines(folder / "kp20k.train.json")
    assert len(train) == KP20K_TRAIN_STATS[corpora]["documents_kept"]
    assert all(r["keyphrases"] and 20 <= len(r["doc_words"]) <= 300 for r in train)
    check_records(train)


def test_openkp_full_run(out):
    corpora, source_folder, path = out
    folder = path / "openkp"
    assert not (folder / "openkp.eval_candidate.json").exists()  # EvalPublic has no gold
    assert (folder / "openkp.dev_candidate.json").exists()
    stats = json.loads((folder / "preprocess_stats.json").read_text())["splits"]
    assert [stats[s]["documents_kept"] for s in ("train", "dev", "eval")] == OPENKP_SIZES[corpora]
    assert (stats["dev"]["keyphrases_present"], stats["dev"]["keyphrases_absent"]) == OPENKP_DEV_KEYPHRASES[corpora]
    dev = read_lines(folder / "openkp.dev.json")
    check_records(dev)
    source = [json.loads(line) for line in (source_folder / "openkp" / "OpenKPDev.jsonl").open(encoding="utf-8")]
    assert [r["url"] for r in dev] == [s["url"] for s in source]
    assert all(set(r) == RECORD_KEYS for r in dev)  # the VDOM is read, checked, and not copied
    record = next(r for r in dev if r["url"] == "kpcrowd://science-20933265")
    spans = dict(zip(map(" ".join, record["keyphrases"]), record["start_end_pos"]))
    assert spans["Comment"] == [[67, 67], [76, 76]] and spans["robots"] == [[1, 1], [33, 33], [58, 58]]
    evaluation = read_lines(folder / "openkp.eval.json")
    assert len(evaluation) == OPENKP_SIZES[corpora][2]
    assert all(r["keyphrases"] == r["start_end_pos"] == r["absent_keyphrases"] == [] for r in evaluation)


@pytest.mark.parametrize("corpora, name, total", LIAAD_RUNS)
def test_every_liaad_zip(tmp_path, request, corpora, name, total):
    archive = request.getfixturevalue(corpora) / "liaad" / f"{name}.zip"
    assert preprocess("--dataset_class", "multidata", "--source_dataset_dir", archive, "--output_path", tmp_path) == 0
    folder = tmp_path / "multidata"
    stats = json.loads((folder / "preprocess_stats.json").read_text())
    split = json.loads((folder / "split.json").read_text())
    assert [len(split[s]) for s in ("train", "dev", "eval")] == [s["documents_read"] for s in stats["splits"].values()]
    assert sum(len(split[s]) for s in ("train", "dev", "eval")) == total
    assert len(split["train"]) == round(total * 0.7) and split["seed"] == 42
    assert stats["splits"]["dev"]["documents_kept"] == len(split["dev"])
    assert stats["splits"]["eval"]["documents_kept"] == len(split["eval"])
    assert stats["splits"]["train"]["documents_kept"] > 0
    for s in ("dev", "eval"):
        records = read_lines(folder / f"multidata.{s}.json")
        assert [r["url"] for r in records] == split[s]
        assert [r["url"] for r in read_lines(folder / f"multidata.{s}_candidate.json")] == split[s]
        check_records(records)
        assert all(r["stemmer"] == stats["stemmer"] for r in records)


@pytest.mark.parametrize("corpora, sizes", [("fixtures", [7, 2, 1]), ("datasets", [70, 15, 15])])
def test_multidata_split_is_seeded_and_reusable(tmp_path, request, corpora, sizes):
    wikinews = request.getfixturevalue(corpora) / "liaad" / "WikiNews.zip"
    base = ["--dataset_class", "multidata", "--source_dataset_dir", wikinews, "--dataset_name", "wikinews"]
    assert preprocess(*base, "--output_path", tmp_path / "a") == 0
    assert preprocess(*base, "--output_path", tmp_path / "b", "--split_seed", "7") == 0
    assert preprocess(*base, "--output_path", tmp_path / "c", "--split_seed", "7",
                      "--split_file", tmp_path / "a" / "wikinews" / "split.json") == 0
    a, b, c = (tmp_path / x / "wikinews" for x in "abc")
    assert json.loads((a / "split.json").read_text())["train"] != json.loads((b / "split.json").read_text())["train"]
    for file in ("split.json", "wikinews.train.json", "wikinews.dev.json", "wikinews.eval_candidate.json"):
        assert (a / file).read_bytes() == (c / file).read_bytes()
    stats = json.loads((a / "preprocess_stats.json").read_text())
    assert (stats["language"], stats["stemmer"]) == ("fr", "french")
    assert [len(json.loads((a / "split.json").read_text())[s]) for s in ("train", "dev", "eval")] == sizes


@pytest.mark.parametrize("corpora, sizes", [("fixtures", [5, 5, 0]), ("datasets", [25, 25, 0])])
def test_multidata_language_override_and_ratio(tmp_path, request, corpora, sizes):
    pak2018 = request.getfixturevalue(corpora) / "liaad" / "pak2018.zip"
    assert preprocess("--dataset_class", "multidata", "--source_dataset_dir", pak2018,
                      "--output_path", tmp_path, "--language", "en", "--split_ratio", "1", "1", "0") == 0
    stats = json.loads((tmp_path / "multidata" / "preprocess_stats.json").read_text())
    assert (stats["language"], stats["stemmer"]) == ("en", "porter")
    assert [stats["splits"][s]["documents_read"] for s in ("train", "dev", "eval")] == sizes


def test_bad_split_file(tmp_path, fixtures, capsys):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["nope"], "dev": [], "eval": []}))
    assert preprocess("--dataset_class", "multidata", "--source_dataset_dir", fixtures / "liaad" / "WikiNews.zip",
                      "--output_path", tmp_path, "--split_file", split) == 2
    assert "names documents not in the corpus: ['nope']" in capsys.readouterr().err


# ----------------------------------------------------------------------------- bad input, atomic writes

GOOD = '{"url": "u%d", "text": "alpha beta gamma", "KeyPhrases": [["beta"], ["delta"]]}\n'


def openkp_source(folder: Path, dev_lines: list[bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "OpenKPTrain.jsonl").write_text(GOOD % 1 + GOOD % 2, encoding="utf-8")
    (folder / "OpenKPDev.jsonl").write_bytes(b"".join(dev_lines))
    (folder / "OpenKPEvalPublic.jsonl").write_text('{"url": "e1", "text": "x y"}\n', encoding="utf-8")
    return folder


BAD_LINES = {
    "not valid JSON": b'{"url": "u9", "text": \n',
    "missing field 'text'": b'{"url": "u9", "KeyPhrases": []}\n',
    "field 'KeyPhrases' must be a list of lists of strings": b'{"url": "u9", "text": "a", "KeyPhrases": [[1]]}\n',
    "field 'text' must be str": b'{"url": "u9", "text": 5, "KeyPhrases": []}\n',
    "not valid UTF-8": b'{"url": "u9", "text": "\xff", "KeyPhrases": []}\n',
}


@pytest.mark.parametrize("reason", sorted(BAD_LINES))
def test_bad_line_stops_run_and_keeps_previous_outputs(tmp_path, capsys, reason):
    good_src = openkp_source(tmp_path / "good", [(GOOD % 3).encode()])
    assert preprocess("--dataset_class", "openkp", "--source_dataset_dir", good_src, "--output_path", tmp_path) == 0
    folder = tmp_path / "openkp"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    capsys.readouterr()

    bad_src = openkp_source(tmp_path / "bad", [(GOOD % 3).encode(), (GOOD % 4).encode(), BAD_LINES[reason]])
    assert preprocess("--dataset_class", "openkp", "--source_dataset_dir", bad_src, "--output_path", tmp_path) == 2
    err = capsys.readouterr().err
    assert err == f"error: {bad_src / 'OpenKPDev.jsonl'}:3: {reason}" + err.split(reason, 1)[1]
    assert "Traceback" not in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # untouched, no temp files left

    assert preprocess("--dataset_class", "openkp", "--source_dataset_dir", bad_src, "--output_path", tmp_path,
                      "--skip_bad_lines") == 0
    stats = json.loads((folder / "preprocess_stats.json").read_text())["splits"]["dev"]
    assert (stats["documents_read"], stats["bad_lines_skipped"]) == (2, 1)
    assert [r["url"] for r in read_lines(folder / "openkp.dev.json")] == ["u3", "u4"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(before)


def test_kp20k_skip_bad_lines_counts_per_split(tmp_path):
    src = tmp_path / "kp20k"
    src.mkdir()
    good = json.dumps({"title": "Neural networks", "abstract": "We train neural networks. " * 5,
                       "keyword": "neural network;deep learning"}) + "\n"
    (src / "kp20k_training.json").write_text(good + "{oops\n" + good + '{"title": "x"}\n', encoding="utf-8")
    (src / "kp20k_validation.json").write_text(good, encoding="utf-8")
    (src / "kp20k_testing.json").write_bytes(good.encode() + b"\x80\n")
    assert preprocess("--dataset_class", "kp20k", "--source_dataset_dir", tmp_path, "--output_path", tmp_path / "o",
                      "--skip_bad_lines") == 0
    stats = json.loads((tmp_path / "o" / "kp20k" / "preprocess_stats.json").read_text())["splits"]
    assert [stats[s]["bad_lines_skipped"] for s in ("train", "dev", "eval")] == [2, 0, 1]
    assert [r["url"] for r in read_lines(tmp_path / "o" / "kp20k" / "kp20k.train.json")] == ["0", "2"]
    record = read_lines(tmp_path / "o" / "kp20k" / "kp20k.eval.json")[0]
    assert record["keyphrases"] == [["neural", "network"]] and record["absent_keyphrases"] == [["deep", "learning"]]
    assert record["start_end_pos"][0][:2] == [[0, 1], [5, 6]]  # "Neural networks . We train neural networks"


def test_missing_source_file_names_expected_path(tmp_path, capsys):
    (tmp_path / "kp20k").mkdir()
    (tmp_path / "kp20k" / "kp20k_training.json").write_text("")
    assert preprocess("--dataset_class", "kp20k", "--source_dataset_dir", tmp_path, "--output_path", tmp_path) == 2
    assert capsys.readouterr().err == f"error: source file not found: expected {tmp_path / 'kp20k' / 'kp20k_validation.json'}\n"
    assert preprocess("--dataset_class", "multidata", "--source_dataset_dir", tmp_path / "none",
                      "--output_path", tmp_path) == 2
    assert str(tmp_path / "none" / "docsutf8") in capsys.readouterr().err


def test_liaad_undecodable_file_in_zip(tmp_path, capsys):
    archive = tmp_path / "c.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(10):
            z.writestr(f"C/docsutf8/{i}.txt", b"caf\xe9" if i == 3 else b"hello world")
            z.writestr(f"C/keys/{i}.key", "world")
    args = ["--dataset_class", "multidata", "--source_dataset_dir", archive, "--output_path", tmp_path]
    assert preprocess(*args) == 2
    assert capsys.readouterr().err.startswith(f"error: {archive}/C:docsutf8/3.txt: not valid UTF-8")
    assert preprocess(*args, "--skip_bad_lines") == 0
    stats = json.loads((tmp_path / "multidata" / "preprocess_stats.json").read_text())["splits"]
    assert sum(s["bad_lines_skipped"] for s in stats.values()) == 1
    assert sum(s["documents_read"] for s in stats.values()) == 9


def test_script_is_a_thin_entry_point(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, str(ROOT / "preprocess" / "preprocess.py"), "--dataset_class", "openkp",
                             "--source_dataset_dir", str(tmp_path), "--output_path", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: source file not found: expected {tmp_path / 'OpenKPTrain.jsonl'}"
