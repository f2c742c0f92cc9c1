"""The dataset-class registry is the one description of a dataset class, and every stage
reads it: a LIAAD corpus's language reaches scoring."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bertkpe.cli import run_command
from bertkpe.dataset_classes import DATASET_CLASSES, dataset_class, get_word_splitter
from bertkpe.metrics import score
from helpers import ROOT, train_argv


def test_each_class_says_how_it_splits_matches_scores_and_trains():
    openkp, kp20k, multidata = (dataset_class(name) for name in ("openkp", "kp20k", "multidata"))
    assert (openkp.protocol, openkp.best_metric, openkp.reference_train_steps) == ("openkp", "F1@3", 20810)
    assert (kp20k.protocol, kp20k.best_metric, kp20k.reference_train_steps) == ("kp20k", "F1@5", 73430)
    assert (multidata.protocol, multidata.best_metric, multidata.reference_train_steps) == ("kp20k", "F1@5", None)
    assert [openkp.stemmer_for("fr"), kp20k.stemmer_for("fr"), multidata.stemmer_for("fr")] == \
        ["none", "porter", "french"]
    assert multidata.stemmer_for("pl-PL") == "polish" and multidata.stemmer_for("en-US") == "porter"
    assert openkp.split_words("Don't  stop-me now.") == ["Don't", "stop-me", "now."]
    assert kp20k.split_words("Don't stop-me now.") == ["Don't", "stop", "me", "now", "."]
    assert multidata.split_words("L’ISS, à Timor-Leste.") == ["L", "’", "ISS", ",", "à", "Timor-Leste", "."]
    assert get_word_splitter("multidata") is get_word_splitter("liaad")
    with pytest.raises(ValueError, match="unknown dataset class 'nus'"):
        dataset_class("nus")


def test_scoring_follows_the_stemmer_the_data_was_matched_with():
    assert dataset_class("openkp").scoring("none").stemmer is None
    assert dataset_class("kp20k").scoring("porter").stemmer == "porter"
    french = dataset_class("multidata").scoring("french")
    assert (french.protocol, french.stemmer, french.references) == ("kp20k", "french", "all")
    # "journaux" is the plural of "journal": one French stem, two Porter stems
    predictions, references = {"d": [["journaux"]]}, {"d": [["journal"]]}
    assert score(predictions, references, french)["F1@1"] == 1.0
    assert score(predictions, references, dataset_class("multidata").scoring("porter"))["F1@1"] == 0.0


def test_dataset_class_facts_live_only_in_the_registry():
    """No other module restates a class's files, budgets or metrics."""
    facts = [str(value) for kind in DATASET_CLASSES.values()
             for value in (*(kind.source_files or {}).values(), kind.reference_train_steps) if value]
    facts += ['"F1@3"', "'F1@3'"]
    copies = [f"{path.relative_to(ROOT)}: {fact}" for path in (ROOT / "bertkpe").rglob("*.py")
              if path.name != "dataset_classes.py" for fact in facts if fact in path.read_text(encoding="utf-8")]
    copies += [f"{path.relative_to(ROOT)}: class name to value table" for path in (ROOT / "bertkpe").rglob("*.py")
               if path.name != "dataset_classes.py"
               and re.search(r'"multidata"\s*:', path.read_text(encoding="utf-8"))]
    assert copies == []


def test_a_french_corpus_is_trained_and_scored_with_the_french_stemmer(setup, fixtures, tmp_path):
    data = tmp_path / "data"
    assert run_command("preprocess", ["--dataset_class", "multidata", "--dataset_name", "wikinews",
                                      "--source_dataset_dir", str(fixtures / "liaad" / "WikiNews.zip"),
                                      "--output_path", str(data)]) == 0
    stats = json.loads((data / "wikinews" / "preprocess_stats.json").read_text())
    assert (stats["language"], stats["stemmer"]) == ("fr", "french")
    argv = train_argv(setup, "fr", "--max_train_steps", "1", "--max_token", "64", model_class="bert2tag",
                      dataset="multidata", output_dir=tmp_path / "runs")
    argv[argv.index("--preprocess_folder") + 1] = str(data)
    assert run_command("train", argv + ["--dataset_name", "wikinews"]) == 0
    run = tmp_path / "runs" / "fr"
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("dev", "eval"):
        assert metrics[split]["scoring"]["stemmer"] == "french", split
    assert json.loads((run / "best" / "kpe_config.json").read_text())["stemmer"] == "french"
    tested = tmp_path / "tested"
    assert run_command("test", ["--eval_checkpoint", str(run / "best"), "--preprocess_folder", str(data),
                                "--cached_features_dir", str(setup["cache"]), "--no_cuda",
                                "--output_dir", str(tested), "--run_name", "t", "--max_doc_tokens", "96"]) == 0
    tested_metrics = json.loads((tested / "t" / "metrics.json").read_text())
    assert tested_metrics["eval"] == metrics["eval"]  # the dataset class and name came from the checkpoint


def test_extract_splits_words_as_the_checkpoints_dataset_class(setup, tmp_path):
    from bertkpe.data.tokenizers import load_tokenizer
    from bertkpe.extractor import KeyphraseExtractor
    from bertkpe.models import build_model

    model = build_model("bert2tag", str(setup["encoder"]))
    for name, kind in DATASET_CLASSES.items():
        model.save_pretrained(tmp_path / name, load_tokenizer(str(setup["encoder"])),
                              extra={"dataset_class": name, "stemmer": kind.stemmer_for("fr"), "max_token": 64})
        extractor = KeyphraseExtractor.from_pretrained(tmp_path / name, device="cpu")
        assert extractor.split_words is get_word_splitter(kind.word_splitter)
        assert extractor.stemmer == kind.stemmer_for("fr")


def test_train_and_test_scripts_read_no_dataset_tables():
    for script in ("train.py", "test.py"):
        assert "dataset_class" not in Path(ROOT / "scripts" / script).read_text(encoding="utf-8")


def test_score_command_scores_as_the_dataset_class(tmp_path, capsys):
    from bertkpe.cli import main
    from helpers import write_jsonl

    predictions = write_jsonl(tmp_path / "pred.jsonl", [{"url": "d", "KeyPhrases": [["journaux"]]}])
    references = write_jsonl(tmp_path / "ref.jsonl", [{"url": "d", "KeyPhrases": [["journal"]]}])
    out = tmp_path / "scores.json"
    argv = ["score", str(predictions), str(references), "--output", str(out)]
    assert main(argv + ["--dataset_class", "multidata", "--language", "fr-FR"]) == 0
    scores = json.loads(out.read_text())
    assert scores["scoring"]["stemmer"] == "french" and scores["F1@1"] == 1.0
    assert main(argv + ["--dataset_class", "kp20k"]) == 0
    assert json.loads(out.read_text())["scoring"] == dataset_class("kp20k").scoring("porter").to_dict()
    assert main(argv + ["--dataset_class", "multidata"]) == 2
    assert "stems by corpus language: pass --language or --stemmer" in capsys.readouterr().err
