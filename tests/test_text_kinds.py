"""Document pooling weighted for the kind of text (papers, news, pages): where the kind is
recorded (preprocessing, the dataset class, the checkpoint) and which one ranks what."""
from __future__ import annotations

import json
import shutil

import pytest

from bertkpe.cli import run_command
from bertkpe.data.preprocessed import PreprocessedData
from bertkpe.decoding import DOCUMENT_POOLING, MAX_POOLING, phrase_pooling
from bertkpe.extractor import KeyphraseExtractor
from helpers import train_argv


def test_each_kind_has_its_weights_and_unknown_text_is_ranked_as_papers():
    for kind in ("papers", "news", "pages"):
        assert phrase_pooling("document", kind) is DOCUMENT_POOLING[kind]
    assert phrase_pooling("document") is DOCUMENT_POOLING["papers"]
    assert phrase_pooling("max", "news") is MAX_POOLING
    with pytest.raises(ValueError, match=r"unknown kind of text 'tweets'"):
        phrase_pooling("document", "tweets")


def test_preprocessing_records_the_kind(fixtures, tmp_path):
    assert run_command("preprocess", ["--dataset_class", "multidata", "--source_dataset_dir",
                                      str(fixtures / "liaad" / "WikiNews.zip"), "--dataset_name", "news",
                                      "--output_path", str(tmp_path), "--text_kind", "news"]) == 0
    assert run_command("preprocess", ["--dataset_class", "kp20k", "--source_dataset_dir", str(fixtures),
                                      "--output_path", str(tmp_path)]) == 0
    assert PreprocessedData(tmp_path, "news", "multidata").text_kind() == "news"
    assert json.loads((tmp_path / "kp20k" / "preprocess_stats.json").read_text())["text_kind"] == "papers"
    # data without a record: the dataset class's kind, none for LIAAD corpora
    assert PreprocessedData(tmp_path / "elsewhere", "x", "openkp").text_kind() == "pages"
    assert PreprocessedData(tmp_path / "elsewhere", "x", "multidata").text_kind() is None
    with pytest.raises(SystemExit):
        run_command("preprocess", ["--dataset_class", "kp20k", "--source_dataset_dir", str(fixtures),
                                   "--output_path", str(tmp_path), "--text_kind", "tweets"])


@pytest.fixture(scope="module")
def papers_run(setup, tmp_path_factory):
    runs = tmp_path_factory.mktemp("kinds")
    assert run_command("train", train_argv(setup, "papers", "--max_train_steps", "2", output_dir=runs)) == 0
    return runs / "papers"


def test_a_checkpoint_records_the_kind_it_was_trained_on_and_extraction_follows_it(papers_run, tmp_path):
    kpe = json.loads((papers_run / "best" / "kpe_config.json").read_text())
    assert kpe["text_kind"] == "papers" and kpe["training"]["corpora"][0]["text_kind"] == "papers"
    assert KeyphraseExtractor.from_pretrained(papers_run / "best", device="cpu").pooling is DOCUMENT_POOLING["papers"]
    news = tmp_path / "news"
    shutil.copytree(papers_run / "best", news)
    (news / "kpe_config.json").write_text(json.dumps({**kpe, "text_kind": "news"}))
    assert KeyphraseExtractor.from_pretrained(news, device="cpu").pooling is DOCUMENT_POOLING["news"]
    assert KeyphraseExtractor.from_pretrained(news, device="cpu", text_kind="pages").pooling \
        is DOCUMENT_POOLING["pages"]
    assert KeyphraseExtractor.from_pretrained(news, device="cpu", phrase_pooling="max").pooling is MAX_POOLING
    (news / "kpe_config.json").write_text(json.dumps({key: value for key, value in kpe.items() if key != "text_kind"}))
    assert KeyphraseExtractor.from_pretrained(news, device="cpu").pooling is DOCUMENT_POOLING["papers"]


def test_a_test_ranks_the_data_as_its_kind_unless_told(setup, papers_run, tmp_path):
    common = ["--eval_checkpoint", str(papers_run / "best"), "--preprocess_folder", str(setup["data"]),
              "--cached_features_dir", str(setup["cache"]), "--feature_workers", "1", "--no_cuda",
              "--output_dir", str(tmp_path), "--splits", "dev"]
    assert run_command("test", common + ["--run_name", "as_recorded"]) == 0
    assert "ranking kp20k as papers" in (tmp_path / "as_recorded" / "test.log").read_text()
    assert run_command("test", common + ["--run_name", "told", "--text_kind", "news"]) == 0
    assert "ranking kp20k as news" in (tmp_path / "told" / "test.log").read_text()
