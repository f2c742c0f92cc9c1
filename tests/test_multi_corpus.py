"""One model trained on several corpora: sampling shares, per-corpus dev scores and their
mean, what the checkpoint records, and the corpora that cannot share a model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bertkpe.cli import run_command
from bertkpe.data.sampling import TrainingDocuments, WindowBatchSampler
from bertkpe.data.store import open_store
from bertkpe.evaluation import format_split_scores, mean_over_corpora
from helpers import default_tokenizer, make_record, train_argv, write_jsonl


def corpus(tmp_path, name: str, count: int, words: int = 6):
    """A store of `count` trainable documents of `words` words each."""
    from bertkpe.data.features import FeatureOptions

    records = [make_record([f"w{index}"] + ["graph", "theory", "of", "sparse", "sets"][:words - 1],
                           [["graph", "theory"]], url=f"{name}-{index}") for index in range(count)]
    return open_store(write_jsonl(tmp_path / f"{name}.json", records), default_tokenizer(),
                      FeatureOptions(tokenizer=default_tokenizer().name_or_path, max_token=64), cache_dir=None)


@pytest.fixture
def three_corpora(tmp_path):
    """Corpora of 40, 10 and 2 documents; the first in two stores (its train and dev splits)."""
    stores = [corpus(tmp_path, "big-a", 30), corpus(tmp_path, "big-b", 10), corpus(tmp_path, "mid", 10),
              corpus(tmp_path, "small", 2)]
    return TrainingDocuments(stores, "bert2joint", corpus_of_store=[0, 0, 1, 2])


def test_corpus_sizes_follow_the_stores_of_each_corpus(three_corpora):
    assert three_corpora.corpus_sizes().tolist() == [40, 10, 2]
    assert three_corpora.corpus_ids.tolist() == [0] * 40 + [1] * 10 + [2] * 2


def test_temperature_one_reads_every_document_once_as_before(three_corpora):
    assert three_corpora.corpus_quotas(1.0).tolist() == [40, 10, 2]
    assert three_corpora.epoch_documents(3, 42, 1.0).tolist() == list(range(52))


def test_temperature_shares_by_hand(three_corpora):
    # T = 2: weights sqrt(40) = 6.325, sqrt(10) = 3.162, sqrt(2) = 1.414, of 10.901 in all;
    # times 52 documents: 30.17, 15.08, 6.75 -> 30, 15, 7 (the largest remainders take the rest)
    assert three_corpora.corpus_quotas(2.0).tolist() == [30, 15, 7]
    # a very large T: equal shares, 52 / 3 = 17.33 -> 18, 17, 17
    assert three_corpora.corpus_quotas(1e9).tolist() == [18, 17, 17]


def test_an_epoch_draws_each_corpus_its_quota_and_reads_all_before_repeating(three_corpora):
    epochs = [three_corpora.epoch_documents(epoch, 42, 2.0) for epoch in range(4)]
    for chosen in epochs:
        assert np.bincount(three_corpora.corpus_ids[chosen], minlength=3).tolist() == [30, 15, 7]
    # the large corpus is read 30 a time from shuffles of its 40: no repeat in the first epoch,
    # and all 40 by the end of the second (its reads 0..59 hold the whole first shuffle)
    first, second = epochs[0][epochs[0] < 40], epochs[1][epochs[1] < 40]
    assert len(set(first.tolist())) == 30 and set(first.tolist()) | set(second.tolist()) == set(range(40))
    small = epochs[0][epochs[0] >= 50]
    assert sorted(np.bincount(small - 50).tolist()) == [3, 4]  # 7 reads of 2 documents: each 3 or 4 times
    assert np.array_equal(three_corpora.epoch_documents(2, 42, 2.0), epochs[2])
    assert not np.array_equal(three_corpora.epoch_documents(2, 43, 2.0), epochs[2])


def test_the_sampler_batches_the_drawn_documents_and_resumes_at_a_position(three_corpora):
    sampler = WindowBatchSampler(three_corpora, 4, seed=7, train_windows=0, temperature=2.0)
    batches = sampler.micro_batches(epoch=1)
    positions = sorted(item[0] for batch in batches for item in batch)
    assert positions == three_corpora.epoch_documents(1, 7, 2.0).tolist()
    sampler.set_epoch(1, 3)
    assert list(sampler) == batches[3:]
    _, doc = three_corpora[batches[0][0]]
    assert doc.url.split("-")[0] in ("big", "mid", "small")


def test_mean_over_corpora_by_hand():
    first = {"F1@5": 0.30, "F1@10": 0.20, "num_docs": 100, "scoring": {}}
    second = {"F1@5": 0.10, "F1@10": 0.40, "F1@3": 0.5, "num_docs": 3, "scoring": {}}
    scores = mean_over_corpora({"a": first, "b": second}, {"a": "F1@5", "b": "F1@3"})
    assert scores["F1@5"] == pytest.approx(0.20) and scores["F1@10"] == pytest.approx(0.30)
    assert "F1@3" not in scores  # only metrics every corpus reports are averaged
    assert scores["num_docs"] == 103
    assert scores["selection"] == pytest.approx((0.30 + 0.5) / 2)
    assert scores["corpora"] == {"a": first, "b": second}


@pytest.fixture(scope="module")
def two_corpus_run(setup, tmp_path_factory):
    runs = tmp_path_factory.mktemp("multi")
    argv = train_argv(setup, "two", "--max_train_steps", "3", "--sampling_temperature", "2", output_dir=runs)
    start = argv.index("--dataset_class")
    del argv[start:start + 2]
    argv += ["--train_datasets", "kp20k", "kp20k:short"]
    assert run_command("train", argv) == 0
    return runs / "two"


def test_dev_is_scored_per_corpus_and_the_best_checkpoint_by_their_mean(two_corpus_run):
    metrics = json.loads((two_corpus_run / "metrics.json").read_text())
    dev = metrics["dev"]
    assert sorted(dev["corpora"]) == ["kp20k", "short"] and sorted(metrics["eval"]["corpora"]) == ["kp20k", "short"]
    assert dev["F1@5"] == pytest.approx((dev["corpora"]["kp20k"]["F1@5"] + dev["corpora"]["short"]["F1@5"]) / 2)
    assert dev["selection"] == pytest.approx(dev["F1@5"]) and dev["selection_metric"] == "mean F1@5 over 2 corpora"
    for split in ("dev", "eval"):
        for name in ("kp20k", "short"):
            predicted = (two_corpus_run / f"predictions.{split}.{name}.jsonl").read_text().splitlines()
            assert len(predicted) == dev["corpora"][name]["num_docs"] if split == "dev" else len(predicted) > 0
    history = [json.loads(line) for line in (two_corpus_run / "eval_history.jsonl").read_text().splitlines()]
    best = json.loads((two_corpus_run / "best_dev_metrics.json").read_text())
    assert best["selection"] == max(entry["selection"] for entry in history)
    assert "mean over 2 corpora: F1@" in format_split_scores(dev)


def test_the_checkpoint_records_its_corpora(two_corpus_run):
    kpe = json.loads((two_corpus_run / "best" / "kpe_config.json").read_text())
    assert kpe["dataset_class"] == "kp20k" and kpe["dataset_name"] == "kp20k" and kpe["stemmer"] == "porter"
    corpora = kpe["training"]["corpora"]
    assert [(entry["dataset_name"], entry["stemmer"], entry["language"]) for entry in corpora] == \
        [("kp20k", "porter", "en"), ("short", "porter", "en")]
    assert all(entry["documents"] > 0 and entry["documents_per_epoch"] > 0 for entry in corpora)
    assert len(kpe["training"]["data"]) == 2  # one fingerprint per training store
    card = (two_corpus_run / "best" / "README.md").read_text()
    assert "Trained on several corpora at once" in card and "| short | kp20k | porter | en |" in card
    assert "| test: mean of 2 corpora |" in card and "| test: short |" in card


def test_corpora_of_different_stemmers_are_refused_unless_one_is_chosen(setup, tmp_path):
    argv = train_argv(setup, "mixed", "--max_train_steps", "1", "--no_eval", "--no-test_after_training",
                      output_dir=tmp_path)
    start = argv.index("--dataset_class")
    del argv[start:start + 2]
    with pytest.raises(SystemExit, match=r"cannot share one model's phrase merging: kp20k \(porter, language en\), "
                                          r"openkp \(none, language en\)\. Choose the stemmer"):
        run_command("train", argv + ["--train_datasets", "kp20k", "openkp"])
    assert not (tmp_path / "mixed").exists() or not (tmp_path / "mixed" / "best").exists()
    argv[argv.index("mixed")] = "chosen"
    assert run_command("train", argv + ["--train_datasets", "kp20k", "openkp", "--stemmer", "porter"]) == 0
    kpe = json.loads((tmp_path / "chosen" / "best" / "kpe_config.json").read_text())
    assert kpe["stemmer"] == "porter"
    assert [entry["stemmer"] for entry in kpe["training"]["corpora"]] == ["porter", "none"]
    # papers and pages: no one kind to rank by default (extraction then ranks as papers, or --text_kind)
    assert [entry["text_kind"] for entry in kpe["training"]["corpora"]] == ["papers", "pages"]
    assert kpe["text_kind"] is None


def test_train_datasets_refuses_dataset_class_and_unknown_corpora(setup, tmp_path):
    argv = train_argv(setup, "both", "--max_train_steps", "1", output_dir=tmp_path)
    with pytest.raises(SystemExit, match="leave out --dataset_class and --dataset_name"):
        run_command("train", argv + ["--train_datasets", "kp20k", "kp20k:short"])
    start = argv.index("--dataset_class")
    del argv[start:start + 2]
    with pytest.raises(SystemExit, match=r"corpus 'short': .*preprocess_stats.json does not say its dataset class"):
        run_command("train", argv + ["--train_datasets", "kp20k", "short"])
    with pytest.raises(SystemExit, match="--sampling_temperature must be above 0"):
        run_command("train", argv + ["--train_datasets", "kp20k", "kp20k:short", "--sampling_temperature", "0"])


def test_the_general_recipe_end_to_end_on_the_shared_corpora(datasets, setup, tmp_path):
    """`scripts/general.py` as `make general` runs it, with the tiny encoder and two steps:
    five corpora preprocessed with their kinds, one run over all, each alone, the table."""
    import subprocess
    import sys

    from helpers import ROOT, SUBPROCESS_ENV

    command = [sys.executable, str(ROOT / "scripts" / "general.py"), "--shared_datasets", str(datasets),
               "--data_dir", str(tmp_path / "dataset"), "--preprocess_folder", str(tmp_path / "prepro"),
               "--output_dir", str(tmp_path / "results"), "--run_name", "general", "--alone",
               "--pretrain_model_type", str(setup["encoder"]), "--cached_features_dir", str(tmp_path / "cache"),
               "--max_train_steps", "2", "--max_token", "96", "--max_doc_tokens", "192", "--no_cuda"]
    result = subprocess.run(command, cwd=tmp_path, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    names = ["inspec", "kdd", "semeval2017", "kpcrowd", "semeval2010"]
    kinds = {json.loads((tmp_path / "prepro" / name / "preprocess_stats.json").read_text())["text_kind"]
             for name in names}
    assert kinds == {"papers", "news"}
    split = json.loads((tmp_path / "prepro" / "semeval2010" / "split.json").read_text())
    assert split["seed"] == 42 and [len(split[part]) for part in ("train", "dev", "eval")] == [170, 36, 37]
    run = tmp_path / "results" / "general"
    kpe = json.loads((run / "best" / "kpe_config.json").read_text())
    assert [entry["dataset_name"] for entry in kpe["training"]["corpora"]] == names
    assert kpe["text_kind"] is None  # papers and news
    table = json.loads((run / "general_table.json").read_text())
    assert list(table) == names
    for name in names:
        assert set(table[name]) == {"general", "alone", "YAKE"}
        alone = json.loads((tmp_path / "results" / f"general_alone_{name}" / "metrics.json").read_text())
        assert table[name]["alone"]["F1@5"] == alone["eval"]["F1@5"]
    assert table["semeval2010"]["general"]["num_docs"] == 37 and table["inspec"]["general"]["num_docs"] == 500
    assert "| semeval2010 (full papers) | 37 |" in result.stdout
