"""Every gold keyphrase a reader meets is counted in preprocess_stats.json: kept as a reference,
merged into an earlier duplicate, or dropped for one named reason; OpenKP records carry no VDOM."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertkpe.cli import run_command

SPLITS = ("train", "dev", "eval")
NO_DROPS = {"empty": 0, "odd_punctuation": 0, "too_many_tokens": 0, "stray_punctuation": 0,
            "classification_code": 0}


def preprocess(*argv: str | Path) -> dict[str, dict]:
    assert run_command("preprocess", [str(a) for a in argv]) == 0
    output, name = Path(argv[argv.index("--output_path") + 1]), argv[argv.index("--dataset_class") + 1]
    return json.loads((output / name / "preprocess_stats.json").read_text())["splits"]


def write_lines(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def reference_keyphrases(path: Path) -> int:
    return sum(len(json.loads(line)["KeyPhrases"]) for line in path.read_text(encoding="utf-8").splitlines())


def assert_each_gold_keyphrase_counted_once(split: dict) -> None:
    gold = split["gold_keyphrases"]
    kept = split["keyphrases_present"] + split["keyphrases_absent"]
    assert gold["read"] == kept + gold["duplicates_merged"] + sum(gold["dropped"].values())


def kp20k_document(title: str, abstract: str, keywords: list[str]) -> dict:
    return {"title": title, "abstract": abstract, "keyword": ";".join(keywords)}


def test_kp20k_cleaning_is_counted(tmp_path):
    text = "Support vector machines and image coding for data mining. " * 4
    write_lines(tmp_path / "kp20k" / "kp20k_training.json", [
        kp20k_document("Data mining", text, ["data mining", "75v05"])])
    write_lines(tmp_path / "kp20k" / "kp20k_validation.json", [
        kp20k_document("Support vector machines", text, [
            "Support Vector Machines (SVM)",  # kept, bracket removed
            "image coding",  # kept
            "IMAGE  coding",  # duplicate
            "image coding (IC)",  # duplicate once its bracket goes: not counted as altered
            "x, y",  # odd punctuation
            "a b c d e f g",  # 7 tokens
            "b6150",  # classification code
            "events detection. fuzzy",  # stray punctuation
            "(SVM)",  # empty once the bracket goes
            "",  # empty field
            "learning (artificial intelligence)",  # kept, bracket removed
            "learning",  # duplicate
        ]),
        kp20k_document("Data mining", text, ["data mining", "Data Mining"]),
    ])
    write_lines(tmp_path / "kp20k" / "kp20k_testing.json", [kp20k_document("Data mining", text, ["productivity"])])

    stats = preprocess("--dataset_class", "kp20k", "--source_dataset_dir", tmp_path, "--output_path", tmp_path / "o")

    assert stats["train"]["gold_keyphrases"] == {
        "read": 2, "duplicates_merged": 0, "dropped": {**NO_DROPS, "classification_code": 1},
        "altered_by_bracket_removal": 0}
    assert stats["dev"]["gold_keyphrases"] == {
        "read": 14, "duplicates_merged": 4,
        "dropped": {"empty": 2, "odd_punctuation": 1, "too_many_tokens": 1, "stray_punctuation": 1,
                    "classification_code": 1},
        "altered_by_bracket_removal": 2}
    assert stats["eval"]["gold_keyphrases"] == {
        "read": 1, "duplicates_merged": 0, "dropped": NO_DROPS, "altered_by_bracket_removal": 0}
    assert [stats[s]["reference_keyphrases_written"] for s in SPLITS] == [0, 4, 1]
    for split in ("dev", "eval"):
        written = reference_keyphrases(tmp_path / "o" / "kp20k" / f"kp20k.{split}_candidate.json")
        assert written == stats[split]["reference_keyphrases_written"]
    for split in SPLITS:
        assert_each_gold_keyphrase_counted_once(stats[split])


def test_openkp_counts_and_no_vdom_in_records(tmp_path):
    vdom = json.dumps([{"Id": 0, "text": "Video Robots", "feature": [16.0] * 20, "start_idx": 0, "end_idx": 2}])
    write_lines(tmp_path / "OpenKPTrain.jsonl", [
        {"url": "t1", "text": "Video Robots help", "VDOM": vdom, "KeyPhrases": [["Robots"], ["robots"]]}])
    write_lines(tmp_path / "OpenKPDev.jsonl", [
        {"url": "d1", "text": "Video Robots to aid in disasters", "VDOM": vdom,
         "KeyPhrases": [["Robots"], [], ["robots"], ["Video", "Robots"], [" "], ["video  robots"], ["drones"]]}])
    write_lines(tmp_path / "OpenKPEvalPublic.jsonl", [{"url": "e1", "text": "Video Robots", "VDOM": vdom}])

    stats = preprocess("--dataset_class", "openkp", "--source_dataset_dir", tmp_path, "--output_path", tmp_path / "o")

    assert stats["train"]["gold_keyphrases"] == {
        "read": 2, "duplicates_merged": 1, "dropped": NO_DROPS, "altered_by_bracket_removal": 0}
    assert stats["dev"]["gold_keyphrases"] == {
        "read": 7, "duplicates_merged": 2, "dropped": {**NO_DROPS, "empty": 2}, "altered_by_bracket_removal": 0}
    assert stats["eval"]["gold_keyphrases"] == {
        "read": 0, "duplicates_merged": 0, "dropped": NO_DROPS, "altered_by_bracket_removal": 0}
    assert [stats[s]["reference_keyphrases_written"] for s in SPLITS] == [0, 3, 0]
    assert reference_keyphrases(tmp_path / "o" / "openkp" / "openkp.dev_candidate.json") == 3
    for split in SPLITS:
        assert_each_gold_keyphrase_counted_once(stats[split])
        records = [json.loads(line) for line in
                   (tmp_path / "o" / "openkp" / f"openkp.{split}.json").read_text(encoding="utf-8").splitlines()]
        assert len(records) == 1 and "VDOM" not in records[0]


def test_liaad_counts(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "docsutf8").mkdir(parents=True)
    (corpus / "keys").mkdir()
    (corpus / "lan.txt").write_text("en\n", encoding="utf-8")
    keys = {
        "1": "Neural networks\n\nneural network\n   \nLearning\nlearning\n",  # 2 blank, 2 duplicates
        "2": "deep learning\nDeep Learning\n",
        "3": "neural networks\n",
    }
    for doc_id, lines in keys.items():
        (corpus / "docsutf8" / f"{doc_id}.txt").write_text("Learning neural networks with deep learning.",
                                                           encoding="utf-8")
        (corpus / "keys" / f"{doc_id}.key").write_text(lines, encoding="utf-8")
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": ["3"], "dev": ["1"], "eval": ["2"]}), encoding="utf-8")

    stats = preprocess("--dataset_class", "multidata", "--source_dataset_dir", corpus, "--output_path",
                       tmp_path / "o", "--split_file", split_file)

    assert [stats[s]["gold_keyphrases"] for s in SPLITS] == [
        {"read": 1, "duplicates_merged": 0, "dropped": NO_DROPS, "altered_by_bracket_removal": 0},
        {"read": 6, "duplicates_merged": 2, "dropped": {**NO_DROPS, "empty": 2}, "altered_by_bracket_removal": 0},
        {"read": 2, "duplicates_merged": 1, "dropped": NO_DROPS, "altered_by_bracket_removal": 0}]
    assert [stats[s]["reference_keyphrases_written"] for s in SPLITS] == [0, 2, 1]
    for split in SPLITS:
        assert_each_gold_keyphrase_counted_once(stats[split])


@pytest.mark.parametrize("dataset_class", ["kp20k", "openkp"])
def test_shared_corpora_account_for_every_gold_keyphrase(tmp_path, datasets, dataset_class):
    stats = preprocess("--dataset_class", dataset_class, "--source_dataset_dir", datasets,
                       "--output_path", tmp_path)
    for split in SPLITS:
        assert_each_gold_keyphrase_counted_once(stats[split])
    assert stats["dev"]["reference_keyphrases_written"] == (
        stats["dev"]["keyphrases_present"] + stats["dev"]["keyphrases_absent"])
