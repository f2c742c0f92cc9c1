"""Feature stores: built in chunks and by workers as at once, keyed by input and options,
never read half-written, one builder at a time, narrow types; and what training reads
from them (trainable documents, window runs, each rank's share)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bertkpe.data import store as store_module
from bertkpe.data.features import FeatureOptions
from bertkpe.data.sampling import TrainingDocuments, WindowBatchSampler
from bertkpe.data.store import FeatureStore, array_dtypes, open_store
from bertkpe.data.tokenizers import load_tokenizer
from bertkpe.files import LineError
from helpers import (ENCODER, SUBPROCESS_ENV, default_tokenizer, featurize, features_equal, kp20k_records,
                     make_record, write_jsonl)


@pytest.fixture(scope="module")
def records(fixtures):
    """24 real abstracts, and three longer documents with recurring phrases."""
    long = []
    for number in range(3):
        words = [f"w{(index * 7 + number) % 41}" if index % 5 else f"v{index % 13}" for index in range(300 + 150 * number)]
        long.append(make_record(words, [["w7", "w14"], ["v1"], ["w35", "v8", "w8"]], url=f"long-{number}"))
    return kp20k_records(fixtures / "kp20k" / "kp20k_testing.json", 24) + long + [make_record([], url="empty")]


OPTIONS = dict(max_token=64, max_doc_tokens=4096, window_overlap=16)


def options(**overrides) -> FeatureOptions:
    return FeatureOptions(tokenizer=ENCODER, **{**OPTIONS, **overrides})


def test_a_store_built_in_chunks_or_by_workers_equals_features_built_at_once(records, tmp_path):
    path = write_jsonl(tmp_path / "split.json", records)
    expected = featurize(records, **OPTIONS)
    assert any(doc.num_windows > 4 for doc in expected) and expected[-1].num_words == 0
    for workers, chunk_size in ((1, 1000), (1, 5), (2, 7)):
        store = open_store(path, default_tokenizer(), options(), cache_dir=None, workers=workers,
                           chunk_size=chunk_size)
        assert len(store) == len(records)
        assert features_equal(list(store), expected), (workers, chunk_size)
        assert [store.url(index) for index in range(len(store))] == [record["url"] for record in records]
        assert store.lengths("windows").tolist() == [doc.num_windows for doc in expected]
        assert store.lengths("tokens").tolist() == [len(doc.input_ids) for doc in expected]
        assert store.column("num_phrases").tolist() == [doc.num_phrases for doc in expected]
        assert features_equal([store[-1]], expected[-1:]) and features_equal(store[2:4], expected[2:4])


def test_types_are_the_narrowest_the_options_allow():
    dtypes = array_dtypes(options(max_token=510, max_doc_tokens=16384), vocab_size=30522, specials=2)
    assert dtypes["input_ids"] == np.uint16 and dtypes["window_lengths"] == np.uint16
    assert dtypes["word_windows"] == np.uint16 and dtypes["gold_spans"] == np.uint16
    assert dtypes["phrase_grid"] == np.int32  # 5 x 16384 phrase ids, and -1
    one_window = array_dtypes(options(max_token=510, max_doc_tokens=510), vocab_size=30522, specials=2)
    assert one_window["phrase_grid"] == np.int16 and one_window["word_windows"] == np.uint16
    assert array_dtypes(options(max_token=200, max_doc_tokens=200), vocab_size=250002, specials=2)["input_ids"] \
        == np.uint32
    assert array_dtypes(options(max_token=200, max_doc_tokens=200), vocab_size=250, specials=2)["input_ids"] \
        == np.uint8
    with pytest.raises(ValueError, match=r"input_ids holds 0..300, beyond uint8"):
        store_module._fit("input_ids", np.array([0, 300]), np.dtype(np.uint8))


def test_an_abstract_takes_a_few_kilobytes(records, tmp_path):
    abstracts = records[:24]
    store = open_store(write_jsonl(tmp_path / "a.json", abstracts), default_tokenizer(),
                       options(max_token=510, max_doc_tokens=16384, window_overlap=128), cache_dir=None)
    on_disk = sum(path.stat().st_size for path in store.folder.iterdir())
    assert on_disk == store.nbytes + (store.folder / "meta.json").stat().st_size
    assert store.nbytes / len(store) < 8_000  # int64 arrays in memory took 21.5 KB


class CountingBuild:
    def __init__(self, monkeypatch):
        self.calls = 0
        self.build = store_module.build_store
        monkeypatch.setattr(store_module, "build_store", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.build(*args, **kwargs)


def test_a_store_is_reused_only_for_the_same_bytes_tokenizer_and_options(records, tmp_path, monkeypatch,
                                                                         roberta_tokenizer_dir):
    tokenizer = default_tokenizer()
    path = write_jsonl(tmp_path / "train.json", records[:6])
    cache = tmp_path / "cache"
    builds = CountingBuild(monkeypatch)
    first = open_store(path, tokenizer, options(), cache_dir=cache)
    assert builds.calls == 1 and len([p for p in cache.iterdir() if p.is_dir()]) == 1
    again = open_store(path, tokenizer, options(), cache_dir=cache)
    assert builds.calls == 1 and again.folder == first.folder and features_equal(list(again), list(first))
    # a fresh tokenizer (whose file sets truncation and padding until its first call) is the same
    assert store_module.tokenizer_fingerprint(load_tokenizer(ENCODER)) == store_module.tokenizer_fingerprint(tokenizer)
    # a checkpoint folder's copy of the tokenizer is the same tokenizer: its store is reused
    assert open_store(path, tokenizer, FeatureOptions(tokenizer="elsewhere", **OPTIONS), cache_dir=cache).folder \
        == first.folder and builds.calls == 1

    roberta = load_tokenizer(str(roberta_tokenizer_dir))
    variants = [(tokenizer, options(max_token=96)), (tokenizer, options(max_phrase_words=3)),
                (tokenizer, options(stemmer="none")), (tokenizer, options(max_doc_tokens=128)),
                (tokenizer, options(window_overlap=8)),
                (roberta, FeatureOptions(tokenizer=str(roberta_tokenizer_dir), **OPTIONS))]
    folders = {first.folder}
    for number, (variant_tokenizer, variant) in enumerate(variants, start=2):
        built = open_store(path, variant_tokenizer, variant, cache_dir=cache)
        assert builds.calls == number and built.folder not in folders, variant
        folders.add(built.folder)
        assert features_equal(list(built), featurize(records[:6], variant_tokenizer, **{
            name: value for name, value in vars(variant).items() if name != "tokenizer"}))
    write_jsonl(path, records[:5])  # new bytes, same name
    changed = open_store(path, tokenizer, options(), cache_dir=cache)
    assert builds.calls == len(variants) + 2 and len(changed) == 5
    assert not list(cache.glob(".*.tmp-*"))


def test_a_bad_line_names_the_file_and_line_and_leaves_no_store(records, tmp_path):
    path = tmp_path / "bad.json"
    lines = [json.dumps(record) for record in records[:9]]
    lines.insert(7, '{"url": "x", "doc_words": "not a list"}')
    path.write_text("\n".join(lines) + "\n")
    cache = tmp_path / "cache"
    for workers in (1, 2):
        with pytest.raises(LineError, match=rf"{path}:8: 'doc_words' must be a list of words"):
            open_store(path, default_tokenizer(), options(), cache_dir=cache, workers=workers, chunk_size=3)
    key = store_module.store_key(path, default_tokenizer(), options())
    assert [item.name for item in cache.iterdir()] == [f"bad.{key}.lock"]
    path.write_text("\n".join(lines[:3] + ['{"url": "x"}']) + "\n")
    with pytest.raises(LineError, match=rf"{path}:4: missing field 'doc_words'"):
        open_store(path, default_tokenizer(), options(), cache_dir=cache)


def test_a_damaged_store_is_refused(records, tmp_path):
    path = write_jsonl(tmp_path / "split.json", records[:4])
    store = open_store(path, default_tokenizer(), options(), cache_dir=tmp_path / "cache")
    with open(store.folder / "phrase_grid.bin", "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(ValueError, match=r"phrase_grid.bin: 10 bytes, the store's meta.json says \d+: a damaged store"):
        FeatureStore(store.folder)


SLOW_BUILD = """
import logging, sys, time
from pathlib import Path
from bertkpe.data import store
from bertkpe.data.features import FeatureOptions
from bertkpe.data.tokenizers import load_tokenizer
from bertkpe.files import LineError
logging.basicConfig(level=logging.INFO, format="%(message)s")
build_chunk = store.build_chunk
def slow_build_chunk(*args, **kwargs):
    print("chunk", flush=True)
    time.sleep({sleep})
    return build_chunk(*args, **kwargs)
store.build_chunk = slow_build_chunk
opened = store.open_store(Path(sys.argv[1]), load_tokenizer({encoder!r}), FeatureOptions(tokenizer={encoder!r},
                          **{options!r}), cache_dir=sys.argv[2], workers=1, chunk_size=4)
print("opened", opened.folder.name, len(opened), flush=True)
"""


def slow_builder(tmp_path: Path, sleep: float) -> Path:
    script = tmp_path / f"build_{sleep}.py"
    script.write_text(SLOW_BUILD.format(sleep=sleep, encoder=ENCODER, options=OPTIONS))
    return script


def test_a_killed_build_leaves_no_store_that_is_read(records, tmp_path):
    path = write_jsonl(tmp_path / "split.json", records)
    cache = tmp_path / "cache"
    console = tmp_path / "console"
    with open(console, "wb") as output:
        process = subprocess.Popen([sys.executable, str(slow_builder(tmp_path, 0.5)), str(path), str(cache)],
                                   env=SUBPROCESS_ENV, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while console.read_text().count("chunk") < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, console.read_text()[-2000:]
    staged = list(cache.glob(".split.*.tmp-*"))
    assert len(staged) == 1 and any(staged[0].iterdir())  # a half-written build, under its temporary name only
    assert not [item for item in cache.iterdir() if item.is_dir() and not item.name.startswith(".")]
    store = open_store(path, default_tokenizer(), options(), cache_dir=cache)
    assert features_equal(list(store), featurize(records, **OPTIONS))
    assert not list(cache.glob(".split.*.tmp-*"))  # the next build cleared it


def test_one_process_builds_while_the_others_wait(records, tmp_path):
    path = write_jsonl(tmp_path / "split.json", records)
    cache = tmp_path / "cache"
    script = slow_builder(tmp_path, 0.3)
    processes = [subprocess.Popen([sys.executable, str(script), str(path), str(cache)], env=SUBPROCESS_ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = [process.communicate(timeout=240)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    builders = [output for output in outputs if "built the feature store" in output]
    assert len(builders) == 1, outputs
    assert builders[0].count("chunk") == 7  # 28 documents in chunks of 4, built once
    waiting = [output for output in outputs if "waiting for process" in output]
    assert len(waiting) == 2 and all("chunk" not in output for output in waiting), outputs
    opened = {line for output in outputs for line in output.splitlines() if line.startswith("opened")}
    assert len(opened) == 1 and opened.pop().endswith(f" {len(records)}")


# --------------------------------------------------------------------------- what training reads

def phrase_level_trainable(doc) -> bool:
    """The rule, document by document: a present keyphrase, and a phrase that is not one."""
    if len(doc.gold_spans) == 0:
        return False
    ids = {int(doc.phrase_grid[end - start, start]) for start, end in doc.gold_spans.tolist()}
    ids.discard(-1)
    return bool(ids) and len(ids) < doc.num_phrases


def test_trainable_documents_are_decided_from_the_columns(records, tmp_path):
    extra = [make_record(["graph"], [["graph"]], url="only-positive"), make_record(["a", "b"], url="no-gold"),
             make_record(["graph", "theory"], [["graph"]], url="fine")]
    first = open_store(write_jsonl(tmp_path / "a.json", records[:10] + extra), default_tokenizer(), options(),
                       cache_dir=None)
    second = open_store(write_jsonl(tmp_path / "b.json", records[10:]), default_tokenizer(), options(),
                        cache_dir=None)
    documents = list(first) + list(second)
    for model_class, rule in (("bert2joint", phrase_level_trainable), ("bert2tag", lambda doc: len(doc.gold_spans) > 0)):
        usable = TrainingDocuments([first, second], model_class)
        expected = [index for index, doc in enumerate(documents) if rule(doc)]
        assert [(first if store == 0 else second).url(doc) for store, doc in zip(usable.store_ids, usable.doc_ids)] \
            == [documents[index].url for index in expected]
        assert usable.skipped == len(documents) - len(expected)
        assert usable.num_windows.tolist() == [documents[index].num_windows for index in expected]
    usable = TrainingDocuments([first, second], "bert2joint")
    assert "only-positive" not in {documents[i].url for i in range(len(documents))
                                   if phrase_level_trainable(documents[i])}
    assert usable[(0, 0, 99)][0] == 0 and features_equal([usable[(0, 0, 99)][1]], [documents[0]])


def test_window_runs_and_their_lengths(records, tmp_path):
    store = open_store(write_jsonl(tmp_path / "a.json", records), default_tokenizer(), options(), cache_dir=None)
    usable = TrainingDocuments([store], "bert2tag")
    first, count = usable.window_runs(epoch=3, seed=42, train_windows=2)
    assert (count <= 2).all() and (count == np.minimum(usable.num_windows, 2)).all()
    assert (first + count <= usable.num_windows).all() and (first[usable.num_windows <= 2] == 0).all()
    assert (first > 0).any()
    # the draw of the earlier in-memory sampler: one randint per longer document, in order
    generator = torch.Generator().manual_seed(45)
    expected = [int(torch.randint(int(windows) - 2 + 1, (1,), generator=generator)) if windows > 2 else 0
                for windows in usable.num_windows.tolist()]
    assert first.tolist() == expected
    tokens = usable.run_tokens(first, count)
    for position in range(len(usable)):
        _, cropped = usable[(position, int(first[position]), int(count[position]))]
        assert len(cropped.input_ids) == tokens[position] and cropped.num_windows == count[position]
    whole_first, whole_count = usable.window_runs(epoch=3, seed=42, train_windows=0)
    assert (whole_first == 0).all() and (whole_count == usable.num_windows).all()


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_read_disjoint_shares_that_cover_the_epoch(records, tmp_path, world_size):
    store = open_store(write_jsonl(tmp_path / "a.json", records), default_tokenizer(), options(), cache_dir=None)
    usable = TrainingDocuments([store], "bert2tag")
    shares = [WindowBatchSampler(usable, 4, seed=7, train_windows=2, rank=rank, world_size=world_size)
              .micro_batches(epoch=1) for rank in range(world_size)]
    assert len({len(share) for share in shares}) == 1  # every rank takes as many steps
    everything = WindowBatchSampler(usable, 4, seed=7, train_windows=2).micro_batches(epoch=1)
    # rank r takes batches r, r + world_size, ...; the last round is filled from the first batches
    assert [batch for round_ in zip(*shares) for batch in round_][:len(everything)] == everything
    repeated = len(shares[0]) * world_size - len(everything)
    assert 0 <= repeated < world_size
    positions = sorted(item[0] for share in shares for batch in share for item in batch)
    assert set(positions) == set(range(len(usable)))
    assert len(positions) - len(usable) == sum(len(batch) for batch in everything[:repeated])
    assert all(sum(windows for _, _, windows in batch) <= 4 or len(batch) == 1 for share in shares for batch in share)


def test_featurize_builds_the_stores_a_run_then_reads(setup, tmp_path, capsys):
    from bertkpe.cli import run_command
    from helpers import train_argv

    cache = tmp_path / "cache"
    flags = ["--dataset_class", "kp20k", "--preprocess_folder", str(setup["data"]), "--cached_features_dir",
             str(cache), "--pretrain_model_type", str(setup["encoder"]), "--max_token", "96", "--max_doc_tokens", "96"]
    assert run_command("featurize", flags) == 0
    built = sorted(item.name for item in cache.iterdir() if item.is_dir())
    assert [name.split(".")[1] for name in built] == ["dev", "eval", "train"]
    argv = train_argv(setup, "after_featurize", "--max_train_steps", "1", output_dir=tmp_path / "runs")
    argv[argv.index("--cached_features_dir") + 1] = str(cache)
    assert run_command("train", argv) == 0
    log = (tmp_path / "runs" / "after_featurize" / "train.log").read_text()
    assert "built the feature store" not in log and log.count("feature store ") == 3
    assert sorted(item.name for item in cache.iterdir() if item.is_dir()) == built  # nothing new


def test_featurize_without_preprocessed_data_says_so(tmp_path):
    from bertkpe.cli import run_command

    with pytest.raises(SystemExit, match=r"no preprocessed split of kp20k in"):
        run_command("featurize", ["--dataset_class", "kp20k", "--preprocess_folder", str(tmp_path)])
    assert os.listdir(tmp_path) == []


def test_a_worker_build_matches_on_the_full_corpus(datasets, tmp_path):
    records = kp20k_records(datasets / "kp20k" / "kp20k_testing.json", 300)
    path = write_jsonl(tmp_path / "test.json", records)
    single = open_store(path, default_tokenizer(), options(max_token=200), cache_dir=None, workers=1)
    assert len(single) == 300
    assert features_equal(list(open_store(path, default_tokenizer(), options(max_token=200), cache_dir=None,
                                          workers=2)), list(single))
